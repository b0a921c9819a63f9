"""The gateway's match machine driven by hand-made events: match, sum and compare, both protocols, every refusal."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgate.crypto.compare import Packing
from fedgate.core.datasets import FieldGrant
from fedgate.core.errors import FailedPrecondition, InvalidInput, LocalProtocolError, RemoteProtocolError
from fedgate.core.matching_keys import MatchingKey
from fedgate.query import protocols
from fedgate.query import match as m
from fedgate.query.sizes import Sizes

PEER_KEY = MatchingKey(b"k" * 32, b"sig", "cert")
GRANTS = (FieldGrant("company_name", "L2", "plain"),)
WIDTH = 4  # ciphertext bytes in these tests: the machine only checks sizes
PACKING = Packing(offset_bits=8, slot_bits=16, slots=2)


def tok(*values: int, width: int = 16) -> bytes:
    return b"".join(v.to_bytes(width, "big") for v in values)


def stats(tokens: int, rows: int | None = None) -> m.SideStats:
    return m.SideStats(rows if rows is not None else tokens, 0, tokens)


def make(mode: str = "keyed", *, kind: str = "match", grants: tuple[FieldGrant, ...] = (), limit: int = 100,
         max_tokens: int = 1000, check: Callable[[Sizes], None] | None = None,
         seen: list[Sizes] | None = None, epsilon: float = 0.0) -> m.MatchMachine:
    def check_sizes(sizes: Sizes) -> None:
        if seen is not None:
            seen.append(sizes)
        if check is not None:
            check(sizes)

    values = {"match": ((), ()), "sum": (("amount",), ()), "compare": (("a",), ("b",))}[kind]
    left = m.SidePlan("hrss", "h:1", "subsidies", "uscc", "", b"", values[0])
    right = m.SidePlan("samr", "s:1", "companies", "uscc", "", b"", values[1])
    homomorphic = None if kind == "match" else m.Homomorphic(f"query.{kind}", b"pk", WIDTH, kind == "compare")
    comparison = m.Comparison(1, 1, 1 << 63, PACKING) if kind == "compare" else None
    plan = m.MatchPlan(left, right, protocols.get(mode), check_sizes, 10, max_tokens, grants, limit, PEER_KEY,
                       homomorphic, comparison, epsilon)
    return m.MatchMachine(plan, m.MatchOutcome())


def feed(machine: m.MatchMachine, event: m.Event) -> list[m.Command]:
    """Handle one event; carry out an Intersect at once (as the pump does) and return every command."""
    out = machine.handle(event)
    if out and isinstance(out[-1], m.Intersect):
        cmd = out[-1]
        out = out + feed(machine, m.Intersected(cmd.intersector.finish(pairs=cmd.pairs, max_pairs=cmd.max_pairs)))
    return out


def started(machine: m.MatchMachine) -> list[m.Command]:
    out = machine.start()
    out += machine.handle(m.Started("left", b"sealed"))
    out += machine.handle(m.Started("right"))
    assert machine.state is m.MatchState.STREAMING
    return out


def stream_keyed(machine: m.MatchMachine, left: bytes, right: bytes) -> list[m.Command]:
    out = feed(machine, m.OwnTokens("left", left))
    out += feed(machine, m.OwnDone("left", stats(len(left) // 16)))
    out += feed(machine, m.OwnTokens("right", right))
    out += feed(machine, m.OwnDone("right", stats(len(right) // 16)))
    return out


def close(machine: m.MatchMachine) -> list[m.Command]:
    assert machine.closing and machine.reading == {"left", "right"}
    out = machine.handle(m.StreamEnded("left")) + machine.handle(m.StreamEnded("right"))
    assert out == [m.Finished()] and machine.state is m.MatchState.DONE
    return out


def of(commands: list[m.Command], kind: type) -> list[m.Command]:
    return [c for c in commands if isinstance(c, kind)]


# --- happy paths ---


def test_keyed_match_with_disclosure() -> None:
    seen: list[Sizes] = []
    machine = make("keyed", grants=GRANTS, limit=1, seen=seen)
    first = machine.start()
    assert first == [m.StartSide("left", "samr", PEER_KEY, grants=GRANTS, limit=1)]
    assert machine.handle(m.Started("left", b"sealed")) == [m.StartSide("right", "hrss", sealed_key=b"sealed")]
    assert machine.outcome.admitted == ["left"]  # its ticket is spent: a stale right side must not restart the match
    assert machine.handle(m.Started("right")) == [] and machine.reading == {"left", "right"}
    assert machine.outcome.admitted == ["left", "right"]
    out = stream_keyed(machine, tok(1, 2, 3), tok(3, 2, 9))
    assert of(out, m.Send) == [out[-1]]  # keyed tokens go straight into the intersector, never to the peer
    assert of(out, m.Progress)[-1] == m.Progress("intersect", "", 0)
    assert seen == [Sizes({"left": 3, "right": 3}, 2)]  # the cardinality is an aggregate (min_aggregate)
    assert out[-1] == m.Send("left", m.DiscloseMatched([1]))  # the limit cuts positions [1, 2]
    assert machine.reading == {"left"}
    rows = [(["某公司"], [False])]
    assert machine.handle(m.Rows("left", rows)) == [m.Progress("disclose", "hrss", 1), m.EndWriting()]
    close(machine)
    outcome = machine.outcome
    assert outcome.intersection is not None and outcome.intersection.cardinality == 2
    assert outcome.rows == rows and outcome.left == stats(3)


def test_ecdh_match_relays_own_tokens_and_intersects_what_each_side_reblinded() -> None:
    machine = make("ecdh")
    assert machine.start() == [m.StartSide("left", "samr", None, grants=(), limit=100)]
    assert machine.handle(m.Started("left", b"ignored")) == [m.StartSide("right", "hrss", sealed_key=b"")]
    machine.handle(m.Started("right"))
    points = tok(7, 8, width=32)
    assert machine.handle(m.OwnTokens("left", points)) == [m.Send("right", m.PeerTokens(points))]
    assert machine.handle(m.OwnDone("left", stats(2))) == [m.Send("right", m.PeerDone(stats(2))),
                                                           m.Progress("left", "hrss", 0, stage="re-blinding")]
    assert machine.reading == {"left", "right"}  # the left still re-blinds the right's points
    machine.handle(m.OwnTokens("right", tok(9, width=32)))
    machine.handle(m.OwnDone("right", stats(1)))
    # Each side re-blinds the OTHER side's tokens: the right's reblinded are the left's rows.
    assert machine.handle(m.Reblinded("right", tok(1, 2))) == []
    assert machine.handle(m.ReblindDone("right", 2)) == [m.Progress("right", "samr", 0, stage="done")]
    machine.handle(m.Reblinded("left", tok(2)))
    out = feed(machine, m.ReblindDone("left", 1))
    assert out[-1] == m.EndWriting()
    close(machine)
    result = machine.outcome.intersection
    assert result is not None and result.cardinality == 1 and result.left_positions.tolist() == [1]


def test_progress_is_coarse_and_comes_at_each_step() -> None:
    machine = make("keyed", max_tokens=10**6)
    started(machine)
    step = m.PROGRESS_EVERY
    assert machine.handle(m.OwnTokens("left", tok(*range(step - 1)))) == []
    assert machine.handle(m.OwnTokens("left", tok(1, 2))) == [m.Progress("left", "hrss", step, stage="blinding")]
    assert machine.handle(m.OwnDone("left", stats(step + 1))) == [
        m.Progress("left", "hrss", step, stage="done", rows_blinded=step)]


def test_sum_checks_the_aggregate_then_asks_for_totals() -> None:
    seen: list[Sizes] = []
    machine = make("keyed", kind="sum", seen=seen)
    started(machine)
    machine.handle(m.OwnTokens("left", tok(1, 2)))
    machine.handle(m.OwnValues("left", b"x" * 2 * WIDTH, 2))
    machine.handle(m.OwnDone("left", stats(2)))
    machine.handle(m.OwnTokens("right", tok(2)))
    out = feed(machine, m.OwnDone("right", stats(1)))[-2:]
    assert seen == [Sizes({"left": 2, "right": 1}, 1)]
    assert out[0] == m.Progress("aggregate", "", 1)
    totals = out[1]
    assert isinstance(totals, m.ComputeTotals) and totals.positions.tolist() == [1]
    assert totals.values is machine.outcome.values["left"] and "right" not in machine.outcome.values
    assert machine.handle(m.TotalsComputed([b"total"])) == [m.EndWriting()]
    assert machine.outcome.totals == [b"total"]


def test_a_noisy_sum_takes_its_departments_noise_into_the_totals_and_noises_the_cardinality() -> None:
    machine = make("keyed", kind="sum", epsilon=0.01)
    started(machine)
    machine.handle(m.OwnTokens("left", tok(*range(1, 41))))
    machine.handle(m.OwnValues("left", b"x" * 40 * WIDTH, 40))
    machine.handle(m.OwnDone("left", stats(40), b"n" * WIDTH))
    machine.handle(m.OwnTokens("right", tok(*range(1, 41))))
    out = feed(machine, m.OwnDone("right", stats(40)))
    totals = of(out, m.ComputeTotals)[0]
    assert isinstance(totals, m.ComputeTotals) and totals.noise == (b"n" * WIDTH,)
    outcome = machine.outcome
    assert outcome.epsilon == 0.01 and outcome.intersection is not None and outcome.intersection.cardinality == 40
    # Scale 100: the noisy cardinality equals the exact one with probability about 0.005.
    assert outcome.noisy_cardinality is not None and outcome.noisy_cardinality >= 0
    assert of(out, m.Progress)[-1] == m.Progress("aggregate", "", outcome.noisy_cardinality)


@pytest.mark.parametrize("noise", [b"", b"n" * (WIDTH + 1)], ids=["none", "wrong-size"])
def test_a_noisy_sum_without_its_departments_noise_is_refused(noise: bytes) -> None:
    machine = make("keyed", kind="sum", epsilon=0.5)
    started(machine)
    machine.handle(m.OwnTokens("left", tok(1)))
    machine.handle(m.OwnValues("left", b"x" * WIDTH, 1))
    with pytest.raises(RemoteProtocolError, match="no noise"):
        machine.handle(m.OwnDone("left", stats(1), noise))
    assert machine.state is m.MatchState.ERROR


@pytest.mark.parametrize("kind,side", [("sum", "right"), ("sum", "left"), ("match", "left")])
def test_noise_where_none_is_taken_is_refused(kind: str, side: str) -> None:
    machine = make("keyed", kind=kind)  # exact
    started(machine)
    if side == "left" and kind == "sum":
        machine.handle(m.OwnTokens("left", tok(1)))
        machine.handle(m.OwnValues("left", b"x" * WIDTH, 1))
    with pytest.raises(RemoteProtocolError, match="takes none"):
        machine.handle(m.OwnDone(side, stats(1 if side == "left" and kind == "sum" else 0), b"n" * WIDTH))


def _compare_streamed(grants: tuple[FieldGrant, ...]) -> tuple[m.MatchMachine, list[m.Command]]:
    machine = make("keyed", kind="compare", grants=grants, limit=5)
    started(machine)
    out: list[m.Command] = []
    for side, tokens in (("left", tok(1, 2, 2)), ("right", tok(2, 2, 3))):
        out += feed(machine, m.OwnTokens(side, tokens))  # type: ignore[arg-type]
        out += feed(machine, m.OwnValues(side, b"v" * 3 * WIDTH, 3))  # type: ignore[arg-type]
        out += feed(machine, m.OwnDone(side, stats(3)))  # type: ignore[arg-type]
    return machine, out


def test_compare_without_disclosure_closes_both_streams_before_its_results_leave() -> None:
    machine, out = _compare_streamed(())
    tail = out[out.index(m.Progress("intersect", "", 0)) + 2:]  # after the Intersect
    # Both departments end their streams (recording `served`) before any result is logged or leaves, so a
    # client hanging up on its results cannot cancel them after the gateway logged OK.
    assert tail == [m.EndWriting()] and machine.reading == frozenset(m.SIDES)
    assert machine.handle(m.StreamEnded("right")) == []
    tail = machine.handle(m.StreamEnded("left"))
    assert tail[0] == m.ResultsReady(4) and tail[1] == m.Progress("compare", "", 4)  # 2 x 2 pairs of key 2
    send = tail[2]
    assert isinstance(send, m.SendComparisons) and send.pair_left.tolist() == [1, 1, 2, 2]
    assert tail[3:] == [m.ComparisonsSent(4, PACKING), m.Finished()]
    assert machine.state is m.MatchState.DONE


def test_compare_discloses_the_left_rows_of_flagged_pairs() -> None:
    machine, out = _compare_streamed(GRANTS)
    assert out[-1] == m.AskFlags() and machine.reading == frozenset()
    out = machine.handle(m.FlagsReceived([3, 0]))
    assert out == [m.Flagged(2, 2), m.Send("left", m.DiscloseMatched([1, 2]))]
    assert machine.outcome.flagged_rows == 2


# --- refusals ---


def _at(state: str) -> m.MatchMachine:
    machine = make("keyed", grants=GRANTS)
    if state == "start_left":
        machine.start()
    elif state == "start_right":
        machine.start()
        machine.handle(m.Started("left"))
    else:
        started(machine)
    if state in ("disclosing", "closing"):
        stream_keyed(machine, tok(1, 2), tok(2))
    if state == "closing":
        machine.handle(m.Rows("left", []))
    assert machine.state.value == state
    return machine


@pytest.mark.parametrize("state, event, message", [
    ("start_left", m.OwnTokens("left", tok(1)), "department 'hrss' sent an unexpected own_tokens"),
    ("start_left", m.Started("right"), "department 'samr' sent an unexpected started"),
    ("start_right", m.Rows("right", []), "department 'samr' sent an unexpected rows"),
    ("streaming", m.Started("left"), "department 'hrss' sent an unexpected started"),
    ("streaming", m.Rows("left", []), "department 'hrss' sent an unexpected rows"),
    ("streaming", m.Reblinded("right", tok(1)), "department 'samr' sent an unexpected reblinded"),
    ("streaming", m.ReblindDone("left", 0), "department 'hrss' sent an unexpected reblind_done"),
    ("streaming", m.OwnValues("left", b"", 0), "department 'hrss' sent an unexpected own_values"),
    ("streaming", m.Unrecognised("right"), "department 'samr' sent an unexpected None"),
    ("disclosing", m.OwnTokens("left", tok(1)), "department 'hrss' sent an unexpected own_tokens"),
    ("disclosing", m.Rows("right", []), "department 'samr' sent an unexpected rows"),
    ("closing", m.OwnDone("right", stats(1)), "department 'samr' sent own_done after the end of the match"),
    ("closing", m.Unrecognised("left"), "department 'hrss' sent None after the end of the match"),
    ("start_left", m.StreamEnded("left"), "department 'hrss' ended the match stream early"),
    ("streaming", m.StreamEnded("right"), "department 'samr' ended the match stream early"),
    ("disclosing", m.StreamEnded("left"), "department 'hrss' ended the match stream early"),
])
def test_a_message_its_state_does_not_allow_is_the_departments_error(state: str, event: m.Event,
                                                                     message: str) -> None:
    machine = _at(state)
    with pytest.raises(RemoteProtocolError, match=f"^{message}$"):
        machine.handle(event)
    assert machine.state is m.MatchState.ERROR
    with pytest.raises(LocalProtocolError, match="has failed"):  # and it stays failed
        machine.handle(m.StreamEnded("left"))


def test_a_side_sends_nothing_of_its_own_after_own_done() -> None:
    machine = make("ecdh")
    started(machine)
    machine.handle(m.OwnDone("left", stats(0)))
    with pytest.raises(RemoteProtocolError, match="department 'hrss' sent an unexpected own_tokens"):
        machine.handle(m.OwnTokens("left", tok(1, width=32)))


def test_a_finished_keyed_side_may_send_nothing_more_while_the_other_streams() -> None:
    machine = make("keyed")
    started(machine)
    machine.handle(m.OwnDone("left", stats(0)))
    assert machine.reading == {"right"}
    with pytest.raises(RemoteProtocolError, match="department 'hrss' sent an unexpected own_done"):
        machine.handle(m.OwnDone("left", stats(0)))


@pytest.mark.parametrize("mode, side, event", [
    ("keyed", "right", m.OwnTokens("right", tok(1, 2, 3))),
    ("ecdh", "left", m.Reblinded("right", tok(1, 2, 3))),  # the right re-blinded the LEFT's rows
])
def test_too_many_tokens_is_the_max_match_rows_safeguard(mode: str, side: str, event: m.Event) -> None:
    machine = make(mode, max_tokens=2)
    started(machine)
    with pytest.raises(FailedPrecondition, match=f"^the {side} set has more than 2 rows "
                                                 r"\(safeguard max_match_rows\): refused$"):
        machine.handle(event)


def test_a_relaying_protocol_refuses_own_tokens_past_the_bound_before_relaying_them() -> None:
    """The peer department is never sent more than max_match_rows tokens: the gateway refuses first."""
    machine = make("ecdh", max_tokens=2)
    started(machine)
    assert machine.handle(m.OwnTokens("left", tok(1, 2, width=32)))  # within the bound: relayed
    with pytest.raises(FailedPrecondition, match=r"^the left set has more than 2 rows \(safeguard max_match_rows\)"):
        machine.handle(m.OwnTokens("left", tok(3, width=32)))


def test_a_sizes_safeguard_refusing_ends_the_match_before_any_result() -> None:
    def refuse(sizes: Sizes) -> None:
        raise FailedPrecondition("too small")

    machine = make("keyed", grants=GRANTS, check=refuse)
    started(machine)
    with pytest.raises(FailedPrecondition, match="too small"):
        stream_keyed(machine, tok(1), tok(1))
    assert machine.state is m.MatchState.ERROR and machine.outcome.rows == []


def test_values_must_cover_every_token() -> None:
    machine = make("keyed", kind="sum")
    started(machine)
    machine.handle(m.OwnTokens("left", tok(1, 2)))
    machine.handle(m.OwnValues("left", b"x" * WIDTH, 1))
    with pytest.raises(RemoteProtocolError, match="department 'hrss' sent values for 1 rows but 2 tokens"):
        machine.handle(m.OwnDone("left", stats(2)))


def test_a_values_chunk_of_the_wrong_size_is_refused() -> None:
    machine = make("keyed", kind="compare")
    started(machine)
    with pytest.raises(RemoteProtocolError, match="sent 3 bytes of ciphertexts for 1 rows of 1 values"):
        machine.handle(m.OwnValues("right", b"xyz", 1))


@pytest.mark.parametrize("flags", [[0, 0], [4], [-1], [1, 2, 1]])
def test_bad_flagged_pairs_are_refused(flags: list[int]) -> None:
    machine, _ = _compare_streamed(GRANTS)
    with pytest.raises(InvalidInput, match="^flagged pairs must be distinct indices below 4$"):
        machine.handle(m.FlagsReceived(flags))


def test_no_disclosure_of_zero_positions() -> None:
    machine = make("keyed", grants=GRANTS)
    started(machine)
    assert stream_keyed(machine, tok(1), tok(2))[-1] == m.EndWriting()  # nothing matched
    machine, _ = _compare_streamed(GRANTS)
    assert machine.handle(m.FlagsReceived([])) == [m.Flagged(0, 0), m.EndWriting()]


def test_events_only_the_pump_sends_are_its_mistake_when_out_of_place() -> None:
    with pytest.raises(LocalProtocolError, match="start the match"):
        make().handle(m.Started("left"))
    machine = make()
    started(machine)
    with pytest.raises(LocalProtocolError, match="TotalsComputed cannot happen while the match is streaming"):
        machine.handle(m.TotalsComputed([]))
    with pytest.raises(LocalProtocolError):
        machine.start()


def test_nothing_is_taken_after_the_end() -> None:
    machine = make()
    started(machine)
    stream_keyed(machine, tok(1), tok(1))
    close(machine)
    with pytest.raises(RemoteProtocolError, match="sent an unexpected own_tokens"):
        machine.handle(m.OwnTokens("left", tok(1)))


@settings(max_examples=40, deadline=None)
@given(left=st.lists(st.integers(0, 20), max_size=30), right=st.lists(st.integers(0, 20), max_size=30),
       chunk=st.integers(1, 7), mode=st.sampled_from(protocols.names()))
def test_any_chunking_counts_the_left_rows_whose_key_is_on_the_right(left: list[int], right: list[int], chunk: int,
                                                                    mode: str) -> None:
    machine = make(mode, max_tokens=100)
    started(machine)
    relays = protocols.get(mode).relays
    for side, values, peer in (("left", left, right), ("right", right, left)):
        width = 32 if relays else 16
        for i in range(0, len(values), chunk):
            feed(machine, m.OwnTokens(side, tok(*values[i:i + chunk], width=width)))  # type: ignore[arg-type]
        feed(machine, m.OwnDone(side, stats(len(values))))  # type: ignore[arg-type]
        if relays:  # this side re-blinds the peer's rows
            for i in range(0, len(peer), chunk):
                feed(machine, m.Reblinded(side, tok(*peer[i:i + chunk])))  # type: ignore[arg-type]
            feed(machine, m.ReblindDone(side, len(peer)))  # type: ignore[arg-type]
    result = machine.outcome.intersection
    assert result is not None and machine.state is m.MatchState.CLOSING
    assert result.cardinality == sum(1 for v in left if v in set(right))
