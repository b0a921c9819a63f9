"""Issue 15, part 3: the disclosure log names who asked, why and under which case (an older log keeps its rows),
and the reconciliation flags only what one record lacks and the other should have."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fedgate.adapters.disclosure_log import Disclosure, DisclosureLog, read_disclosures
from fedgate.cli.department_view import (MISSING_AT_DEPARTMENT, MISSING_AT_GATEWAY, NOT_SERVED_AT_DEPARTMENT,
                                            State, reconcile)
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import NotFound

ALICE = "spiffe://fedgate/supervisor/dcb/alice"
OLD_TABLE = """
    CREATE TABLE disclosures (
        id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, query_id TEXT NOT NULL,
        entry_index INTEGER, checkpoint_size INTEGER, action TEXT NOT NULL, dataset TEXT NOT NULL,
        decision TEXT NOT NULL, reason TEXT NOT NULL, result_rows INTEGER);
    INSERT INTO disclosures (time, query_id, entry_index, checkpoint_size, action, dataset, decision, reason,
        result_rows) VALUES ('2026-01-01T00:00:00.000Z', 'q1', 2, 3, 'query.count', 'hrss.s', 'admitted', '', NULL),
                            ('2026-01-01T00:00:01.000Z', 'q1', 2, 3, 'query.count', 'hrss.s', 'served', '', 20);
"""


@pytest.mark.parametrize("version", [0, 1])
def test_an_older_log_keeps_its_rows_and_gains_the_askers_columns(tmp_path: Path, version: int) -> None:
    path = tmp_path / "disclosures.db"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_TABLE + f"PRAGMA user_version = {version};")
    # Read as it is (the view never migrates another process's log): the new columns read as ''.
    before = read_disclosures(path)
    assert [(d.decision, d.result_rows, d.subject) for d in before] == [("admitted", None, ""), ("served", 20, "")]
    log = DisclosureLog(path)
    log.record(Disclosure("2026-01-02T00:00:00.000Z", "q2", 5, 6, "query.disclose", "hrss.s", "served", "", 5,
                          ALICE, "核查", "C-1"))
    log.close()
    after = read_disclosures(path)
    assert after[:2] == before
    assert (after[2].subject, after[2].purpose, after[2].case_number) == (ALICE, "核查", "C-1")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_missing_log_says_where_to_find_it(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="data_dir"):
        read_disclosures(tmp_path / "nowhere.db")


def _entry(status: str, decision: str, qid: str, dataset: str = "hrss.s", t: str = "2026-01-01T00:00:00.000Z",
           action: str = "query.count") -> AuditEntry:
    return AuditEntry(time=t, subject=ALICE, role="supervisor", action=action, method="/m", decision=decision,
                      status=status, datasets=(dataset,), purpose="核查", case_number="C-1", query_id=qid)


def _record(qid: str, decision: str, t: str = "2026-01-01T00:00:01.000Z") -> Disclosure:
    return Disclosure(t, qid, 1, 2, "query.count", "hrss.s", decision, "", 3 if decision == "served" else None,
                      ALICE, "核查", "C-1")


def test_reconciliation_flags_only_what_should_be_in_both() -> None:
    entries = [
        (0, _entry("PERMISSION_DENIED", "deny", "")),                      # refused before any ticket
        (1, _entry("STARTED", "allow", "a")), (2, _entry("OK", "allow", "a")),  # served, recorded
        (3, _entry("STARTED", "allow", "b")), (4, _entry("OK", "allow", "b")),  # served, record deleted
        (5, _entry("STARTED", "allow", "c")), (6, _entry("OK", "allow", "c")),  # served, only admitted
        (7, _entry("STARTED", "allow", "d")), (8, _entry("UNAVAILABLE", "error", "d")),  # perhaps never asked
        (9, _entry("STARTED", "allow", "e")),                              # in progress
        (10, _entry("STARTED", "allow", "x", dataset="samr.c")), (11, _entry("OK", "allow", "x", dataset="samr.c")),
        (12, _entry("OK", "allow", "", action="registry.register")),       # not a request
    ]
    records = [_record("a", "admitted"), _record("a", "served"), _record("c", "admitted"),
               _record("z", "served"), _record("old", "served", t="2025-01-01T00:00:00.000Z")]
    view = {r.query_id or f"#{r.audit_indexes[0]}": r for r in reconcile("hrss", entries, records,
                                                                         since="2026-01-01T00:00:00.000Z")}
    assert set(view) == {"#0", "a", "b", "c", "d", "e", "z"}
    assert {q: r.flags for q, r in view.items() if r.flags} == {
        "b": (MISSING_AT_DEPARTMENT,), "c": (NOT_SERVED_AT_DEPARTMENT,), "z": (MISSING_AT_GATEWAY,)}
    assert (view["#0"].gateway, view["#0"].department) == (State.REFUSED, "-")
    assert (view["a"].gateway, view["a"].department, view["a"].rows) == (State.SERVED, "served", 3)
    assert view["d"].gateway is State.FAILED and view["d"].notes
    assert view["e"].gateway is State.IN_PROGRESS and not view["e"].notes
    assert (view["a"].agency, view["a"].supervisor, view["a"].purpose) == ("dcb", "supervisor/dcb/alice", "核查")
