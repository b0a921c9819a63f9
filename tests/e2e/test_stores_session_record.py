"""A match session admitted by its ticket and then failing at once still ends its record as `stopped`.

The department's disclosure log must say what happened to every admitted ticket
(issue 12, point 8): a session that fails while it sets up its key (a sealed key
that does not open) used to leave `admitted` as its last word.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

import support
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.gateway.adapter_links import ticket_to_proto
from fedgate.gateway.tickets import TicketIssuer
from fedgate.core.identity import GATEWAY, Identity
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.server.tls import TlsFiles, secure_channel


async def test_a_match_failing_before_its_first_token_is_recorded_as_stopped(servers, tmp_path: Path) -> None:
    gw = await servers.gateway(tmp_path / "gw")
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    hrss = await servers.adapter("hrss", gw, support.SUBSIDIES_DECL.format(path=csv))

    # A logged match naming hrss as its right side, and the gateway's ticket for it.
    query_id = secrets.token_hex(16)
    entry = AuditEntry(utc_now(), "spiffe://fedgate/supervisor/dcb/alice", "supervisor", "query.match",
                       "/fedgate.v1.QueryService/Match", "allow", "STARTED", datasets=("hrss.subsidies",),
                       params=(("key.right.hrss.subsidies", "uscc"), ("mode", "keyed")), purpose="p", case_number="C-1",
                       query_id=query_id)
    appended = await gw.audit_log.append(entry)
    key = serialization.load_pem_private_key((tmp_path / "gw" / "log-signing.key").read_bytes(), password=None)
    ticket = await TicketIssuer(gw.audit_log, key, 60).issue("hrss", query_id, appended.index,
                                                             entry.canonical(), 0)
    start = adapter_pb2.MatchStart(ticket=ticket_to_proto(ticket), dataset="subsidies", key_field="uscc",
                                   mode="keyed", role="right", peer_department="samr",
                                   sealed_key=b"\0" * 80, action="query.match")

    async def requests():  # type: ignore[no-untyped-def]
        yield adapter_pb2.MatchIn(start=start)

    async with secure_channel(hrss.endpoint, TlsFiles.in_dir(servers.certs, GATEWAY),
                              Identity.department("hrss")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in adapter_pb2_grpc.AdapterServiceStub(ch).Match(requests(), timeout=30):
                pass
    assert err.value.code() != grpc.StatusCode.PERMISSION_DENIED, err.value.details()  # admitted, then failed

    decisions = [d.decision for d in hrss.disclosures.disclosures() if d.query_id == query_id]
    assert decisions == ["admitted", "stopped"], decisions
