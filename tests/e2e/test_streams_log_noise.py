"""A cancelled stream leaves no 'Failed to detach context' traceback in the server's log.

grpc.aio does not close a streaming handler's async generator when the call ends
while the handler is suspended at a ``yield`` (the client cancelled while its
message was being sent): the generator is finalised later by garbage
collection, in another asyncio context, where OpenTelemetry's server
interceptor cannot detach the context it attached ("Failed to detach context",
with a ValueError traceback). fedgate closes the generator chain in the call's
own task instead (``fedgate.server.telemetry.StreamServerSpans``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import sqlite3
import time

import grpc

import support
from fedgate.server import telemetry
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.protos.fedgate.v1 import audit_pb2, audit_pb2_grpc
from fedgate.server.tls import TlsFiles, secure_channel
from fedgate.core.identity import GATEWAY


async def test_a_stream_cancelled_mid_send_logs_no_context_detach_failure(servers, tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    telemetry.setup_tracing("gateway", tmp_path / "spans.db")
    try:
        gw = await servers.gateway(tmp_path / "gateway-data")
        # Enough log that a full read cannot fit in gRPC's flow-control window: the server blocks in a send.
        filler = AuditEntry(utc_now(), "spiffe://fedgate/test", "test", "test.fill", "/test/Fill", "allow", "OK",
                            reason="x" * 1500)
        for _ in range(600):
            await gw.audit_log.append(filler)
        # No BDP probing: the client's receive window stays at HTTP/2's 64 KiB, so the server blocks in a send.
        channel = secure_channel(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER),
                                 GATEWAY, options=[("grpc.http2.bdp_probe", 0)])
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        for _ in range(3):
            call = stub.GetEntries(audit_pb2.GetEntriesRequest(start=0, stop=0), timeout=60)
            await call.read()
            await asyncio.sleep(1.0)  # the server fills the window and waits to send (slower when loaded)
            call.cancel()
            assert await call.code() is grpc.StatusCode.CANCELLED
        await channel.close()
        # What the calls left unclosed is finalised, as it would be later: for 5 s, and on a loaded machine
        # until the last cancelled read is audited too (at most 30 s).
        start = time.monotonic()
        while time.monotonic() < start + 5 or (len(_reads(gw)) < 3 and time.monotonic() < start + 30):
            gc.collect()
            await asyncio.sleep(0.2)
    finally:
        telemetry.shutdown_tracing()
    noise = [r for r in caplog.records if "Failed to detach context" in r.getMessage()]
    assert not noise, f"{len(noise)} 'Failed to detach context' records"
    # Nor any other error for calls that were only cancelled; each is audited as such.
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    reads = _reads(gw)
    assert [e.status for e in reads] == ["CANCELLED"] * 3
    # The streaming calls are still traced: one server span each, with the instrumentation's attributes.
    with contextlib.closing(sqlite3.connect(tmp_path / "spans.db")) as db:
        spans = [json.loads(attributes) for (attributes,) in db.execute(
            "SELECT attributes FROM spans WHERE name = '/fedgate.v1.AuditService/GetEntries' AND kind = 'SERVER'")]
    assert len(spans) == 3
    assert all(a["rpc.method"] == "GetEntries" and a["rpc.service"] == "fedgate.v1.AuditService" for a in spans)
    assert all(a["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0] for a in spans)


def _reads(gw) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    """The gateway's audit.read entries, newest first."""
    return [e for e in (AuditEntry.from_canonical(i.body) for i in gw.audit_log.store.entries_newest_first())
            if e.action == "audit.read"]
