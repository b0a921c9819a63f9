"""The once-only store: a logged entry is admitted once per action and side, durably, and never twice in a race."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from fedgate.adapters.disclosure_log import REPLAYED, Disclosure, DisclosureLog, Use
from fedgate.core.errors import TicketReplayed
from fedgate.crypto.checkpoint import Checkpoint
from fedgate.server.status import status_for

QID = "ab" * 16


def _admit(log: DisclosureLog, use: Use, size: int = 10) -> None:
    log.accept(Checkpoint("fedgate.local/audit", size, bytes([size]) * 32), f"note {size}", use,
               Disclosure("2026-01-01T00:00:00Z", QID, use.entry_index, size, use.action, "hrss.subsidies",
                          "admitted", "", None))


def _admitted(log: DisclosureLog) -> list[tuple[int | None, str]]:
    return [(d.entry_index, d.action) for d in log.disclosures() if d.decision == "admitted"]


def test_an_entry_is_admitted_once_per_action_and_side(tmp_path: Path) -> None:
    log = DisclosureLog(tmp_path / "disclosures.db")
    firsts = [Use(5, "query.match", "left"), Use(5, "query.match", "right"),  # a self-join: both sides here
              Use(5, "query.sum", "left"), Use(6, "query.match", "left"), Use(7, "query.count")]
    for use in firsts:
        _admit(log, use)
    for use in firsts:
        with pytest.raises(TicketReplayed, match="already admitted the logged request") as err:
            _admit(log, use, size=11)
        assert status_for(err.value).name == "PERMISSION_DENIED"
    assert log.used() == sorted(firsts, key=lambda u: (u.entry_index, u.action, u.role))
    # A refused replay writes nothing: no second admission, and its checkpoint is not accepted.
    assert len(_admitted(log)) == len(firsts)
    assert log.last_accepted_note() == "note 10"
    log.close()


def test_a_use_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "disclosures.db"
    log = DisclosureLog(path)
    _admit(log, Use(3, "query.disclose"))
    log.close()
    reopened = DisclosureLog(path)
    with pytest.raises(TicketReplayed):
        _admit(reopened, Use(3, "query.disclose"), size=12)
    _admit(reopened, Use(4, "query.disclose"), size=12)  # another entry is still served
    assert _admitted(reopened) == [(3, "query.disclose"), (4, "query.disclose")]
    reopened.close()


def _race(logs: list[DisclosureLog], use: Use) -> list[str]:
    """Two threads present `use` at the same instant, through logs[0] and logs[-1]; what each got."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def present(log: DisclosureLog) -> None:
        barrier.wait()
        try:
            _admit(log, use)
            outcomes.append("admitted")
        except TicketReplayed:
            outcomes.append("refused")

    threads = [threading.Thread(target=present, args=(log,)) for log in (logs[0], logs[-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


@pytest.mark.parametrize("connections", [1, 2], ids=["one-connection", "two-connections"])
def test_two_racing_presentations_admit_exactly_one(tmp_path: Path, connections: int) -> None:
    """Both threads pass the barrier together; the store's transaction lets exactly one take the use
    (with two connections, as two adapter processes on one file would)."""
    path = tmp_path / "disclosures.db"
    logs = [DisclosureLog(path) for _ in range(connections)]
    for attempt in range(20):
        assert sorted(_race(logs, Use(attempt, "query.disclose"))) == ["admitted", "refused"], attempt
    assert len(_admitted(logs[0])) == 20
    for log in logs:
        log.close()


def test_entries_admitted_before_the_store_existed_count_as_used(tmp_path: Path) -> None:
    """An adapter upgraded with an existing disclosure log: what it admitted before is not served again."""
    path = tmp_path / "disclosures.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE disclosures (
            id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, query_id TEXT NOT NULL,
            entry_index INTEGER, checkpoint_size INTEGER, action TEXT NOT NULL, dataset TEXT NOT NULL,
            decision TEXT NOT NULL, reason TEXT NOT NULL, result_rows INTEGER);""")
    rows = [(2, "query.count", "admitted"), (2, "query.count", "served"), (3, "query.match", "admitted"),
            (4, "query.disclose", "refused"), (None, "query.count", "refused")]
    old.executemany("INSERT INTO disclosures (time, query_id, entry_index, checkpoint_size, action, dataset,"
                    " decision, reason, result_rows) VALUES ('t', 'q', ?, NULL, ?, 'hrss.s', ?, '', NULL)", rows)
    old.commit()
    old.close()
    log = DisclosureLog(path)
    assert log.used() == [Use(2, "query.count"), Use(3, "query.match", "left"), Use(3, "query.match", "right")]
    _admit(log, Use(4, "query.disclose"))  # refused before, so never used
    with pytest.raises(TicketReplayed):
        _admit(log, Use(3, "query.match", "right"))
    log.close()
    again = DisclosureLog(path)
    assert again.used()[-1] == Use(4, "query.disclose")
    again.close()


def test_the_replay_message_names_no_value() -> None:
    assert "ticket replayed" in REPLAYED and not any(ch.isdigit() for ch in REPLAYED)
