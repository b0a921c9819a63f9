"""The gateway's audit log object: appends survive a cancelled caller without memory and store diverging."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.audit_entry import AuditEntry, utc_now
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
