"""What a side's progress shows: coarse counts against the published row count, and nothing of a withheld set."""

from __future__ import annotations

import pytest

from fedgate.client.gateway import ProgressReport
from fedgate.client.progress import ProgressBoard
from fedgate.core.errors import RemoteProtocolError
from fedgate.core.matching_keys import MatchingKey
from fedgate.query import match as m
from fedgate.query import protocols

STEP = m.PROGRESS_EVERY
PUBLISHED = 10 * STEP


def tok(count: int, start: int = 0) -> bytes:
    return b"".join(v.to_bytes(16, "big") for v in range(start, start + count))


def make(*, left_filter: str = "", epsilon: float = 0.0, mode: str = "keyed") -> m.MatchMachine:
    left = m.SidePlan("hrss", "h:1", "subsidies", "uscc", left_filter, b"n", dataset_rows=PUBLISHED)
    right = m.SidePlan("samr", "s:1", "companies", "uscc", "", b"", dataset_rows=PUBLISHED)
    plan = m.MatchPlan(left, right, protocols.get(mode), lambda sizes: None, 10, 10**7,
                       peer_key=MatchingKey(b"k" * 32, b"sig", "cert"), epsilon=epsilon)
    machine = m.MatchMachine(plan, m.MatchOutcome())
    machine.start()
    machine.handle(m.Started("left", b"sealed"))
    machine.handle(m.Started("right"))
    return machine


def progress(commands: list[m.Command]) -> list[m.Progress]:
    return [c for c in commands if isinstance(c, m.Progress)]


def test_reports_show_rows_blinded_coarse_against_the_published_row_count() -> None:
    machine = make(left_filter="amount > 5")
    assert progress(machine.handle(m.Report("left", STEP + 7, STEP - 1))) == []
    shown = progress(machine.handle(m.Report("left", 2 * STEP + 3, STEP + 123)))
    assert shown == [m.Progress("left", "hrss", 0, stage="blinding", rows_blinded=STEP, dataset_rows=PUBLISHED,
                                filtered=True)]


def test_a_noisy_answers_filtered_side_shows_its_stages_and_no_count() -> None:
    machine = make(left_filter="amount > 5", epsilon=0.5)
    seen: list[m.Progress] = []
    for i in range(1, 4):  # three steps of rows and tokens: not one event, as even their number would count
        seen += progress(machine.handle(m.Report("left", i * STEP + 11, i * STEP + 11)))
        seen += progress(machine.handle(m.OwnTokens("left", tok(STEP, i * STEP))))
    assert seen == []
    done = progress(machine.handle(m.OwnDone("left", m.SideStats(3 * STEP + 11, 11, 3 * STEP))))
    assert done == [m.Progress("left", "hrss", 0, stage="done", dataset_rows=PUBLISHED, filtered=True,
                               withheld=True)]


def test_a_noisy_answers_unfiltered_side_shows_rows_of_its_public_size_but_no_tokens() -> None:
    machine = make(epsilon=0.5)
    assert progress(machine.handle(m.OwnTokens("right", tok(STEP + 1)))) == []  # tokens: invalid ones withheld
    shown = progress(machine.handle(m.Report("right", STEP + 5, STEP + 5)))
    assert shown == [m.Progress("right", "samr", 0, stage="blinding", rows_blinded=STEP, dataset_rows=PUBLISHED)]


def test_ecdh_re_blinding_progress_counts_the_peers_tokens_coarse() -> None:
    machine = make(mode="ecdh")
    machine.handle(m.OwnDone("right", m.SideStats(2 * STEP, 0, 2 * STEP)))
    assert progress(machine.handle(m.Reblinded("left", tok(STEP - 1)))) == []
    shown = progress(machine.handle(m.Reblinded("left", tok(2, STEP))))
    assert [(p.stage, p.tokens_reblinded) for p in shown] == [("re-blinding", STEP)]


def test_a_report_after_the_sides_own_rows_are_done_is_the_departments_protocol_error() -> None:
    machine = make()
    machine.handle(m.OwnDone("left", m.SideStats(5, 0, 5)))
    with pytest.raises(RemoteProtocolError, match="unexpected progress"):
        machine.handle(m.Report("left", 5, 5))


def test_the_board_shows_percent_rate_and_time_left_and_only_a_bound_for_a_filtered_side() -> None:
    board = ProgressBoard(0.0)
    side = dict(stage="blinding", dataset_rows=1_000_000)
    board.update(ProgressReport("left", "hrss", 0, rows_blinded=100_000, **side), 10.0)  # type: ignore[arg-type]
    key, line = board.update(ProgressReport("left", "hrss", 0, rows_blinded=200_000, **side), 20.0)  # type: ignore[arg-type]
    assert key == "left"
    assert line == "left hrss: blinding, 200,000 of 1,000,000 (20%), 10,000/s, about 1m 20s left"
    filtered = dict(stage="blinding", dataset_rows=1_000_000, filtered=True)
    board.update(ProgressReport("right", "samr", 0, rows_blinded=50_000, **filtered), 10.0)  # type: ignore[arg-type]
    _, line = board.update(ProgressReport("right", "samr", 0, rows_blinded=100_000, **filtered), 15.0)  # type: ignore[arg-type]
    assert line == "right samr: blinding, 100,000 of at most 1,000,000, 10,000/s, at most 1m 30s left"
    _, line = board.update(ProgressReport("right", "samr", 0, stage="blinding", withheld=True), 75.0)
    assert line == "right samr: blinding (counts withheld: noisy answer), 1m 5s so far"
    assert board.update(ProgressReport("intersect", "", 0), 80.0) == ("intersect", "intersect: 0")


def test_a_done_side_shows_its_coarse_rows_and_tokens_and_a_withheld_one_only_its_stage() -> None:
    board = ProgressBoard(0.0)
    done = ProgressReport("left", "hrss", 950_000, stage="done", rows_blinded=1_000_000, dataset_rows=1_000_000)
    assert board.update(done, 5.0)[1] == "left hrss: done, 1,000,000 rows, 950,000 tokens"
    noisy = ProgressReport("right", "samr", 0, stage="done", dataset_rows=1_000_000, filtered=True, withheld=True)
    assert board.update(noisy, 5.0)[1] == "right samr: done"


def test_a_side_that_finishes_the_peers_tokens_before_its_own_ends_done() -> None:
    # ECDH: the left side may re-blind all of the right's tokens before it has sent the last of its own.
    machine = make(mode="ecdh")
    machine.handle(m.OwnTokens("right", tok(5)))
    machine.handle(m.Reblinded("left", tok(5)))
    early = progress(machine.handle(m.ReblindDone("left", 5)))
    assert [p.stage for p in early] == ["blinding"]
    machine.handle(m.OwnTokens("left", tok(5)))
    last = progress(machine.handle(m.OwnDone("left", m.SideStats(5, 0, 5))))
    assert [p.stage for p in last] == ["done"]
