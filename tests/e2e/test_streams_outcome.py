"""Nothing reaches a client whose outcome the audit log cannot hold.

The audit store's outcome append fails (a disk that fills after the query's
STARTED entry, or a lock that clears after one try): the supervisor gets no
result, no disclosed row and no total, is told the request was not served, and
the log is consistent afterwards (and stays so after the restart's recovery).
A test double stands in for the audit *store* only; the servers are real.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import sqlalchemy.exc

import support
from fedgate.core.audit_entry import AuditEntry
from fedgate.client.gateway import GatewayClient, Side
from fedgate.demo.datagen import generate
from fedgate.core.errors import RemoteCallFailed
from fedgate.gateway.recovery import ABORTED_REASON, close_unfinished
from fedgate.protos.fedgate.v1 import query_pb2
from fedgate.server.tls import TlsFiles

WHY = ("审计失败注入", "DC-2026-801")
CLOSED = "status in ('吊销', '注销')"


class OutcomesFail:
    """The gateway's audit store, but an outcome append (any entry not STARTED) of `action` fails."""

    def __init__(self, store: Any, action: str, times: int | None, skip: int = 0) -> None:
        self._store = store
        self.action = action
        self.left = times  # None: until lifted (a full disk); n: the next n outcome appends (a lock that clears)
        self.skip = skip  # outcome appends that still succeed first
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def append_next(self, body: bytes, build: Callable[..., Any]) -> Any:
        entry = AuditEntry.from_canonical(body)
        if entry.action == self.action and entry.status != "STARTED" and self.skip:
            self.skip -= 1
        elif entry.action == self.action and entry.status != "STARTED" and (self.left is None or self.left > 0):
            self.failed += 1
            if self.left is not None:
                self.left -= 1
            raise sqlalchemy.exc.OperationalError("INSERT INTO entries", {},
                                                  sqlite3.OperationalError("database or disk is full"))
        return self._store.append_next(body, build)


@pytest.fixture
async def deployed(servers, tmp_path):
    departments = generate(tmp_path, rows=1000, seed=11)
    gw = await servers.gateway(tmp_path / "gateway-data")
    adapters = await servers.demo_adapters(gw, tmp_path, departments, ("hrss", "samr", "tax"))
    return gw, adapters


def _failing(gw: Any, action: str, times: int | None, skip: int = 0) -> OutcomesFail:
    store = OutcomesFail(gw.audit_log.store, action, times, skip)
    gw.audit_log.store = store
    return store




async def _query_entries(servers, gw, action: str) -> dict[str, list[AuditEntry]]:
    """Every entry of `action`, by query id, oldest first."""
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER)) as c:
        found = [e for _, e in await c.search(action=action, limit=50)][::-1]
    by_query: dict[str, list[AuditEntry]] = {}
    for e in found:
        by_query.setdefault(e.query_id, []).append(e)
    return by_query


def _match_request(**extra: Any) -> query_pb2.MatchRequest:
    return query_pb2.MatchRequest(
        left=query_pb2.MatchSide(dataset="hrss.subsidies", key_field="uscc"),
        right=query_pb2.MatchSide(dataset="samr.companies", key_field="uscc", filter=CLOSED),
        purpose=WHY[0], case_number=WHY[1], **extra)


@pytest.mark.parametrize("fault", ["disk full", "lock that clears"])
async def test_a_match_whose_outcome_cannot_be_logged_discloses_nothing(servers, deployed, fault: str) -> None:
    gw, adapters = deployed
    store = _failing(gw, "query.match", None if fault == "disk full" else 1)
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        received: list[query_pb2.MatchEvent] = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for event in c._query.Match(_match_request(disclose_fields=["uscc", "company_name"], limit=50),
                                              timeout=120):
                received.append(event)
    assert store.failed >= 1
    # No result, no disclosed row: only progress left the gateway.
    assert all(e.WhichOneof("event") == "progress" for e in received), [e.WhichOneof("event") for e in received]
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "audit log is unavailable, so the request was not served" in (err.value.details() or "")
    store.left = 0  # the disk has room again
    # The department did release rows to the gateway, and says so; the gateway released none.
    assert [d.decision for d in adapters["hrss"].disclosures.disclosures()][-1] == "served"
    (entries,) = [v for v in (await _query_entries(servers, gw, "query.match")).values()]
    if fault == "disk full":
        # Only the intent; a restart closes it as ABORTED, "no result was returned", which is now true.
        assert [e.status for e in entries] == ["STARTED"]
        assert await close_unfinished(gw.audit_log) == 1
        (entries,) = [v for v in (await _query_entries(servers, gw, "query.match")).values()]
        assert [e.status for e in entries] == ["STARTED", "ABORTED"] and entries[1].reason == ABORTED_REASON
    else:
        # The failure itself is logged once the store takes writes again: no OK, no row disclosed.
        assert [e.status for e in entries] == ["STARTED", "UNAVAILABLE"]
        assert "not served" in entries[1].reason and dict(entries[1].result_sizes)["disclosed_rows"] == 0
    # And the same query is served, and logged, once the log is writable.
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        result = await c.match(left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc", CLOSED), purpose=WHY[0], case_number=WHY[1],
                               disclose=["uscc", "company_name"], limit=50)
    assert result.rows and len(result.rows) == min(50, result.cardinality)
    latest = list((await _query_entries(servers, gw, "query.match")).values())[-1]
    assert [e.status for e in latest] == ["STARTED", "OK"]
    assert dict(latest[1].result_sizes)["disclosed_rows"] == len(result.rows)


async def test_a_unary_query_whose_outcome_cannot_be_logged_returns_nothing(servers, deployed) -> None:
    gw, _ = deployed
    store = _failing(gw, "query.disclose", None)
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        with pytest.raises(RemoteCallFailed) as err:
            await c.disclose("samr.companies", ["name", "status"], *WHY, limit=50)
    assert store.failed >= 1, err.value
    assert err.value.code == "UNAVAILABLE" and "audit log is unavailable, so the request was not served" in \
        err.value.details
    store.left = 0
    (entries,) = [v for v in (await _query_entries(servers, gw, "query.disclose")).values()]
    assert [e.status for e in entries] == ["STARTED"]
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        got = await c.disclose("samr.companies", ["name", "status"], *WHY, limit=50)
    assert len(got.rows) == 50


async def test_a_comparison_whose_disclosure_cannot_be_logged_sends_its_flags_but_no_row(servers, deployed) -> None:
    gw, adapters = deployed
    # The flags' outcome is logged; the disk fills before the flagged rows' outcome can be.
    store = _failing(gw, "query.compare", None, skip=1)
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        with pytest.raises(RemoteCallFailed) as err:
            await c.compare(left=Side("hrss.subsidies", "uscc"), left_value="claimed_insured",
                            right=Side("tax.insured_employees", "uscc"), right_value="insured_employees", purpose=WHY[0], case_number=WHY[1],
                            disclose=["company_name"], limit=50)
    assert store.failed >= 1
    # The flags had left, so the supervisor is not told "not served"; the rows were withheld.
    assert err.value.code == "UNAVAILABLE" and "not served" not in err.value.details
    assert "the rest was withheld" in err.value.details
    store.left = 0
    (entries,) = [v for v in (await _query_entries(servers, gw, "query.compare")).values()]
    assert [e.status for e in entries] == ["STARTED", "OK"]
    stage = dict(entries[1].result_sizes)
    assert stage["pairs"] > 0 and stage["disclosed_rows"] == 0 and "flagged rows" in entries[1].reason
