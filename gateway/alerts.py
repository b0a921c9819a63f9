"""Probing alerts at the gateway: the detectors of `fedgate.query.probing` run after each logged outcome.

A detector that fires appends an `audit.alert` entry naming the subject, the agency, the detector, the
counts and the indexes of the entries it counted (never a value). Alerts refuse nothing: refusing is the
safeguards' job. At start the windows are rebuilt from the log's recent entries, so a restart does not
reset them.

Replicas sharing one log each watch every replica's outcomes. Before running the detectors over its own
outcome, a replica feeds them the entries the other replicas appended since it last looked (the gaps
its own appends jumped, `AuditLog.appended_by_others`: one indexed read of the few new entries, none
with a single gateway). So each replica runs the same detectors over the same entries in log order and
logs only the alerts its own outcomes complete: a probe spread over replicas is caught, and its alert is
logged once, by the replica whose query completed the pattern. The races left are in docs/privacy.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.core.audit_search import rfc3339
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import StoredEntry
from fedgate.query.probing import ProbeWatch
from fedgate.query.safeguards import AlertConfig

log = logging.getLogger(__name__)

# At most this many of the newest entries are read back at start, however long the window.
REBUILD_SCAN = 50_000
# At most this many of the other replicas' newest entries are read before one outcome (an idle replica
# catching up on a busy one); the older ones are skipped.
CATCH_UP_MAX = 10_000


class ProbeAlerts:
    """The AuditRecorder's follow-up: feeds each logged entry to the watch and logs the alerts it raises."""

    def __init__(self, audit_log: AuditLog, config: AlertConfig, start: int = 0) -> None:
        self._log = audit_log
        self.watch = ProbeWatch(config)
        # Every entry another replica appended below this index has been fed to the watch (or skipped).
        self._next = start
        # One catch-up at a time: another replica's entries are fed once, in log order, before our own.
        self._turn = asyncio.Lock()

    @classmethod
    async def open(cls, audit_log: AuditLog, config: AlertConfig) -> ProbeAlerts:
        """A watch rebuilt from the entries of the last window (the alerts logged there included)."""
        if not config.enabled:
            return cls(audit_log, config)
        recent, after = await asyncio.to_thread(_recent, audit_log, config.window_minutes)
        alerts = cls(audit_log, config, after)
        alerts.watch.remember(recent)
        return alerts

    async def __call__(self, index: int, entry: AuditEntry) -> None:
        """Run the detectors over a just-logged entry; a failure here is logged and never fails the call."""
        if not self.watch.config.enabled:
            return
        try:
            async with self._turn:
                await self._catch_up(index)
                found = self.watch.observe(index, entry)
            for alert in found:
                appended = await self._log.append(alert.entry(utc_now(), entry.trace_id))
                log.warning("probing alert '%s' (%s scope, %d entries) logged at index %d",
                            alert.detector, alert.scope, alert.count, appended.index)
        except Exception as exc:
            log.error("probing detectors failed after entry %d", index, exc_info=exc)

    async def _catch_up(self, stop: int) -> None:
        """Feed the watch the entries other replicas appended below `stop`; their alerts are theirs to log.

        A failed read is logged and not retried: the detectors are best effort, the query goes on.
        """
        gaps = self._log.appended_by_others(self._next, stop)
        self._next = max(self._next, stop + 1)  # `stop` is our own entry
        if not gaps:
            return
        start = max(gaps[0].start, gaps[-1].stop - CATCH_UP_MAX)
        try:
            stored = await asyncio.to_thread(_read, self._log, start, gaps[-1].stop)
            theirs = sum(len(self.watch.observe(item.index, AuditEntry.from_canonical(item.body)))
                         for item in stored if any(item.index in gap for gap in gaps))
        except Exception as exc:
            log.error("probing detectors could not read entries %d to %d of other replicas",
                      start, gaps[-1].stop - 1, exc_info=exc)
            return
        if theirs:
            # The replica that logged the completing entry logs the alert; here it only marks what it counted.
            log.debug("%d probing alerts completed by other replicas' entries before index %d", theirs, stop)


def _read(audit_log: AuditLog, start: int, stop: int) -> list[StoredEntry]:
    return list(audit_log.store.entries(start, stop))


def _recent(audit_log: AuditLog, minutes: int) -> tuple[list[tuple[int, AuditEntry]], int]:
    """The log's entries of the last `minutes` (at most REBUILD_SCAN), oldest first, and the index after them."""
    cutoff = rfc3339(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes))
    found: list[tuple[int, AuditEntry]] = []
    after = 0
    for item in audit_log.store.entries_newest_first():
        after = max(after, item.index + 1)
        entry = AuditEntry.from_canonical(item.body)
        if entry.time < cutoff or len(found) >= REBUILD_SCAN:
            break
        found.append((item.index, entry))
    return found[::-1], after
