"""Attacks with tickets against real servers: a ticket serves its logged request once, exactly as logged.

The attacker holds what a curious gateway holds: every request the gateway sent
to a department (captured by wrapping its adapter link in-process) and the
gateway's certificate. Each attack asserts what it learnt: no rows, no count,
and the department's own disclosure log shows the attempt as refused.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

import support
from fedgate.adapters.server import Adapter
from fedgate.client.gateway import GatewayClient, Side
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.core.identity import GATEWAY, Identity
from fedgate.gateway import matching
from fedgate.gateway.adapter_links import AdapterLinks, ticket_to_proto
from fedgate.demo.deployment import policy_copy
from fedgate.gateway.tickets import TicketIssuer
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.server.tls import TlsFiles, secure_channel

WHY = {"purpose": "核查冒领养老金", "case_number": "DC-2026-077"}
REPLAY = "ticket replayed"


async def _setup(servers, tmp_path: Path):  # type: ignore[no-untyped-def]
    # 100 of the 150 pensioners are in 西湖区: min_set_size 50 lets a disclosure of them leave 50 out (both ways).
    policies = support.with_test_rules(policy_copy(tmp_path / "policies", "min_set_size = 50\n"))
    gw = await servers.gateway(tmp_path / "gw", f'policy_dir = "{policies}"')
    csv = tmp_path / "pensions.csv"
    csv.write_text(support.pensions_csv(150), encoding="utf-8")
    hrss = await servers.adapter("hrss", gw, support.PENSIONS_DECL.format(path=csv))
    return gw, hrss


def _supervisor(servers, gw) -> GatewayClient:  # type: ignore[no-untyped-def]
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR))


Send = Callable[[Any], Awaitable[Any]]


def _intercept(monkeypatch: pytest.MonkeyPatch, on_query: Callable[[str, Any, Send], Awaitable[Any]]) -> None:
    """Route each query request the gateway sends an adapter through `on_query(method, request, send)`."""
    original = AdapterLinks._call

    async def link(self: AdapterLinks, department: str, endpoint: str, method: str, request: Any,
                   *args: Any, **kw: Any) -> Any:
        async def send(req: Any) -> Any:
            return await original(self, department, endpoint, method, req, *args, **kw)
        return await (send(request) if method == "GetLogState" else on_query(method, request, send))

    monkeypatch.setattr(AdapterLinks, "_call", link)


def _capture(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every query request the gateway sends an adapter, as the wire carried it."""
    sent: list[tuple[str, Any]] = []

    async def keep(method: str, request: Any, send: Send) -> Any:
        sent.append((method, request))
        return await send(request)

    _intercept(monkeypatch, keep)
    return sent


async def _present(servers, adapter: Adapter, method: str, request: Any) -> Any:  # type: ignore[no-untyped-def]
    """Present a request to the department's adapter with the gateway's own certificate."""
    async with secure_channel(adapter.endpoint, TlsFiles.in_dir(servers.certs, GATEWAY),
                              Identity.department("hrss")) as ch:
        return await getattr(adapter_pb2_grpc.AdapterServiceStub(ch), method)(request, timeout=10)


async def _refused(servers, adapter: Adapter, method: str, request: Any, words: str) -> None:  # type: ignore[no-untyped-def]
    """The presentation is refused with `words`, and nothing comes back (no rows, no count)."""
    got = None
    with pytest.raises(grpc.aio.AioRpcError) as err:
        got = await _present(servers, adapter, method, request)
    assert got is None
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value.details()
    assert words in (err.value.details() or "")


async def _disclose_five(servers, gw) -> Any:  # type: ignore[no-untyped-def]
    """The supervisor's logged disclosure: 5 masked names of the 100 pensioners in 西湖区."""
    async with _supervisor(servers, gw) as c:
        return await c.disclose("hrss.pensions", ["name"], filter="district = '西湖区'", limit=5, **WHY)


def _decisions(adapter: Adapter, index: int) -> list[str]:
    return [d.decision for d in adapter.disclosures.disclosures() if d.entry_index == index]


# --- (a) a captured ticket, replayed ---

async def test_a_replayed_disclosure_or_count_is_refused_and_recorded(servers, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    gw, hrss = await _setup(servers, tmp_path)
    sent = _capture(monkeypatch)
    shown = await _disclose_five(servers, gw)
    async with _supervisor(servers, gw) as c:
        counted = await c.count_rows("hrss.pensions", filter="district = '西湖区'", **WHY)
    assert len(shown.rows) == 5 and counted.rows == 100
    (_, disclose), (_, count) = sent
    for method, request, index in (("Disclose", disclose, shown.audit_index), ("CountRows", count, counted.audit_index)):
        await _refused(servers, hrss, method, request, REPLAY)
        assert _decisions(hrss, index) == ["admitted", "served", "refused"]
        last = hrss.disclosures.disclosures()[-1]
        assert last.decision == "refused" and REPLAY in last.reason and last.result_rows is None


async def test_a_ticket_refused_as_stale_is_reissued_and_served_once(servers, tmp_path: Path) -> None:
    """Only an admitted use takes the entry: the gateway's re-issued ticket after a stale one is served."""
    gw, hrss = await _setup(servers, tmp_path)
    async with _supervisor(servers, gw) as c:
        await c.count_rows("hrss.pensions", **WHY)  # the adapter now holds a checkpoint
    entry = AuditEntry(utc_now(), "spiffe://fedgate/supervisor/dcb/alice", "supervisor", "query.count",
                       "/fedgate.v1.QueryService/CountRows", "allow", "STARTED", datasets=("hrss.pensions",),
                       purpose="p", case_number="C-1", query_id=secrets.token_hex(16))
    appended = await gw.audit_log.append(entry)
    key = serialization.load_pem_private_key((tmp_path / "gw" / "log-signing.key").read_bytes(), password=None)

    def request(base: int) -> Any:
        async def issue() -> Any:
            ticket = await TicketIssuer(gw.audit_log, key).issue("hrss", entry.query_id, appended.index,
                                                                 entry.canonical(), base)
            return adapter_pb2.AdapterCountRequest(ticket=ticket_to_proto(ticket), dataset="pensions")
        return issue()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _present(servers, hrss, "CountRows", await request(0))  # proves from a base it does not hold
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    seen = (await _present(servers, hrss, "GetLogState", adapter_pb2.GetLogStateRequest())).seen_size
    fresh = await request(seen)
    assert (await _present(servers, hrss, "CountRows", fresh)).rows == 150
    await _refused(servers, hrss, "CountRows", fresh, REPLAY)
    # The stale refusal used nothing up: the re-issued ticket was served, then refused as a replay.
    assert _decisions(hrss, appended.index) == ["refused", "admitted", "served", "refused"]


# --- (b) the same ticket with other parameters ---

async def test_a_ticket_with_other_parameters_is_refused_and_does_not_use_up_the_entry(
        servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway that alters the logged request (10,000 rows instead of 5, another field, another form)
    gets nothing; the logged request itself is still served, once."""
    gw, hrss = await _setup(servers, tmp_path)
    attempts: list[str] = []

    async def alter_first(method: str, request: Any, send: Send) -> Any:
        for change, words in (({"limit": 10_000}, "row limit sent"),
                              ({"fields": [adapter_pb2.FieldRequest(name="monthly_amount_fen", level="L3",
                                                                     form="masked")]}, "fields asked for"),
                              ({"fields": [adapter_pb2.FieldRequest(name="name", level="L3", form="plaintext")]},
                               "form or level differs"),
                              ({"filter": "district = '上城区'"}, "filter sent")):
            altered = adapter_pb2.AdapterDiscloseRequest()
            altered.CopyFrom(request)
            for name, value in change.items():
                if name == "fields":
                    del altered.fields[:]
                    altered.fields.extend(value)
                else:
                    setattr(altered, name, value)
            await _refused(servers, hrss, method, altered, words)
            attempts.append(words)
        return await send(request)

    _intercept(monkeypatch, alter_first)
    shown = await _disclose_five(servers, gw)
    assert len(attempts) == 4
    assert len(shown.rows) == 5  # the logged request, no more
    assert _decisions(hrss, shown.audit_index)[-2:] == ["admitted", "served"]
    refusals = [d for d in hrss.disclosures.disclosures() if d.decision == "refused"]
    assert [r.result_rows for r in refusals] == [None] * 4
    assert sum(d.result_rows or 0 for d in hrss.disclosures.disclosures()) == 5  # all that ever left


async def _match_session(servers, adapter: Adapter, start: adapter_pb2.MatchStart) -> list[adapter_pb2.MatchOut]:  # type: ignore[no-untyped-def]
    async def requests() -> AsyncIterator[adapter_pb2.MatchIn]:
        yield adapter_pb2.MatchIn(start=start)
    async with secure_channel(adapter.endpoint, TlsFiles.in_dir(servers.certs, GATEWAY),
                              Identity.department("hrss")) as ch:
        return [m async for m in adapter_pb2_grpc.AdapterServiceStub(ch).Match(requests(), timeout=10)]


async def _refused_session(servers, adapter: Adapter, start: adapter_pb2.MatchStart, words: str,  # type: ignore[no-untyped-def]
                           **change: Any) -> None:
    """The start, altered, is refused before the department sends anything."""
    altered = adapter_pb2.MatchStart()
    altered.CopyFrom(start)
    for name, value in change.items():
        setattr(altered, name, value)
    received: list[adapter_pb2.MatchOut] | None = None
    with pytest.raises(grpc.aio.AioRpcError) as err:
        received = await _match_session(servers, adapter, altered)
    assert received is None and err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert words in (err.value.details() or ""), err.value.details()


async def test_a_match_start_with_another_mode_peer_or_limit_is_refused(servers, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each side's fresh ticket is first presented altered (refused, nothing used up), then as logged."""
    gw, hrss = await _setup(servers, tmp_path)
    starts: list[adapter_pb2.MatchStart] = []
    original = matching._Session.write

    async def alter_first(self: Any, msg: adapter_pb2.MatchIn) -> None:
        if msg.WhichOneof("msg") == "start":
            start = msg.start
            starts.append(start)
            await _refused_session(servers, hrss, start, "matching protocol (mode)", mode="ecdh")
            await _refused_session(servers, hrss, start, "peer department", peer_department="civil")
            if start.role == "left":
                await _refused_session(servers, hrss, start, "row limit sent", limit=10_000)
        await original(self, msg)

    monkeypatch.setattr(matching._Session, "write", alter_first)
    async with _supervisor(servers, gw) as c:  # a self-join: both sides at hrss, under one entry
        got = await c.match(left=Side("hrss.pensions", "resident_id"), right=Side("hrss.pensions", "resident_id"),
                            mode="keyed", disclose=["name"], limit=3, **WHY)
    assert got.cardinality == 150 and len(got.rows) == 3  # the logged request was served, as logged
    left, right = starts
    assert (left.role, right.role) == ("left", "right")
    for start in (left, right):  # and it is served once
        await _refused_session(servers, hrss, start, REPLAY)
    records = [d for d in hrss.disclosures.disclosures() if d.entry_index == got.audit_index]
    decisions = [d.decision for d in records]
    assert decisions[:4] == ["refused"] * 3 + ["admitted"] and decisions[4:6] == ["refused"] * 2
    assert sorted(decisions[6:-2]) == ["admitted", "served", "served"] and decisions[-2:] == ["refused"] * 2
    assert [d.result_rows for d in records if d.decision == "refused"] == [None] * 7


# --- (c) two presentations at once ---

async def test_two_concurrent_presentations_serve_exactly_once(servers, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    gw, hrss = await _setup(servers, tmp_path)
    outcomes: list[Any] = []

    async def twice(method: str, request: Any, send: Send) -> Any:
        # The gateway's own call and a duplicate sent the same instant.
        outcomes.extend(await asyncio.gather(send(request), _present(servers, hrss, method, request),
                                             return_exceptions=True))
        for outcome in outcomes:
            if not isinstance(outcome, BaseException):
                return outcome
        raise outcomes[0]

    _intercept(monkeypatch, twice)
    shown = await _disclose_five(servers, gw)
    served = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(served) == 1 and len(refused) == 1, outcomes
    assert REPLAY in str(refused[0])
    assert len(served[0].rows) == 5 and len(shown.rows) == 5  # one answer: the rows left once
    records = hrss.disclosures.disclosures()
    assert sorted(d.decision for d in records) == ["admitted", "refused", "served"]
    assert sum(d.result_rows or 0 for d in records) == 5


# --- (d) a restart between the use and the replay ---

async def test_a_replay_after_the_adapter_restarts_is_refused(servers, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    gw, hrss = await _setup(servers, tmp_path)
    sent = _capture(monkeypatch)
    shown = await _disclose_five(servers, gw)
    assert len(shown.rows) == 5
    (_, request), = sent
    servers.adapters.remove(hrss)
    await hrss.stop(0)
    csv = tmp_path / "pensions.csv"
    restarted = await servers.adapter("hrss", gw, support.PENSIONS_DECL.format(path=csv))
    assert restarted.disclosures.path == hrss.disclosures.path
    await _refused(servers, restarted, "Disclose", request, REPLAY)
    assert _decisions(restarted, shown.audit_index) == ["admitted", "served", "refused"]

