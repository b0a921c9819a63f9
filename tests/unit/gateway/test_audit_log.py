"""The gateway's audit log object: appends survive a cancelled caller without memory and store diverging."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.gateway.audit import AuditReader
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import AuditStore


def _entry(i: int) -> AuditEntry:
    return AuditEntry(utc_now(), "spiffe://fedgate/officer/a/b", "officer", "audit.read", "/m", "allow", "OK",
                      result_sizes=(("i", i),))


async def test_cancelled_append_keeps_memory_and_store_in_step(tmp_path: Path) -> None:
    store = AuditStore.open(f"sqlite+pysqlite:///{tmp_path / 'a.db'}")
    log = await AuditLog.open(store, Ed25519PrivateKey.generate(), "fedgate.test/audit")
    for i in range(20):
        task = asyncio.create_task(log.append(_entry(i)))
        await asyncio.sleep(0)  # let it reach the store write
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        appended = await log.append(_entry(1000 + i))
        assert appended.index == log.size - 1 == store.size() - 1
    store.close()


async def test_a_replica_proves_what_another_replica_appended(tmp_path: Path) -> None:
    """Replicas share one store: an officer asking either one about any stored size gets its proofs."""
    url = f"sqlite+pysqlite:///{tmp_path / 'shared.db'}"
    key = Ed25519PrivateKey.generate()
    store_a, store_b = AuditStore.open(url), AuditStore.open(url)
    try:
        replica_a = await AuditLog.open(store_a, key, "fedgate.test/audit")
        replica_b = await AuditLog.open(store_b, key, "fedgate.test/audit")
        await replica_a.append(_entry(0))
        for i in range(1, 5):
            await replica_b.append(_entry(i))
        # Replica A wrote one entry of five: the other four it knows only from the store.
        assert len(await replica_a.inclusion_proof(3, 5)) == len(await replica_b.inclusion_proof(3, 5))
        assert await replica_a.consistency_proof(1, 5) == await replica_b.consistency_proof(1, 5)
        everything = [e.index async for e in AuditReader(replica_a, policy=None).entries(0, 0)]  # type: ignore[arg-type]
        assert everything == [0, 1, 2, 3, 4]
    finally:
        store_a.close()
        store_b.close()
