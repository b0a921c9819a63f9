"""A response stream cancelled while a message is being sent is audited as cancelled, whichever way the cancel comes.

grpc.aio ends such a call in one of two ways, in a race: the send fails (the write
raises), or the call's task is cancelled while it waits in the write. Under load the
second comes first more often. Either way the call reached the log, so its entry
must say CANCELLED: a read of the audit log that leaves no entry is a read no
officer can account for. The servers' own interceptors run here, in their order,
around a handler; only the transport (the servicer context) is a stand-in.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc._cython import cygrpc

import support
from fedgate.server.interceptors import RequestRecord, ServiceInterceptor
from fedgate.server.telemetry import StreamServerSpans
from fedgate.server.tls import TlsFiles

METHOD = "/fedgate.v1.AuditService/GetEntries"


class StuckSend:
    """The servicer context of a call whose client stopped reading: every write waits until told how it ends."""

    def __init__(self, pem: str, send_fails: bool) -> None:
        self._pem = pem
        self.send_fails = send_fails
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self._pem.encode()]}

    def time_remaining(self) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    async def write(self, message: Any) -> None:
        self.writing.set()
        await self.release.wait()
        if self.send_fails:  # what grpc.aio raises when the core refuses a send on a call that is over
            raise cygrpc.ExecuteBatchError("Failed grpc_call_start_batch")


@dataclass
class Details:  # grpc.HandlerCallDetails is a protocol: what a server passes its interceptors
    method: str
    invocation_metadata: tuple[()]


async def _served(on_complete: Any) -> grpc.RpcMethodHandler:
    async def entries(request: Any, context: Any) -> AsyncIterator[bytes]:
        for i in range(3):
            yield b"entry %d" % i

    async def handler(_: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return grpc.unary_stream_rpc_method_handler(entries)

    details = Details(METHOD, ())

    async def audited(d: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return await ServiceInterceptor(on_complete).intercept_service(handler, d)
    return await StreamServerSpans().intercept_service(audited, details)


@pytest.mark.parametrize("way", ["task cancelled in the write", "write fails"])
async def test_a_stream_cancelled_in_a_send_is_audited_once_as_cancelled(certs: Path, way: str) -> None:
    outcomes: list[tuple[str, grpc.StatusCode]] = []

    async def on_complete(record: RequestRecord, code: grpc.StatusCode, message: str) -> None:
        outcomes.append((record.method, code))

    served = await _served(on_complete)
    context = StuckSend(TlsFiles.in_dir(certs, support.OFFICER).cert.read_text(), send_fails=way == "write fails")
    call = asyncio.ensure_future(served.unary_stream(object(), context))
    await asyncio.wait_for(context.writing.wait(), 10)
    if way == "write fails":
        context.release.set()
    else:
        call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, 10)
    await asyncio.sleep(0)  # a shielded append finishes on its own
    assert outcomes == [(METHOD, grpc.StatusCode.CANCELLED)]
