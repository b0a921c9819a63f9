"""Queries left unfinished by a crashed gateway are found from the log's tail."""

from __future__ import annotations

from fedgate.core.audit_entry import AuditEntry
from fedgate.gateway.recovery import unfinished


def _entry(query_id: str, status: str) -> AuditEntry:
    return AuditEntry(time="2026-11-30T00:00:00.000Z", subject="spiffe://fedgate/supervisor/dcb/a", role="supervisor",
                      action="query.count", method="/fedgate.v1.QueryService/CountRows",
                      decision="allow" if status in ("STARTED", "OK") else "error", status=status, query_id=query_id)


def test_only_started_queries_without_an_outcome_are_unfinished() -> None:
    entries = [_entry("a", "STARTED"), _entry("b", "STARTED"), _entry("a", "OK"), _entry("c", "STARTED"),
               _entry("d", "STARTED"), _entry("d", "UNAVAILABLE"), _entry("", "OK")]
    assert [e.query_id for e in unfinished(entries)] == ["b", "c"]
    assert unfinished([]) == []
