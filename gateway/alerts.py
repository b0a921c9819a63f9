"""Probing alerts at the gateway: the detectors of `fedgate.query.probing` run after each logged outcome.

A detector that fires appends an `audit.alert` entry naming the subject, the agency, the detector, the
counts and the indexes of the entries it counted (never a value). Alerts refuse nothing: refusing is the
safeguards' job. At start the windows are rebuilt from the log's recent entries, so a restart does not
reset them. With replicas sharing one log, each replica watches the outcomes it logs itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.core.audit_search import rfc3339
from fedgate.gateway.audit_log import AuditLog
from fedgate.query.probing import ProbeWatch
from fedgate.query.safeguards import AlertConfig

log = logging.getLogger(__name__)

# At most this many of the newest entries are read back at start, however long the window.
REBUILD_SCAN = 50_000


class ProbeAlerts:
    """The AuditRecorder's follow-up: feeds each logged entry to the watch and logs the alerts it raises."""

    def __init__(self, audit_log: AuditLog, config: AlertConfig) -> None:
        self._log = audit_log
        self.watch = ProbeWatch(config)

    @classmethod
    async def open(cls, audit_log: AuditLog, config: AlertConfig) -> ProbeAlerts:
        """A watch rebuilt from the entries of the last window (the alerts logged there included)."""
        alerts = cls(audit_log, config)
        if config.enabled:
            alerts.watch.remember(await asyncio.to_thread(_recent, audit_log, config.window_minutes))
        return alerts

    async def __call__(self, index: int, entry: AuditEntry) -> None:
        """Run the detectors over a just-logged entry; a failure here is logged and never fails the call."""
        try:
            for alert in self.watch.observe(index, entry):
                appended = await self._log.append(alert.entry(utc_now(), entry.trace_id))
                log.warning("probing alert '%s' (%s scope, %d entries) logged at index %d",
                            alert.detector, alert.scope, alert.count, appended.index)
        except Exception as exc:
            log.error("probing detectors failed after entry %d", index, exc_info=exc)


def _recent(audit_log: AuditLog, minutes: int) -> list[tuple[int, AuditEntry]]:
    """The log's entries of the last `minutes` (at most REBUILD_SCAN), oldest first."""
    cutoff = rfc3339(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes))
    found: list[tuple[int, AuditEntry]] = []
    for item in audit_log.store.entries_newest_first():
        entry = AuditEntry.from_canonical(item.body)
        if entry.time < cutoff or len(found) >= REBUILD_SCAN:
            break
        found.append((item.index, entry))
    return found[::-1]
