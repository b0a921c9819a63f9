"""A department's side of a match as a machine: start checks, allowed messages, the bounds, the record rule."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgate.core.datasets import DatasetDecl, FieldDecl, FieldGrant
from fedgate.core.errors import FedgateError, InvalidInput, LocalProtocolError, RemoteProtocolError
from fedgate.core.matching_keys import MatchingKey
from fedgate.core.classification import default_levels
from fedgate.query import match_side as side
from fedgate.crypto.ticket import TicketRefused
from fedgate.query.audit_params import LoggedFilter, QueryParams, filter_digest
from fedgate.query.safeguards import Release, Safeguards
from fedgate.core.supervisor_keys import SupervisorKey

DECL = DatasetDecl("hrss", "subsidies", (
    FieldDecl.build("uscc", "string", "L2", "uscc"),
    FieldDecl.build("company_name", "string", "L2"),
    FieldDecl.build("amount_fen", "int", "L3"),
    FieldDecl.build("employees", "int", "L3"),
), row_count=100)
GRANTS = (FieldGrant("company_name", "L2", "plain"),)
NO_KEY = MatchingKey(b"", b"", "")
DEPARTMENT = Safeguards.for_department(default_levels())


@pytest.fixture(scope="module")
def paillier_key() -> bytes:
    return SupervisorKey.generate().public_bytes


def start(**changes: object) -> side.SideStart:
    base = side.SideStart("subsidies", "uscc", "", b"", "keyed", "left", "samr", NO_KEY, min_set_size=10,
                          limit=100)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def machine(bound: int = 1000, **changes: object) -> side.SideMachine:
    """A side whose peer-token bound is `bound`, checked as a department does: by its RELEASE safeguards."""
    logged = QueryParams(max_match_rows=bound)
    return side.SideMachine(side.plan_session(start(**changes), DECL),
                            lambda n: DEPARTMENT.release(Release(logged, peer_tokens=n)))


# --- start checks ---


@pytest.mark.parametrize("changes, message", [
    ({"key_field": "company_name"}, "'company_name' is not a key field of 'hrss.subsidies'"),
    ({"key_field": "nope"}, "'nope' is not a key field of 'hrss.subsidies'"),
    ({"mode": "rsa"}, "mode must be keyed or ecdh and role left or right"),
    ({"role": "middle"}, "mode must be keyed or ecdh and role left or right"),
    ({"action": "query.delete"}, "a left side of a delete carries no value fields"),
    ({"value_fields": ("amount_fen",)}, "a left side of a match carries no value fields"),
    ({"action": "query.sum"}, "a left side of a sum names value fields"),
    ({"action": "query.sum", "role": "right", "value_fields": ("amount_fen",)},
     "a right side of a sum carries no value fields"),
    ({"action": "query.compare", "value_fields": ("amount_fen", "amount_fen")}, "name 1 to 4 distinct value fields"),
    ({"action": "query.compare", "value_fields": ("company_name",)},
     "'company_name' is not an integer field of 'hrss.subsidies'"),
    ({"filter_text": "nope = 1"}, "nope"),
    ({"role": "right", "grants": GRANTS}, "only the left side discloses rows"),
])
def test_a_start_the_department_cannot_serve_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        side.plan_session(start(**changes), DECL)


def test_a_value_side_needs_a_sound_paillier_key(paillier_key: bytes) -> None:
    ok = side.plan_session(start(action="query.sum", value_fields=("amount_fen",), paillier_key=paillier_key), DECL)
    assert (ok.action, ok.values, ok.key_kind, ok.protocol.name) == ("query.sum", ("amount_fen",), "uscc", "keyed")
    with pytest.raises(FedgateError):
        side.plan_session(start(action="query.sum", value_fields=("amount_fen",), paillier_key=b"junk"), DECL)


def test_a_stream_starts_with_its_start() -> None:
    side.check_first("start")
    for kind in (None, "peer_tokens", "disclose"):
        with pytest.raises(RemoteProtocolError, match="^a match stream starts with MatchStart$"):
            side.check_first(kind)


# --- messages while streaming ---


def test_ecdh_reblinds_peer_tokens_then_reports_their_count() -> None:
    sm = machine(mode="ecdh")
    assert sm.receive(side.PeerTokens(b"p" * 64)) == [side.Reblind(b"p" * 64)]
    assert sm.receive(side.PeerTokens(b"q" * 32)) == [side.Reblind(b"q" * 32)]
    assert sm.receive(side.PeerDone()) == [side.FinishReblind(3)]
    with pytest.raises(RemoteProtocolError, match="unexpected peer_tokens in a ecdh match as left"):
        sm.receive(side.PeerTokens(b"p" * 32))  # nothing after peer_done


@pytest.mark.parametrize("message", [side.PeerTokens(b"t" * 16), side.PeerDone()])
def test_keyed_takes_no_peer_tokens(message: side.FromGateway) -> None:
    sm = machine(mode="keyed")
    with pytest.raises(RemoteProtocolError, match=f"^unexpected {message.kind} in a keyed match as left$"):
        sm.receive(message)
    assert sm.state is side.SideState.ERROR
    with pytest.raises(LocalProtocolError):
        sm.receive(side.PeerDone())


@settings(max_examples=25, deadline=None)
@given(bound=st.integers(0, 20), chunks=st.lists(st.integers(0, 8), max_size=8))
def test_peer_tokens_within_the_bound_pass_and_one_more_is_refused(bound: int, chunks: list[int]) -> None:
    sm = machine(bound, mode="ecdh")
    total = 0
    for n in chunks:
        total += n
        if total > bound:
            with pytest.raises(RemoteProtocolError, match=f"^more than {bound} peer tokens$"):
                sm.receive(side.PeerTokens(b"x" * 32 * n))
            return
        assert sm.receive(side.PeerTokens(b"x" * 32 * n)) == [side.Reblind(b"x" * 32 * n)]
    assert sm.receive(side.PeerDone()) == [side.FinishReblind(total)]


@pytest.mark.parametrize("changes", [{"role": "right"}, {"grants": ()}])
def test_only_a_disclosing_left_side_takes_a_disclose(changes: dict[str, object]) -> None:
    sm = machine(**changes)
    with pytest.raises(RemoteProtocolError, match=f"^unexpected disclose in a keyed match as "
                                                  f"{changes.get('role', 'left')}$"):
        sm.receive(side.DiscloseMatched([0]))


def test_another_start_or_an_unknown_message_is_refused() -> None:
    for kind in ("start", "None"):
        with pytest.raises(RemoteProtocolError, match=f"^unexpected {kind} in a keyed match as left$"):
            machine().receive(side.OtherMessage(kind))


# --- disclosure and the record ---


def test_disclose_before_own_tokens_are_done_waits_for_them() -> None:
    sm = machine(grants=GRANTS)
    assert sm.receive(side.DiscloseMatched([2, 5])) == []
    assert sm.own_done(side.OwnStats(40, 1, 39)) == [side.Disclose([2, 5], 40)]
    assert sm.disclosed(2) == [side.RecordServed(2), side.ReleaseRows()]
    sm.input_ended()
    assert sm.close() == [] and sm.recorded  # served once: the disclosure's record is the session's


def test_disclose_after_own_tokens_runs_at_once_and_only_once() -> None:
    sm = machine(grants=GRANTS)
    sm.own_done(side.OwnStats(40, 0, 40))
    assert sm.receive(side.DiscloseMatched([1])) == [side.Disclose([1], 40)]
    with pytest.raises(RemoteProtocolError, match="unexpected disclose"):
        sm.receive(side.DiscloseMatched([1]))


def test_tokens_only_are_recorded_once_at_the_close() -> None:
    sm = machine()
    assert not sm.recorded
    sm.own_done(side.OwnStats(40, 2, 38))
    with pytest.raises(LocalProtocolError, match="not over"):
        sm.close()  # the gateway has not finished writing
    sm.input_ended()
    assert sm.close() == [side.RecordServed(38)] and sm.recorded
    with pytest.raises(LocalProtocolError):
        sm.close()


def test_a_disclosing_side_nobody_asked_records_zero_rows() -> None:
    sm = machine(grants=GRANTS)
    sm.own_done(side.OwnStats(40, 0, 40))
    sm.input_ended()
    assert sm.close() == [side.RecordServed(0)]


def test_a_record_that_failed_to_write_leaves_the_session_unrecorded() -> None:
    sm = machine(grants=GRANTS)
    sm.own_done(side.OwnStats(40, 0, 40))
    sm.receive(side.DiscloseMatched([0]))
    sm.disclosed(1)
    assert sm.recorded
    sm.record_failed()
    assert not sm.recorded  # the pump records `stopped` instead


def test_the_close_waits_for_a_running_disclosure() -> None:
    sm = machine(grants=GRANTS)
    sm.own_done(side.OwnStats(40, 0, 40))
    sm.receive(side.DiscloseMatched([0]))
    sm.input_ended()
    with pytest.raises(LocalProtocolError, match="not over"):
        sm.close()
    with pytest.raises(LocalProtocolError):
        machine().disclosed(1)  # no disclosure runs


# --- a self-join's left side is told the right side's filter ---


def _self_join_params(right_filter: str = "amount_fen >= ?", digest: str = "") -> QueryParams:
    params = QueryParams()
    params.side("hrss.subsidies", "left").key_field = "uscc"
    right = params.side("hrss.subsidies", "right")
    right.key_field = "uscc"
    if right_filter:
        right.filter = LoggedFilter(right_filter, digest)
    return params


def test_a_self_joins_left_side_gets_the_logged_right_filter() -> None:
    text, nonce = "amount_fen >= 500", b"n" * 16
    params = _self_join_params(digest=filter_digest(nonce, text))
    peer = side.self_join_peer(params, side.plan_session(start(peer_filter_text=text, peer_filter_nonce=nonce), DECL))
    assert peer is not None and (peer.key_field, peer.filter_text, peer.values) == ("uscc", text, ())
    assert peer.where is not None
    right = side.plan_session(start(role="right", limit=0), DECL)
    assert side.self_join(params, right) and side.self_join_peer(params, right) is None
    # An unfiltered right side: no filter sent, none logged.
    unfiltered = side.self_join_peer(_self_join_params(""), side.plan_session(start(), DECL))
    assert unfiltered is not None and unfiltered.where is None


@pytest.mark.parametrize("desc, params, changes", [
    ("another filter than the logged one", _self_join_params(digest=filter_digest(b"n" * 16, "amount_fen >= 500")),
     {"peer_filter_text": "amount_fen >= 501", "peer_filter_nonce": b"n" * 16}),
    ("none, where one is logged (an older gateway)", _self_join_params(digest="ab" * 32), {}),
    ("one, where the match is not a self-join", QueryParams(),
     {"peer_filter_text": "amount_fen >= 500", "peer_filter_nonce": b"n" * 16}),
    ("one, to the right side", _self_join_params(digest=filter_digest(b"n" * 16, "amount_fen >= 500")),
     {"role": "right", "limit": 0, "peer_filter_text": "amount_fen >= 500", "peer_filter_nonce": b"n" * 16}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_right_filter_not_logged_is_refused(desc: str, params: QueryParams, changes: dict[str, object]) -> None:
    with pytest.raises(TicketRefused):
        side.self_join_peer(params, side.plan_session(start(**changes), DECL))
