"""A stopped adapter lets go of its departments' database connections."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa

import support

pytestmark = pytest.mark.postgres


def _connections(app: str) -> int:
    engine = sa.create_engine(support.PG_URL)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = :a"),
                                    {"a": app}).scalar_one())
    finally:
        engine.dispose()


async def test_a_stopped_adapter_closes_its_sql_sources(servers) -> None:
    with support.private_pg_schema("fg_close") as url:
        support.write_companies(url, n=12)
        app = f"fedgate-close-{secrets.token_hex(4)}"  # how this adapter's connections are found
        gw = await servers.gateway()
        adapter = await servers.adapter(
            "samr", gw, support.COMPANIES_DECL.format(kind="sql", where=f'url = "{url}&application_name={app}"'))
        assert _connections(app) >= 1  # the start-up checks left a pooled connection: the test can fail
        servers.adapters.remove(adapter)
        await adapter.stop(0)
        assert _connections(app) == 0
