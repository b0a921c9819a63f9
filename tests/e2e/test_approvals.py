"""Issue 15, parts 1 and 2: a department's own rules hold requests for its approval, or refuse them.

Real gateway and adapter servers over mTLS. A held request reaches no department before it is approved;
it is served exactly once after; a denied or expired one never. The attacker is a curious gateway operator
holding the gateway's log key: it issues its own tickets for a held entry, without approvals, with a forged
one, with another request's, or replays the collected one. Each attack asserts what it got: nothing, and the
department's own log shows the refusal.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import support
from fedgate.adapters.server import Adapter
from fedgate.client.approvals import Collect, HeldForApproval, HeldRequest
from fedgate.client.gateway import GatewayClient, Side
from fedgate.core.errors import RemoteCallFailed
from fedgate.core.identity import GATEWAY, Identity
from fedgate.crypto.approval import ApprovalStatement, sign_approval
from fedgate.demo.deployment import policy_copy
from fedgate.gateway.adapter_links import AdapterLinks, ticket_to_proto
from fedgate.gateway.tickets import TicketIssuer
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.server.signing_key import load_or_create
from fedgate.server.tls import TlsFiles, secure_channel

WHY = {"purpose": "核查冒领养老金", "case_number": "DC-2026-115"}
HRSS = Identity.department("hrss")
RULES = """
[approvals]
keys = ["{dir}/hrss-zhang.vkey", "{dir}/hrss-li.vkey"]
ttl_hours = 1

[[rules]]
name = "rows-leave-with-approval"
effect = "approve"
kinds = ["disclose"]
forms = ["plaintext", "masked"]

[[rules]]
name = "l4-two-person"
effect = "approve"
levels = ["L4"]
approvers = 2

[[rules]]
name = "no-sums"
effect = "refuse"
kinds = ["sum"]
"""


async def _setup(servers, tmp_path: Path):  # type: ignore[no-untyped-def]
    keys = tmp_path / "approvers"
    signers = {name: load_or_create(keys / f"{name}.key", name) for name in ("hrss-zhang", "hrss-li")}
    policies = support.with_test_rules(policy_copy(tmp_path / "policies", "min_set_size = 50\n"))
    gw = await servers.gateway(tmp_path / "gw", f'policy_dir = "{policies}"')
    csv = tmp_path / "pensions.csv"
    csv.write_text(support.pensions_csv(150), encoding="utf-8")
    hrss = await servers.adapter("hrss", gw, RULES.format(dir=keys) + support.PENSIONS_DECL.format(path=csv))
    return gw, hrss, signers


def _client(servers, gw, who: Identity = support.SUPERVISOR, collect: Collect | None = None) -> GatewayClient:  # type: ignore[no-untyped-def]
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, who), collect=collect)


def _sent_to_adapters(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every query request the gateway sends an adapter, as the wire carried it."""
    sent: list[tuple[str, Any]] = []
    original = AdapterLinks._call

    async def link(self: AdapterLinks, department: str, endpoint: str, method: str, request: Any,
                   *args: Any, **kw: Any) -> Any:
        if method != "GetLogState":
            sent.append((method, request))
        return await original(self, department, endpoint, method, request, *args, **kw)

    monkeypatch.setattr(AdapterLinks, "_call", link)
    return sent


async def _disclose(servers, gw, collect: Collect | None = None, district: str = "西湖区") -> Any:  # type: ignore[no-untyped-def]
    async with _client(servers, gw, collect=collect) as c:
        return await c.disclose("hrss.pensions", ["name"], filter=f"district = '{district}'", limit=5, **WHY)


async def _held(coro: Any) -> HeldForApproval:
    with pytest.raises(HeldForApproval) as held:
        await coro
    assert held.value.code == "FAILED_PRECONDITION"
    return held.value


async def _decide(servers, gw, query_id: str, name: str, key: Ed25519PrivateKey,  # type: ignore[no-untyped-def]
                  decision: str = "approve", reason: str = "") -> HeldRequest:
    async with _client(servers, gw, HRSS) as dept:
        h = await dept.held_request(query_id)
        note = h.sign("hrss", decision, name, key, int(time.time()), 600)
        return await dept.decide(query_id, note, reason)


def _records(adapter: Adapter, query_id: str) -> list[str]:
    return [d.decision for d in adapter.disclosures.disclosures() if d.query_id == query_id]


async def _present(servers, adapter: Adapter, method: str, request: Any) -> Any:  # type: ignore[no-untyped-def]
    async with secure_channel(adapter.endpoint, TlsFiles.in_dir(servers.certs, GATEWAY), HRSS) as ch:
        return await getattr(adapter_pb2_grpc.AdapterServiceStub(ch), method)(request, timeout=10)


async def _refused(servers, adapter: Adapter, method: str, request: Any, words: str) -> None:  # type: ignore[no-untyped-def]
    got = None
    with pytest.raises(grpc.aio.AioRpcError) as err:
        got = await _present(servers, adapter, method, request)
    assert got is None  # no rows, no count
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value.details()
    assert words in (err.value.details() or ""), err.value.details()


async def _operator_ticket(servers, gw, tmp_path: Path, h: HeldRequest, hrss: Adapter,  # type: ignore[no-untyped-def]
                           approvals: tuple[str, ...] = ()) -> Any:
    """What a curious gateway operator can make with the log key: a valid ticket for the held entry."""
    key = serialization.load_pem_private_key((tmp_path / "gw" / "log-signing.key").read_bytes(), password=None)
    seen = (await _present(servers, hrss, "GetLogState", adapter_pb2.GetLogStateRequest())).seen_size
    ticket = await TicketIssuer(gw.audit_log, key).issue("hrss", h.query_id, h.entry_index, h.entry_bytes, seen,
                                                         approvals)
    return ticket


async def _as_disclosure(servers, gw, tmp_path: Path, h: HeldRequest, hrss: Adapter, nonce: bytes,  # type: ignore[no-untyped-def]
                         approvals: tuple[str, ...] = ()) -> adapter_pb2.AdapterDiscloseRequest:
    ticket = await _operator_ticket(servers, gw, tmp_path, h, hrss, approvals)
    return adapter_pb2.AdapterDiscloseRequest(
        ticket=ticket_to_proto(ticket), dataset="pensions",
        fields=[adapter_pb2.FieldRequest(name="name", level="L3", form="masked")],
        filter="district = '西湖区'", filter_nonce=nonce, min_set_size=50, limit=5)


def _nonce(held: HeldForApproval) -> bytes:
    side, _, value = held.nonces.partition("=")
    assert side == "hrss.pensions"
    return bytes.fromhex(value)


async def test_a_held_request_reaches_no_department_until_approved_then_is_served_once(
        servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gw, hrss, signers = await _setup(servers, tmp_path)
    sent = _sent_to_adapters(monkeypatch)
    held = await _held(_disclose(servers, gw))
    assert "rows-leave-with-approval" in held.details and held.query_id in held.details
    # Logged, but nothing went to the department: no ticket, no record in its own log.
    assert sent == [] and _records(hrss, held.query_id) == []
    collect = Collect(held.query_id, held.nonces)
    again = await _held(_disclose(servers, gw, collect))  # collecting early: still waiting
    assert again.query_id == held.query_id and sent == []

    # The department sees it in its queue, with purpose, case and the field's form, and approves it.
    async with _client(servers, gw, HRSS) as dept:
        queue = await dept.held_requests()
    (h,) = queue
    assert (h.query_id, h.state, h.entry.purpose, h.entry.case_number) == (held.query_id, "pending",
                                                                            WHY["purpose"], WHY["case_number"])
    assert dict(h.entry.params)["form.hrss.pensions.name"] == "masked"
    assert "rows-leave-with-approval" in h.entry.rule and "p, supervisor" in h.entry.rule  # both rules named

    # A curious gateway operator serves it itself before the approval: no approval, then a forged one.
    unapproved = await _as_disclosure(servers, gw, tmp_path, h, hrss, _nonce(held))
    await _refused(servers, hrss, "Disclose", unapproved, "carries 0 valid approval")
    forged_key = Ed25519PrivateKey.generate()
    statement = ApprovalStatement(h.log_origin, h.query_id, h.entry_index,
                                  hashlib.sha256(h.entry_bytes).hexdigest(), "hrss", "approve",
                                  int(time.time()) + 600)
    forged = await _as_disclosure(servers, gw, tmp_path, h, hrss, _nonce(held),
                                  (sign_approval(statement, "hrss-zhang", forged_key),))
    await _refused(servers, hrss, "Disclose", forged, "carries 0 valid approval")
    assert _records(hrss, held.query_id) == ["refused", "refused"]
    # ... and the gateway refuses the forgery too, if it is sent as a decision.
    with pytest.raises(RemoteCallFailed) as bad:
        async with _client(servers, gw, HRSS) as dept:
            await dept.decide(h.query_id, sign_approval(statement, "hrss-zhang", forged_key))
    assert bad.value.code == "PERMISSION_DENIED"

    decided = await _decide(servers, gw, held.query_id, "hrss-zhang", signers["hrss-zhang"])
    assert decided.state == "approved"
    shown = await _disclose(servers, gw, collect)
    assert len(shown.rows) == 5 and shown.audit_index == h.entry_index
    (method, served), = sent
    assert method == "Disclose" and len(served.ticket.approvals) == 1
    assert _records(hrss, held.query_id)[-2:] == ["admitted", "served"]

    # Served once: collected again, refused at the gateway; the captured ticket replayed, refused by the adapter.
    with pytest.raises(RemoteCallFailed) as twice:
        await _disclose(servers, gw, collect)
    assert twice.value.code == "FAILED_PRECONDITION" and "collected already" in twice.value.details
    await _refused(servers, hrss, "Disclose", served, "replayed")
    assert sum(d.result_rows or 0 for d in hrss.disclosures.disclosures()) == 5  # all that ever left

    # The decision is in the audit log, with the signed approval.
    async with _client(servers, gw, support.OFFICER) as officer:
        decisions = [e for e in await officer.search(action="approval.decide")]
    assert len(decisions) == 2  # the forgery refused, the approval
    approved = [e.entry for e in decisions if e.entry.decision == "allow"]
    assert len(approved) == 1 and dict(approved[0].params)["approver"] == "hrss-zhang"
    assert "fedgate-approval/v1" in dict(approved[0].params)["approval"]


async def test_an_approval_for_another_request_or_expired_is_refused_by_the_adapter(
        servers, tmp_path: Path) -> None:
    gw, hrss, signers = await _setup(servers, tmp_path)
    first = await _held(_disclose(servers, gw))
    second = await _held(_disclose(servers, gw, district="上城区"))
    approved = await _decide(servers, gw, first.query_id, "hrss-zhang", signers["hrss-zhang"])
    async with _client(servers, gw, HRSS) as dept:
        other = await dept.held_request(second.query_id)
    # The first request's genuine approval, moved onto the second one's ticket by the operator.
    note = approved.sign("hrss", "approve", "hrss-zhang", signers["hrss-zhang"], int(time.time()), 600)
    moved = await _as_disclosure(servers, gw, tmp_path, other, hrss, _nonce(second), (note,))
    moved.filter = "district = '上城区'"
    await _refused(servers, hrss, "Disclose", moved, "for another request")
    # A genuine approval of the right request, expired.
    statement = ApprovalStatement(other.log_origin, other.query_id, other.entry_index,
                                  hashlib.sha256(other.entry_bytes).hexdigest(), "hrss", "approve",
                                  int(time.time()) - 1)
    stale = await _as_disclosure(servers, gw, tmp_path, other, hrss, _nonce(second),
                                 (sign_approval(statement, "hrss-zhang", signers["hrss-zhang"]),))
    stale.filter = "district = '上城区'"
    await _refused(servers, hrss, "Disclose", stale, "expired")
    assert _records(hrss, second.query_id) == ["refused", "refused"]


async def test_a_denied_or_expired_request_is_never_served(servers, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    gw, hrss, signers = await _setup(servers, tmp_path)
    sent = _sent_to_adapters(monkeypatch)
    denied = await _held(_disclose(servers, gw))
    h = await _decide(servers, gw, denied.query_id, "hrss-li", signers["hrss-li"], "deny", "案件未立案")
    assert h.state == "denied"
    with pytest.raises(RemoteCallFailed) as refused:
        await _disclose(servers, gw, Collect(denied.query_id, denied.nonces))
    assert refused.value.code == "PERMISSION_DENIED" and "案件未立案" in refused.value.details
    # A denial is final: a later approval is refused.
    with pytest.raises(RemoteCallFailed) as late:
        await _decide(servers, gw, denied.query_id, "hrss-zhang", signers["hrss-zhang"])
    assert late.value.code == "FAILED_PRECONDITION"

    expiring = await _held(_disclose(servers, gw))
    assert gw.approvals is not None
    real = gw.approvals._clock
    gw.approvals._clock = lambda: real() + 2 * 3600  # past ttl_hours = 1
    with pytest.raises(RemoteCallFailed) as expired:
        await _disclose(servers, gw, Collect(expiring.query_id, expiring.nonces))
    assert expired.value.code == "FAILED_PRECONDITION" and "expired" in expired.value.details
    with pytest.raises(RemoteCallFailed):
        await _decide(servers, gw, expiring.query_id, "hrss-zhang", signers["hrss-zhang"])
    assert sent == []
    assert _records(hrss, denied.query_id) == [] and _records(hrss, expiring.query_id) == []


async def test_l4_needs_two_different_approvers(servers, tmp_path: Path) -> None:
    gw, hrss, signers = await _setup(servers, tmp_path)
    pensions = Side("hrss.pensions", "resident_id", "district = '西湖区'")
    everyone = Side("hrss.pensions", "resident_id")

    async def match(collect: Collect | None = None) -> Any:
        async with _client(servers, gw, collect=collect) as c:
            return await c.match(left=pensions, right=everyone, **WHY)

    held = await _held(match())
    assert "l4-two-person" in held.details
    collect = Collect(held.query_id, held.nonces)
    once = await _decide(servers, gw, held.query_id, "hrss-zhang", signers["hrss-zhang"])
    assert once.state == "pending" and [n.missing for n in once.needs] == [1]
    with pytest.raises(RemoteCallFailed) as same:
        await _decide(servers, gw, held.query_id, "hrss-zhang", signers["hrss-zhang"])
    assert same.value.code == "FAILED_PRECONDITION" and "already" in same.value.details
    await _held(match(collect))
    assert _records(hrss, held.query_id) == []
    twice = await _decide(servers, gw, held.query_id, "hrss-li", signers["hrss-li"])
    assert twice.state == "approved"
    result = await match(collect)
    assert result.cardinality == 100


async def test_a_department_rule_refuses_and_the_entry_names_both_rules(servers, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from fedgate.core.supervisor_keys import SupervisorKey

    gw, hrss, _ = await _setup(servers, tmp_path)
    sent = _sent_to_adapters(monkeypatch)
    async with _client(servers, gw) as c:
        with pytest.raises(RemoteCallFailed) as refused:
            await c.intersection_sum(values=Side("hrss.pensions", "resident_id"), value_fields=["monthly_amount_fen"],
                                     other=Side("hrss.pensions", "resident_id"), key=SupervisorKey.generate(), **WHY)
        counted = await c.count_rows("hrss.pensions", **WHY)  # no rule holds a count: served at once
    assert refused.value.code == "PERMISSION_DENIED" and "no-sums" in refused.value.details
    assert counted.rows == 150
    assert [m for m, _ in sent] == ["CountRows"]
    async with _client(servers, gw, support.OFFICER) as officer:
        (entry,) = [e.entry for e in await officer.search(action="query.sum")]
    assert entry.decision == "deny" and "no-sums" in entry.rule and "p, supervisor" in entry.rule
    assert json.dumps(entry.to_dict())  # a plain entry: nothing else to check


async def test_a_collection_that_fails_before_an_answer_can_be_collected_again(
        servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fedgate.core.errors import Unavailable

    gw, hrss, signers = await _setup(servers, tmp_path)
    held = await _held(_disclose(servers, gw))
    await _decide(servers, gw, held.query_id, "hrss-zhang", signers["hrss-zhang"])
    original = AdapterLinks._call
    cut: list[str] = []

    async def unreachable_once(self: AdapterLinks, department: str, endpoint: str, method: str, request: Any,
                               *args: Any, **kw: Any) -> Any:
        if method == "Disclose" and not cut:
            cut.append(method)
            raise Unavailable("department 'hrss' is unavailable (UNAVAILABLE); retry later")
        return await original(self, department, endpoint, method, request, *args, **kw)

    monkeypatch.setattr(AdapterLinks, "_call", unreachable_once)
    collect = Collect(held.query_id, held.nonces)
    with pytest.raises(RemoteCallFailed) as gone:
        await _disclose(servers, gw, collect)
    assert gone.value.code == "UNAVAILABLE" and cut
    shown = await _disclose(servers, gw, collect)  # given back: collected again, and served
    assert len(shown.rows) == 5
    assert _records(hrss, held.query_id) == ["admitted", "served"]
    with pytest.raises(RemoteCallFailed) as twice:
        await _disclose(servers, gw, collect)
    assert "collected already" in twice.value.details


async def test_hostile_decisions_are_refused_audited_and_change_nothing(servers, tmp_path: Path) -> None:
    gw, hrss, signers = await _setup(servers, tmp_path)
    held = await _held(_disclose(servers, gw))
    async with _client(servers, gw, HRSS) as dept:
        for query_id, note, code in ((held.query_id, "garbage", "PERMISSION_DENIED"),
                                     (held.query_id, "\x00" * 70_000, "PERMISSION_DENIED"),
                                     ("x" * 5000, "garbage", "NOT_FOUND"),
                                     ("", "", "NOT_FOUND")):
            with pytest.raises(RemoteCallFailed) as refused:
                await dept.decide(query_id, note, "r" * 100_000)
            assert refused.value.code == code and len(refused.value.details) < 1000
        h = await dept.held_request(held.query_id)
        assert h.state == "pending" and h.decisions == ()
        # A long reason is kept bounded, in the store and the log.
        note = h.sign("hrss", "approve", "hrss-zhang", signers["hrss-zhang"], int(time.time()), 600)
        decided = await dept.decide(held.query_id, note, "理" * 100_000)
        assert decided.state == "approved" and len(decided.decisions[0].reason) <= 512
    async with _client(servers, gw) as supervisor:  # the supervisor may look at its own request, not decide
        assert (await supervisor.held_request(held.query_id)).state == "approved"
        with pytest.raises(RemoteCallFailed) as not_theirs:
            await supervisor.decide(held.query_id, note)
        assert not_theirs.value.code == "PERMISSION_DENIED"
    async with _client(servers, gw, support.OFFICER) as officer:
        entries = [e.entry for e in await officer.search(action="approval.decide")]
    assert len(entries) == 6 and [e.decision for e in entries].count("allow") == 1
    assert all(len(e.reason) <= 2100 for e in entries)
    assert len((await _disclose(servers, gw, Collect(held.query_id, held.nonces))).rows) == 5
