"""At start, close the audit trail of queries a crashed gateway left unfinished.

A query's STARTED entry is appended before any department is asked; its
outcome when it ends. If the gateway process dies in between, the outcome is
never written. On restart the gateway appends, for each such query, an
outcome with status ABORTED ("the gateway stopped before this query
finished"), so a security officer reads a complete trail instead of guessing.

Only for a log this process owns alone (SQLite: one gateway per file). With
replicas sharing a PostgreSQL log, another replica's query in flight would
look the same, so nothing is appended there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.gateway.audit_log import AuditLog

log = logging.getLogger(__name__)

# Queries in flight at a crash are at the end of the log: look back this far.
RECOVERY_WINDOW = 10_000
ABORTED_REASON = "the gateway stopped before this query finished (found at restart); no result was returned"


def unfinished(entries: list[AuditEntry]) -> list[AuditEntry]:
    """STARTED entries (oldest first) with no later outcome for the same query id."""
    ended = {e.query_id for e in entries if e.query_id and e.status != "STARTED"}
    return [e for e in entries if e.status == "STARTED" and e.query_id and e.query_id not in ended]


async def close_unfinished(audit_log: AuditLog) -> int:
    """Append an ABORTED outcome for every query the last run left unfinished; returns how many."""

    def tail() -> list[AuditEntry]:
        stored = []
        for item in audit_log.store.entries_newest_first():
            stored.append(AuditEntry.from_canonical(item.body))
            if len(stored) >= RECOVERY_WINDOW:
                break
        return stored[::-1]

    open_queries = unfinished(await asyncio.to_thread(tail))
    for started in open_queries:
        await audit_log.append(dataclasses.replace(
            started, time=utc_now(), decision="error", status="ABORTED", reason=ABORTED_REASON))
    if open_queries:
        log.warning("closed %d queries left unfinished by the previous run (status ABORTED)", len(open_queries))
    return len(open_queries)
