"""A real adapter checks a ticket's issue time against its own clock, and says "clock" when refusing."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

import support
from fedgate.adapters.config import AdapterConfig
from fedgate.adapters.server import build_adapter
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.crypto.ticket import Ticket
from fedgate.core.errors import ConfigError
from fedgate.gateway.adapter_links import ticket_to_proto
from fedgate.gateway.tickets import TicketIssuer
from fedgate.core.identity import GATEWAY, Identity
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.server.tls import TlsFiles, secure_channel


async def _deploy(servers, tmp_path: Path, settings: str = ""):
    gw = await servers.gateway(tmp_path / "gw")
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    cfg = tmp_path / "adapter-hrss.toml"
    cfg.write_text(settings + support.adapter_toml("hrss", f"127.0.0.1:{gw.port}", servers.certs,
                                                   support.SUBSIDIES_DECL.format(path=csv), vkey=gw.vkey_path))
    adapter = await build_adapter(AdapterConfig.load(cfg))
    servers.adapters.append(adapter)
    return gw, adapter


async def _ticket(gw, tmp_path: Path, gateway_clock_offset: float) -> Ticket:
    """A ticket for a logged count, issued by a gateway whose clock is `gateway_clock_offset` s off."""
    query_id = secrets.token_hex(16)
    entry = AuditEntry(utc_now(), "spiffe://fedgate/supervisor/dcb/alice", "supervisor", "query.count",
                       "/fedgate.v1.QueryService/CountRows", "allow", "STARTED", datasets=("hrss.subsidies",),
                       purpose="p", case_number="C-1", query_id=query_id)
    appended = await gw.audit_log.append(entry)
    key = serialization.load_pem_private_key((tmp_path / "gw" / "log-signing.key").read_bytes(), password=None)
    issuer = TicketIssuer(gw.audit_log, key, 60, clock=lambda: time.time() + gateway_clock_offset)
    return await issuer.issue("hrss", query_id, appended.index, entry.canonical(), 0)


async def _count(servers, adapter, ticket: Ticket) -> int:
    async with secure_channel(adapter.endpoint, TlsFiles.in_dir(servers.certs, GATEWAY),
                              Identity.department("hrss")) as ch:
        reply = await adapter_pb2_grpc.AdapterServiceStub(ch).CountRows(
            adapter_pb2.AdapterCountRequest(ticket=ticket_to_proto(ticket), dataset="subsidies"), timeout=10)
    return int(reply.rows)


@pytest.mark.parametrize("offset, words", [
    (120, "s in this adapter's future: check the clocks of gateway and adapter (allowed skew 30 s)"),
    (-120, "s in this adapter's past, beyond its lifetime of 60 s"),
])
async def test_an_adapter_refuses_tickets_from_a_skewed_clock_and_says_clock(servers, tmp_path: Path,
                                                                             offset: int, words: str) -> None:
    gw, adapter = await _deploy(servers, tmp_path)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _count(servers, adapter, await _ticket(gw, tmp_path, offset))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert words in err.value.details() and "clock" in err.value.details()
    last = adapter.disclosures.disclosures()[-1]
    assert last.decision == "refused" and "check the clocks" in last.reason
    # Within the allowed skew the same adapter serves.
    assert await _count(servers, adapter, await _ticket(gw, tmp_path, 10)) == 20


async def test_the_allowed_skew_is_configured_per_adapter(servers, tmp_path: Path) -> None:
    gw, adapter = await _deploy(servers, tmp_path, "clock_skew_s = 300\n")
    assert await _count(servers, adapter, await _ticket(gw, tmp_path, 120)) == 20
    bad = tmp_path / "bad.toml"
    bad.write_text("clock_skew_s = -5\n" + (tmp_path / "adapter-hrss.toml").read_text().replace(
        "clock_skew_s = 300\n", ""))
    with pytest.raises(ConfigError, match="key 'clock_skew_s': must be a positive number of seconds"):
        AdapterConfig.load(bad)
