"""The server interceptor chain shared by the gateway and the adapters.

For every method except health and reflection, in this order:
1. identity: the caller's fedgate identity is read from the certificate the TLS
   layer verified and kept in a contextvar (``current_identity()``); service
   code never reads identity from a request field;
2. the service runs, annotating ``current_record()`` with what it did
   (action, datasets, fields, purpose, case number, rule, result sizes);
3. completion hook (the gateway's audit log): called with the record and the
   final status *before* the reply leaves, so an acknowledged request is
   always logged; if the hook fails the call fails with UNAVAILABLE;
4. error mapping: a FedgateError becomes its status code (fedgate.status);
   anything unexpected becomes INTERNAL with a generic message (details are
   logged here, never sent to the caller).

A call the client cancels (or whose deadline passes) is recorded too, as
CANCELLED, before the cancellation goes on. The caller's deadline is kept for
the call (``call_timeout``), so the calls a server makes on its behalf never
outlive it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from fedgate.errors import FedgateError, InvalidInput, Unauthenticated
from fedgate.identity import Identity, identity_from_pem
from fedgate.status import status_for
from fedgate.telemetry import current_trace_id

log = logging.getLogger(__name__)

EXEMPT_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
INTERNAL_MESSAGE = "internal error in the server; the operator's log has the details"


@dataclass
class RequestRecord:
    """What one RPC did, filled in by the service; the audit log's raw material."""

    method: str
    identity: Identity | None = None
    action: str = ""
    datasets: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    purpose: str = ""
    case_number: str = ""
    rule: str = ""
    result_sizes: dict[str, int] = field(default_factory=dict)
    trace_id: str = ""
    query_id: str = ""
    params: dict[str, str] = field(default_factory=dict)
    # False: a routine call the service judged not worth an entry when it succeeds (a lease renewal).
    audit: bool = True


CompletionHook = Callable[[RequestRecord, grpc.StatusCode, str], Awaitable[None]]

_identity: contextvars.ContextVar[Identity] = contextvars.ContextVar("fedgate_identity")
_record: contextvars.ContextVar[RequestRecord] = contextvars.ContextVar("fedgate_record")
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("fedgate_deadline", default=None)
CANCELLED_MESSAGE = "cancelled by the caller, or its deadline passed"


def call_timeout(default: float) -> float:
    """`default`, or less if the RPC being served must end sooner (its caller's deadline)."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return max(0.001, min(default, deadline - time.monotonic()))


def current_identity() -> Identity:
    """The verified identity of the caller of the RPC being served."""
    try:
        return _identity.get()
    except LookupError:
        raise Unauthenticated("no verified caller identity for this call") from None


def current_record() -> RequestRecord:
    """The record of the RPC being served, for the service to annotate."""
    return _record.get()


def peer_identity(context: grpc.aio.ServicerContext) -> Identity:
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        raise Unauthenticated("a client certificate issued by the fedgate CA is required")
    return identity_from_pem(pems[0])


ERROR_CLASS_KEY = "fedgate-error"  # trailing metadata: the domain error's class name, for our own clients


def error_class(exc: grpc.aio.AioRpcError) -> str:
    """The fedgate error class a server reported for a failed call ('' if none)."""
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_CLASS_KEY:
            return str(value)
    return ""


def _status_of(exc: Exception, method: str, context: grpc.aio.ServicerContext) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, FedgateError):
        context.set_trailing_metadata(((ERROR_CLASS_KEY, type(exc).__name__),))
        return status_for(exc), str(exc)
    log.error("unexpected error in %s", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # (grpc ships no type information)
    """Identity, completion hook (audit) and error mapping for every fedgate service method."""

    def __init__(self, on_complete: CompletionHook | None = None) -> None:
        self._on_complete = on_complete

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(EXEMPT_PREFIXES):
            return handler
        kinds = (
            (handler.unary_unary, grpc.unary_unary_rpc_method_handler, self._wrap_unary),
            (handler.stream_unary, grpc.stream_unary_rpc_method_handler, self._wrap_unary),
            (handler.unary_stream, grpc.unary_stream_rpc_method_handler, self._wrap_stream),
            (handler.stream_stream, grpc.stream_stream_rpc_method_handler, self._wrap_stream),
        )
        behavior, make, wrap = next(k for k in kinds if k[0] is not None)
        streaming = handler.request_streaming
        return make(wrap(behavior, method, streaming), request_deserializer=_tolerant(handler.request_deserializer),
                    response_serializer=handler.response_serializer)

    @staticmethod
    def _begin(method: str) -> RequestRecord:
        """The record of this call, in place before anything can fail, so a refusal is recorded too."""
        record = RequestRecord(method, trace_id=current_trace_id())
        _record.set(record)
        return record

    @staticmethod
    def _identify(record: RequestRecord, context: grpc.aio.ServicerContext) -> None:
        remaining = context.time_remaining()
        _deadline.set(None if remaining is None else time.monotonic() + remaining)
        record.identity = peer_identity(context)
        _identity.set(record.identity)

    async def _cancelled(self, record: RequestRecord) -> None:
        """Record a call that ended by cancellation; shielded, so the record survives the cancellation."""
        if self._on_complete is None:
            return
        try:
            await asyncio.shield(self._on_complete(record, grpc.StatusCode.CANCELLED, CANCELLED_MESSAGE))
        except asyncio.CancelledError:
            pass  # the shielded append goes on; the call itself is over
        except Exception as exc:
            log.error("audit hook failed for cancelled %s", record.method, exc_info=exc)

    async def _finish(self, record: RequestRecord, code: grpc.StatusCode, message: str,
                      context: grpc.aio.ServicerContext) -> None:
        """Run the completion hook, then abort with `code` unless it is OK."""
        if self._on_complete is not None:
            try:
                await self._on_complete(record, code, message)
            except Exception as exc:  # the request must not succeed unrecorded
                log.error("audit hook failed for %s", record.method, exc_info=exc)
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    "the audit log is unavailable, so the request was not served; retry later")
        if code is not grpc.StatusCode.OK:
            await context.abort(code, message)

    def _wrap_unary(self, behavior: Callable[..., Awaitable[Any]], method: str,
                    streaming: bool) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            record = self._begin(method)
            try:
                self._identify(record, context)
                result = await behavior(_checked(request, method, streaming), context)
            except grpc.aio.AbortError:
                raise
            except asyncio.CancelledError:
                await self._cancelled(record)
                raise
            except Exception as exc:
                await self._finish(record, *_status_of(exc, method, context), context)
                raise  # unreachable: _finish aborts
            await self._finish(record, grpc.StatusCode.OK, "", context)
            return result
        return wrapper

    def _wrap_stream(self, behavior: Callable[..., AsyncIterator[Any]], method: str,
                     streaming: bool) -> Callable[..., AsyncIterator[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            record = self._begin(method)
            try:
                self._identify(record, context)
                async for item in behavior(_checked(request, method, streaming), context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except asyncio.CancelledError:
                await self._cancelled(record)
                raise
            except Exception as exc:
                await self._finish(record, *_status_of(exc, method, context), context)
                raise
            await self._finish(record, grpc.StatusCode.OK, "", context)
        return wrapper


class _Undecodable:
    """Stands in for a request message that did not decode, so the refusal is mapped and audited."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The method's deserializer, but returning `_Undecodable` instead of failing inside grpc.

    Left to grpc, a malformed message (or invalid UTF-8 in a string field) fails
    before any fedgate code runs: UNKNOWN with a Python class name, and no audit entry.
    """
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:
            return _Undecodable(type(exc).__name__)

    return decode


def _undecodable(method: str) -> InvalidInput:
    return InvalidInput(f"the request is not a valid message for {method.rsplit('/', 1)[-1]} "
                        "(malformed protobuf, or a string field that is not UTF-8)")


def _checked(request: Any, method: str, streaming: bool) -> Any:
    """Raise for an undecodable unary request; check each message of a request stream as it comes."""
    if not streaming:
        if isinstance(request, _Undecodable):
            raise _undecodable(method)
        return request

    async def messages() -> AsyncIterator[Any]:
        async for item in request:
            if isinstance(item, _Undecodable):
                raise _undecodable(method)
            yield item

    return messages()
