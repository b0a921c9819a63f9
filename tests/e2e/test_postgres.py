"""The SQLAlchemy paths against a real PostgreSQL: an adapter source and the gateway registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import support
from fedgate.client import GatewayClient
from fedgate.gateway.config import GatewayConfig
from fedgate.gateway.server import build_gateway
from fedgate.tls import TlsFiles

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def postgres() -> None:
    if not support.postgres_reachable():
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432 (database 'test', user 'postgres')")
    engine = sa.create_engine(support.PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS fedgate_datasets, fedgate_departments"))
    engine.dispose()


async def test_adapter_on_postgres_and_registry_in_postgres(servers, tmp_path: Path) -> None:
    support.write_companies(support.PG_URL, n=12)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(support.gateway_toml(tmp_path / "gw", servers.certs).replace(
        "[tls]", f'registry_url = "{support.PG_URL}"\n\n[tls]'))
    gw = await build_gateway(GatewayConfig.load(cfg))
    servers.gateways.append(gw)
    decl = support.COMPANIES_DECL.format(kind="sql", where=f'url = "{support.PG_URL}"')
    await servers.adapter("samr", gw, decl)

    tls = TlsFiles.in_dir(servers.certs, support.SUPERVISOR)
    async with GatewayClient(f"127.0.0.1:{gw.port}", tls) as client:
        assert [(d.decl.qualified_name, d.decl.row_count) for d in await client.list_datasets()] == [
            ("samr.companies", 12)]

    # A second gateway replica on the same PostgreSQL registry sees the same datasets.
    gw2 = await build_gateway(GatewayConfig.load(cfg))
    servers.gateways.append(gw2)
    async with GatewayClient(f"127.0.0.1:{gw2.port}", tls) as client:
        assert [d.decl.qualified_name for d in await client.list_datasets()] == ["samr.companies"]
