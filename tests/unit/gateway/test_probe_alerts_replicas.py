"""Probing alerts with replicas sharing one log: each replica's watch sees every replica's outcomes.

Two AuditLogs on one SQLite file stand for two gateway replicas (the PostgreSQL end-to-end test is
tests/e2e/test_attack_probing_replicas.py); the AuditRecorder's steps are done by hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.gateway.alerts import ProbeAlerts
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import AuditStore
from fedgate.query.safeguards import AlertConfig

CONFIG = AlertConfig(refusals=6, same_filter=100, bisection_run=100)
KEY = Ed25519PrivateKey.generate()
ORIGIN = "fedgate.test/audit"
REFUSED = AuditEntry(utc_now(), "spiffe://fedgate/supervisor/dcb/alice", "supervisor", "query.count",
                     "/fedgate.v1.QueryService/CountRows", "deny", "FAILED_PRECONDITION",
                     datasets=("hrss.subsidies",), params=(("params_version", "1"),))
STARTED = dataclasses.replace(REFUSED, decision="allow", status="STARTED")


@dataclasses.dataclass
class Replica:
    log: AuditLog
    alerts: ProbeAlerts

    async def refused(self) -> int:
        """A refused query as the gateway logs it: the intent entry, then the outcome and the detectors."""
        await self.log.append(dataclasses.replace(STARTED, time=utc_now()))
        entry = dataclasses.replace(REFUSED, time=utc_now())
        index = (await self.log.append(entry)).index
        await self.alerts(index, entry)
        return index


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[list[AuditStore]]:
    url = f"sqlite+pysqlite:///{tmp_path / 'shared.db'}"
    opened = [AuditStore.open(url) for _ in range(2)]
    yield opened
    for store in opened:
        store.close()


async def _replica(store: AuditStore) -> Replica:
    log = await AuditLog.open(store, KEY, ORIGIN)
    return Replica(log, await ProbeAlerts.open(log, CONFIG))


def _alerts_in(store: AuditStore) -> list[tuple[int, AuditEntry]]:
    return [(i.index, e) for i in store.entries(0, store.size())
            if (e := AuditEntry.from_canonical(i.body)).action == "audit.alert"]


async def test_a_probe_alternating_between_replicas_is_alerted_once(stores: list[AuditStore]) -> None:
    a, b = await _replica(stores[0]), await _replica(stores[1])
    indexes = [await (a if n % 2 == 0 else b).refused() for n in range(6)]  # three each: under 6 apiece
    ((at, alert),) = _alerts_in(stores[0])
    assert dict(alert.params)["alert.entries"] == ",".join(map(str, indexes))
    assert at == indexes[-1] + 1  # logged by b, whose outcome completed the run
    # Both watches counted those six: five more, on either replica, are not yet a second alert.
    for n in range(5):
        await (a if n % 2 == 0 else b).refused()
    assert len(_alerts_in(stores[0])) == 1
    await a.refused()
    assert len(_alerts_in(stores[0])) == 2


async def test_a_replica_started_later_counts_on_from_the_log_and_what_others_append(
        stores: list[AuditStore]) -> None:
    a = await _replica(stores[0])
    for _ in range(3):
        await a.refused()
    b = await _replica(stores[1])  # rebuilt from the three
    await a.refused()
    await b.refused()  # reads a's fourth, then its own: five
    assert _alerts_in(stores[0]) == []
    last = await a.refused()
    ((_, alert),) = _alerts_in(stores[0])
    assert dict(alert.params)["alert.entries"].split(",")[-1] == str(last)


async def test_gaps_are_known_up_to_the_last_own_append(stores: list[AuditStore]) -> None:
    a, b = await _replica(stores[0]), await _replica(stores[1])
    await a.log.append(STARTED)                          # 0
    for _ in range(3):
        await b.log.append(STARTED)                      # 1, 2, 3
    assert a.log.appended_by_others(0, 10) == []         # not known until a appends again
    await a.log.append(STARTED)                          # 4
    await b.log.append(STARTED)                          # 5
    await a.log.append(STARTED)                          # 6
    assert a.log.appended_by_others(0, 10) == [range(1, 4), range(5, 6)]
    assert a.log.appended_by_others(2, 5) == [range(2, 4)]
    assert b.log.appended_by_others(0, 10) == [range(0, 1), range(4, 5)]


async def test_a_failed_read_of_other_replicas_never_fails_the_call(stores: list[AuditStore],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    a, b = await _replica(stores[0]), await _replica(stores[1])
    for _ in range(3):
        await b.refused()

    def broken(start: int, stop: int | None = None, batch: int = 1000) -> list[object]:
        raise OSError("connection lost")

    stores[0].entries = broken  # type: ignore[method-assign,assignment]
    for _ in range(6):
        await a.refused()  # its own six still complete a run
    assert "could not read entries" in caplog.text
    assert len(_alerts_in(stores[1])) == 1
