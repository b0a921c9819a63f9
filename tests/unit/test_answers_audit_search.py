"""Audit search criteria: every form accepted comes out as the one form entries hold."""

from __future__ import annotations

import datetime as dt

import pytest

from fedgate.core import audit_search
from fedgate.core.errors import InvalidInput

NOW = dt.datetime(2026, 12, 2, 5, 30, 15, 250_000, tzinfo=dt.UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("", ""),
    ("now", "2026-12-02T05:30:15.250Z"),
    ("today", "2026-12-02T00:00:00.000Z"),
    ("yesterday", "2026-12-01T00:00:00.000Z"),
    ("24h", "2026-12-01T05:30:15.250Z"),
    ("7d", "2026-11-25T05:30:15.250Z"),
    ("30m", "2026-12-02T05:00:15.250Z"),
    ("2w", "2026-11-18T05:30:15.250Z"),
    ("2026-11-29", "2026-11-29T00:00:00.000Z"),
    # Entries are compared as text: a time without milliseconds must still sort correctly.
    ("2026-11-29T08:00:00Z", "2026-11-29T08:00:00.000Z"),
    ("2026-11-29T16:00:00+08:00", "2026-11-29T08:00:00.000Z"),
    ("2026-11-29 08:00", "2026-11-29T08:00:00.000Z"),
])
def test_times(text: str, expected: str) -> None:
    assert audit_search.point_in_time(text, "since", NOW) == expected


@pytest.mark.parametrize("text", ["yesterdy", "2026-13-01", "-5h", "soon", "24 hours"])
def test_unreadable_times_are_refused_with_the_forms(text: str) -> None:
    with pytest.raises(InvalidInput, match="ISO date.*yesterday.*24h"):
        audit_search.point_in_time(text, "since", NOW)


def test_subjects_actions_datasets_decisions() -> None:
    alice = "spiffe://fedgate/supervisor/dcb/alice"
    assert audit_search.normal_subject("supervisor/dcb/alice") == alice
    assert audit_search.normal_subject(alice) == alice
    assert audit_search.normal_subject("dept/hrss") == "spiffe://fedgate/dept/hrss"
    assert audit_search.normal_subject("gateway") == "spiffe://fedgate/gateway"
    assert audit_search.normal_action("match") == "query.match"
    assert audit_search.normal_action("query.match") == "query.match"
    assert audit_search.normal_action("register") == "registry.register"
    assert audit_search.normal_action("Match") == "Match"  # a call logged under its gRPC method
    assert audit_search.normal_decision("Deny") == "deny"
    for call, bad in ((audit_search.normal_subject, "alice"), (audit_search.normal_subject, "spiffe://other/x"),
                      (audit_search.normal_action, "query.mtch"), (audit_search.normal_dataset, "subsidies"),
                      (audit_search.normal_decision, "allowed")):
        with pytest.raises(InvalidInput):
            call(bad)
    with pytest.raises(InvalidInput, match="later"):
        audit_search.checked(since="2026-12-02", until="2026-12-01", now=NOW)


@pytest.mark.parametrize("text", ["999999d", "999999w", "0001-01-01T00:00:00+01:00"])
def test_times_out_of_range_are_refused_not_crashed(text: str) -> None:
    # Before: OverflowError, a traceback in the CLI and INTERNAL from the gateway's SearchEntries.
    with pytest.raises(InvalidInput, match="--since: .* is out of range"):
        audit_search.point_in_time(text, "since", NOW)
