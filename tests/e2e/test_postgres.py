"""The SQLAlchemy paths against a real PostgreSQL: an adapter source and the gateway registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import support
from fedgate.client.gateway import GatewayClient
from fedgate.gateway.config import GatewayConfig
from fedgate.gateway.server import build_gateway
from fedgate.server.tls import TlsFiles

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A schema of this test's own: other tests, and other runs of this suite, use the database at once."""
    with support.private_pg_schema("fedgate_pg") as url:
        yield url


async def test_adapter_on_postgres_and_registry_in_postgres(servers, tmp_path: Path, pg_url: str) -> None:
    support.write_companies(pg_url, n=12)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(support.gateway_toml(tmp_path / "gw", servers.certs).replace(
        "[tls]", f'registry_url = "{pg_url}"\n\n[tls]'))
    gw = await build_gateway(GatewayConfig.load(cfg))
    servers.gateways.append(gw)
    decl = support.COMPANIES_DECL.format(kind="sql", where=f'url = "{pg_url}"')
    await servers.adapter("samr", gw, decl)

    tls = TlsFiles.in_dir(servers.certs, support.SUPERVISOR)
    async with GatewayClient(f"127.0.0.1:{gw.port}", tls) as client:
        assert [(d.decl.qualified_name, d.decl.row_count) for d in await client.list_datasets()] == [
            ("samr.companies", 12)]

    # A second gateway replica on the same PostgreSQL registry sees the same datasets.
    # (Each replica has a data_dir of its own: a gateway locks its data_dir.)
    cfg2 = tmp_path / "gateway-2.toml"
    cfg2.write_text(cfg.read_text().replace(f'data_dir = "{tmp_path / "gw"}"', f'data_dir = "{tmp_path / "gw2"}"'))
    gw2 = await build_gateway(GatewayConfig.load(cfg2))
    servers.gateways.append(gw2)
    async with GatewayClient(f"127.0.0.1:{gw2.port}", tls) as client:
        assert [d.decl.qualified_name for d in await client.list_datasets()] == ["samr.companies"]


async def test_audit_log_on_postgres(tmp_path: Path, pg_url: str) -> None:
    """The same audit store and log code on PostgreSQL: append, resume, prove, verify."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fedgate.core.audit_entry import AuditEntry, utc_now
    from fedgate.client.audit_verify import verify_log
    from fedgate.crypto.checkpoint import VerifierKey, verify_checkpoint
    from fedgate.crypto.merkle import RFC6962_SHA256, verify_inclusion
    from fedgate.gateway.audit_log import AuditLog
    from fedgate.gateway.audit_store import AuditStore

    key, origin = Ed25519PrivateKey.generate(), "fedgate.test/audit"
    store = AuditStore.open(pg_url)
    log = await AuditLog.open(store, key, origin)
    bodies = []
    for i in range(37):
        entry = AuditEntry(utc_now(), "spiffe://fedgate/officer/a/b", "officer", "audit.read", "/m", "allow", "OK",
                           result_sizes=(("n", i),))
        bodies.append(entry.canonical())
        await log.append(entry)
    resumed = await AuditLog.open(store, key, origin)
    assert resumed.size == 37
    cp = verify_checkpoint(store.latest_checkpoint(), origin, key.public_key())
    verify_inclusion(RFC6962_SHA256, 11, 37, RFC6962_SHA256.hash_leaf(bodies[11]),
                     await resumed.inclusion_proof(11, 37), cp.root_hash)
    report = verify_log(((e.index, e.body) for e in store.entries()), dict(store.checkpoints()),
                        store.latest_checkpoint(), VerifierKey(origin, key.public_key()))
    assert report.size == 37
    store.close()


async def test_two_gateway_replicas_share_one_audit_log_on_postgres(pg_url: str) -> None:
    """Replicas append to one log: an advisory lock orders them, each resumes from the stored frontier."""
    import asyncio

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fedgate.core.audit_entry import AuditEntry, utc_now
    from fedgate.client.audit_verify import verify_log
    from fedgate.crypto.checkpoint import VerifierKey
    from fedgate.gateway.audit_log import AuditLog
    from fedgate.gateway.audit_store import AuditStore

    key, origin = Ed25519PrivateKey.generate(), "fedgate.test/audit"
    stores = [AuditStore.open(pg_url), AuditStore.open(pg_url)]
    logs = [await AuditLog.open(s, key, origin) for s in stores]

    async def write(log: AuditLog, who: int) -> list[int]:
        out = []
        for i in range(25):
            entry = AuditEntry(utc_now(), f"spiffe://fedgate/officer/a/r{who}", "officer", "audit.read", "/m",
                               "allow", "OK", result_sizes=(("i", i),))
            out.append((await log.append(entry)).index)
        return out

    first, second = await asyncio.gather(write(logs[0], 0), write(logs[1], 1))
    assert sorted(first + second) == list(range(50))
    store = stores[0]
    report = verify_log(((e.index, e.body) for e in store.entries()), dict(store.checkpoints()),
                        store.latest_checkpoint(), VerifierKey(origin, key.public_key()))
    assert report.size == 50
    for s in stores:
        s.close()
