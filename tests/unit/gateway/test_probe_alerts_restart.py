"""The gateway's probing alerts over a real audit log: logged after the outcome, windows survive a restart."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.gateway.alerts import ProbeAlerts
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import AuditStore
from fedgate.query.safeguards import AlertConfig

CONFIG = AlertConfig(bisection_run=4, same_filter=100, refusals=100)
KEY = Ed25519PrivateKey.generate()
STEP = AuditEntry(utc_now(), "spiffe://fedgate/supervisor/dcb/alice", "supervisor", "query.count",
                  "/fedgate.v1.QueryService/CountRows", "allow", "OK", datasets=("hrss.subsidies",),
                  params=(("filter.hrss.subsidies", "amount_fen >= ?"), ("params_version", "1")))


async def _query(log: AuditLog, alerts: ProbeAlerts, n: int) -> None:
    """What the AuditRecorder does for each outcome: append it, then run the detectors."""
    for _ in range(n):
        entry = dataclasses.replace(STEP, time=utc_now(), params=(*STEP.params, ("filter_digest.hrss.subsidies",
                                                                                   f"{log.size:064x}")))
        await alerts((await log.append(entry)).index, entry)


def _alerts_in(store: AuditStore) -> list[AuditEntry]:
    return [e for e in (AuditEntry.from_canonical(i.body) for i in store.entries(0, store.size()))
            if e.action == "audit.alert"]


async def test_windows_survive_a_restart_and_logged_alerts_are_not_repeated(tmp_path: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore.open(url)
    log = await AuditLog.open(store, KEY, "fedgate.test/audit")
    await _query(log, await ProbeAlerts.open(log, CONFIG), 3)
    assert _alerts_in(store) == []
    # Restarted: the three steps before it are still in the window, so the fourth completes the run.
    await _query(log, await ProbeAlerts.open(log, CONFIG), 1)
    (alert,) = _alerts_in(store)
    assert dict(alert.params)["alert.entries"] == "0,1,2,3" and store.size() == 5
    # Restarted again: the logged alert covers those four; three more are not yet a new run, a fourth is.
    restarted = await ProbeAlerts.open(log, CONFIG)
    await _query(log, restarted, 3)
    assert len(_alerts_in(store)) == 1
    await _query(log, restarted, 1)
    assert [dict(a.params)["alert.entries"] for a in _alerts_in(store)] == ["0,1,2,3", "5,6,7,8"]
    store.close()


async def test_an_alert_that_cannot_be_logged_never_fails_the_call(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    store = AuditStore.open(f"sqlite+pysqlite:///{tmp_path / 'audit.db'}")
    log = await AuditLog.open(store, KEY, "fedgate.test/audit")
    alerts = await ProbeAlerts.open(log, CONFIG)
    await _query(log, alerts, 3)

    async def broken(entry: AuditEntry) -> None:
        raise OSError("disk full")

    log.append = broken  # type: ignore[method-assign,assignment]
    await alerts(3, dataclasses.replace(STEP, time=utc_now()))  # the run completes; its alert cannot be logged
    assert "probing detectors failed after entry 3" in caplog.text
    store.close()
