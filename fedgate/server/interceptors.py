"""The server interceptor chain shared by the gateway and the adapters.

For every method except health and reflection, in this order:
1. identity: the caller's fedgate identity is read from the certificate the TLS
   layer verified and kept in a contextvar (``current_identity()``); service
   code never reads identity from a request field;
2. the service runs, annotating ``current_record()`` with what it did
   (action, datasets, fields, purpose, case number, rule, result sizes);
3. completion hook (the gateway's audit log): called with the record and the
   final status *before* the reply leaves, so an acknowledged request is
   always logged; if the hook fails the call fails with UNAVAILABLE. For a
   response stream the last message is held back until the hook has run; a
   stream whose results leave in earlier messages (a match's result after its
   progress, a comparison's flags before its disclosed rows) logs its outcome
   itself with ``log_outcome`` before they leave, and the hook then runs only
   for a failure that follows a partial outcome. Nothing reaches a client
   that the log does not cover, and a client is told "not served" only when
   nothing was;
4. error mapping: a FedgateError becomes its status code (fedgate.server.status);
   anything unexpected becomes INTERNAL with a generic message (details are
   logged here, never sent to the caller).

A call the client cancels (or whose deadline passes) is recorded too, as
CANCELLED, before the cancellation goes on.

Every call's end is also measured (``fedgate.server.metrics``): its duration by
method and final status code, and, for a refusal, its reason, derived from the
domain error's class there and nowhere else (``_measured``). The caller's deadline is kept for
the call (``call_timeout``), so the calls a server makes on its behalf never
outlive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from fedgate.core.errors import FedgateError, InvalidInput, Unauthenticated, Unavailable
from fedgate.core.identity import Identity, identity_from_pem
from fedgate.query.probing import SUPPRESSED_SIZE
from fedgate.query.sizes import Suppressed
from fedgate.server import metrics
from fedgate.server.revocation import Revocations, serial_of
from fedgate.server.status import status_for
from fedgate.server.telemetry import current_trace_id

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
    # Collecting a request that waited for approval (metadata fedgate-collect): its query id, and the filter
    # nonces its pending reply gave the client (by logged side suffix), so the plan binds the same digests.
    collect_query_id: str = ""
    filter_nonces: dict[str, bytes] = field(default_factory=dict)
    approvals: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a collected request's, by department
    certificate_serial: int = 0  # of the caller's verified certificate (the registry keeps a department's)
    # False: a routine call the service judged not worth an entry when it succeeds (a lease renewal).
    audit: bool = True
    # Set by `log_outcome`: an OK outcome covering what was sent so far is in the log; `final_logged`
    # when it covers the whole call, so nothing more is appended for it.
    outcome_logged: bool = False
    final_logged: bool = False
    # For the metrics: when the call began (metrics.now), and the domain error that refused it, if one did.
    started: float = 0.0
    error: FedgateError | None = None


NOT_SERVED = "the audit log is unavailable, so the request was not served; retry later"
INCOMPLETE = ("the audit log is unavailable, so the answer is incomplete: what was sent is logged, "
              "the rest was withheld; retry later")


class AuditUnavailable(Unavailable):
    """A request's outcome could not be logged, so what it would have released was not sent."""


CompletionHook = Callable[[RequestRecord, grpc.StatusCode, str], Awaitable[None]]

_identity: contextvars.ContextVar[Identity] = contextvars.ContextVar("fedgate_identity")
_record: contextvars.ContextVar[RequestRecord] = contextvars.ContextVar("fedgate_record")
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("fedgate_deadline", default=None)
_hook: contextvars.ContextVar[CompletionHook | None] = contextvars.ContextVar("fedgate_hook", default=None)
CANCELLED_MESSAGE = "cancelled by the caller, or its deadline passed"


def _deadline_passed() -> bool:
    """Whether the RPC being served is past its caller's deadline."""
    deadline = _deadline.get()
    return deadline is not None and time.monotonic() >= deadline


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


def record_action(action: str) -> RequestRecord:
    """The record of the RPC being served, its action (e.g. "policy.reload") named for the audit entry."""
    record = _record.get()
    record.action = action
    return record


async def log_outcome(record: RequestRecord, reason: str = "", final: bool = True) -> None:
    """Log the call's OK outcome now, before the results it covers leave (response streams).

    The record's sizes at this moment go into the entry. ``final=False`` for a
    stage after which more is released (a comparison's flags before its
    disclosed rows): that stage logs again before it leaves. Raises
    ``AuditUnavailable`` if the log cannot take the entry; a no-op on a server
    without an audit log, or once a final outcome is logged.
    """
    hook = _hook.get()
    if hook is None or record.final_logged:
        return
    try:
        await hook(record, grpc.StatusCode.OK, reason)
    except Exception as exc:
        log.error("audit hook failed for %s", record.method, exc_info=exc)
        if "disclosed_rows" in record.result_sizes:  # the failure's own entry must not read as a disclosure
            record.result_sizes["disclosed_rows"] = 0
        raise AuditUnavailable(INCOMPLETE if record.outcome_logged else NOT_SERVED) from None
    record.outcome_logged = True
    record.final_logged = final


def _peer_pem(context: grpc.aio.ServicerContext) -> bytes:
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        raise Unauthenticated("a client certificate issued by the fedgate CA is required")
    return bytes(pems[0])


def peer_identity(context: grpc.aio.ServicerContext) -> Identity:
    return identity_from_pem(_peer_pem(context))


ERROR_CLASS_KEY = "fedgate-error"  # trailing metadata: the domain error's class name, for our own clients
COLLECT_KEY = "fedgate-collect"        # request metadata: collect the approved request with this query id
NONCES_KEY = "fedgate-filter-nonces"   # request and trailing metadata: "side=hex;side=hex"
QUERY_ID_KEY = "fedgate-query-id"      # trailing metadata: a pending request's query id


def format_nonces(nonces: dict[str, bytes]) -> str:
    return ";".join(f"{side}={nonce.hex()}" for side, nonce in sorted(nonces.items()))


def parse_nonces(text: str) -> dict[str, bytes]:
    """The filter nonces a client sends back when collecting; malformed pairs are dropped (the digest check
    then refuses the collect, naming the filter)."""
    out: dict[str, bytes] = {}
    for item in text.split(";")[:8]:
        side, _, value = item.partition("=")
        try:
            nonce = bytes.fromhex(value)
        except ValueError:
            continue
        if len(nonce) == 16 and 0 < len(side) <= 300:
            out[side] = nonce
    return out


def error_class(exc: grpc.aio.AioRpcError) -> str:
    """The fedgate error class a server reported for a failed call ('' if none)."""
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_CLASS_KEY:
            return str(value)
    return ""


def _status_of(exc: Exception, method: str, context: grpc.aio.ServicerContext) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, FedgateError):
        context.set_trailing_metadata(((ERROR_CLASS_KEY, type(exc).__name__), *exc.trailers))
        return status_for(exc), str(exc)
    log.error("unexpected error in %s", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE

# What the next interceptor (or the service) is reached through.
_Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # (grpc ships no type information)
    """Identity, completion hook (audit) and error mapping for every fedgate service method."""

    def __init__(self, on_complete: CompletionHook | None = None, revocations: Revocations | None = None) -> None:
        self._on_complete = on_complete
        # With a CRL, a caller whose certificate it revokes is refused (and recorded) like any unauthenticated one.
        self._revocations = revocations
        # With a hook, a response stream holds back its last message until the outcome is logged.
        self._hold_last = on_complete is not None

    async def intercept_service(self, continuation: _Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
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

    def _begin(self, method: str) -> RequestRecord:
        """The record of this call, in place before anything can fail, so a refusal is recorded too."""
        record = RequestRecord(method, trace_id=current_trace_id(), started=metrics.now())
        _record.set(record)
        _hook.set(self._on_complete)
        return record

    def _identify(self, record: RequestRecord, context: grpc.aio.ServicerContext) -> None:
        remaining = context.time_remaining()
        _deadline.set(None if remaining is None else time.monotonic() + remaining)
        pem = _peer_pem(context)
        record.identity = identity_from_pem(pem)
        record.certificate_serial = serial_of(pem)
        if self._revocations is not None:
            self._revocations.check(pem)  # after the identity is known, so the refusal's entry names the caller
        _identity.set(record.identity)
        for key, value in context.invocation_metadata() or ():
            if key == COLLECT_KEY and isinstance(value, str):
                record.collect_query_id = value[:64]
            elif key == NONCES_KEY and isinstance(value, str):
                record.filter_nonces = parse_nonces(value)

    async def _cancelled(self, record: RequestRecord) -> None:
        """Record a call that ended by cancellation; shielded, so the record survives the cancellation."""
        if self._on_complete is None or record.final_logged:
            return  # final: its outcome is logged, and the client went away as the last message left
        try:
            await asyncio.shield(self._on_complete(record, grpc.StatusCode.CANCELLED, CANCELLED_MESSAGE))
        except asyncio.CancelledError:
            pass  # the shielded append goes on; the call itself is over
        except Exception as exc:
            log.error("audit hook failed for cancelled %s", record.method, exc_info=exc)

    async def _finish(self, record: RequestRecord, code: grpc.StatusCode, message: str,
                      context: grpc.aio.ServicerContext, sent: bool = False) -> None:
        """Run the completion hook, then abort with `code` unless it is OK.

        `sent`: messages of this call have left already, so a failed hook must not say "not served".
        """
        if record.final_logged:
            if code is not grpc.StatusCode.OK:  # after its outcome was logged: only in sending the last message
                log.error("%s failed (%s) after its outcome was logged: %s", record.method, code.name, message)
        elif self._on_complete is not None:
            try:
                await self._on_complete(record, code, message)
            except Exception as exc:  # the request must not succeed unrecorded
                log.error("audit hook failed for %s", record.method, exc_info=exc)
                refusal = message if code is grpc.StatusCode.UNAVAILABLE and message in (NOT_SERVED, INCOMPLETE) \
                    else INCOMPLETE if sent or record.outcome_logged else NOT_SERVED
                await context.abort(grpc.StatusCode.UNAVAILABLE, refusal)
        if code is not grpc.StatusCode.OK:
            await context.abort(code, message)

    async def _ended(self, record: RequestRecord, exc: BaseException, method: str,
                     context: grpc.aio.ServicerContext, sent: bool = False) -> None:
        """Record a call that raised `exc`; the caller re-raises it.

        An abort was already recorded and a cancellation is recorded as such; any other
        error is logged with its status and the call aborted with it (so this raises).
        GeneratorExit, KeyboardInterrupt and the like pass through unrecorded.
        """
        if isinstance(exc, grpc.aio.AbortError):
            return
        if isinstance(exc, asyncio.CancelledError):
            await self._cancelled(record)
        elif isinstance(exc, Exception) and _deadline_passed():
            # The caller's deadline passed, and with it every call made on its behalf (call_timeout): what
            # failed then failed because of it, whichever side noticed first.
            await self._cancelled(record)
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, CANCELLED_MESSAGE)
        elif isinstance(exc, Exception):
            if isinstance(exc, FedgateError):
                record.error = exc
            await self._finish(record, *_status_of(exc, method, context), context, sent)

    def _wrap_unary(self, behavior: Callable[..., Awaitable[Any]], method: str,
                    streaming: bool) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            record = self._begin(method)
            with _measured(record, context):
                try:
                    self._identify(record, context)
                    result = await behavior(_checked(request, method, streaming), context)
                except BaseException as exc:
                    await self._ended(record, exc, method, context)
                    raise  # unreachable when _ended aborts
                await self._finish(record, grpc.StatusCode.OK, "", context)
                return result
        return wrapper

    def _wrap_stream(self, behavior: Callable[..., AsyncGenerator[Any, None]], method: str,
                     streaming: bool) -> Callable[..., AsyncIterator[Any]]:
        # A client of a bidirectional stream may wait for a message before it sends the next (a
        # comparison's result before its flagged pairs): holding one back there could deadlock.
        hold_last = self._hold_last and not streaming

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            record = self._begin(method)
            held: list[Any] = []  # the last message, until the outcome is logged
            sent = False
            with _measured(record, context):
                try:
                    self._identify(record, context)
                    # Closed here, in the call's task, when the call ends early (see telemetry.StreamServerSpans).
                    async with contextlib.aclosing(behavior(_checked(request, method, streaming), context)) as stream:
                        async for item in stream:
                            if hold_last:
                                held.append(item)
                                if len(held) == 1:
                                    continue
                                item = held.pop(0)
                            sent = True
                            yield item
                except BaseException as exc:
                    await self._ended(record, exc, method, context, sent)
                    raise
                await self._finish(record, grpc.StatusCode.OK, "", context, sent)
                for item in held:
                    yield item
        return wrapper


# A query whose aggregate was suppressed ends OK with "fewer than k"; the gateway marks its record
# (SUPPRESSED_SIZE), and it is counted as the refusal a Suppressed error is.
_SUPPRESSED = Suppressed(0, "")


@contextlib.contextmanager
def _measured(record: RequestRecord, context: grpc.aio.ServicerContext) -> Iterator[None]:
    """Measure the call inside: its final status code, duration and refusal reason (fedgate.server.metrics)."""
    code = grpc.StatusCode.OK
    try:
        yield
    except grpc.aio.AbortError:
        code = context.code() or grpc.StatusCode.UNKNOWN
        raise
    except (asyncio.CancelledError, GeneratorExit):
        code = grpc.StatusCode.CANCELLED
        raise
    except BaseException:
        code = grpc.StatusCode.UNKNOWN
        raise
    finally:
        try:
            error: BaseException | None = None
            if record.error is not None and code is status_for(record.error):  # not an audit failure after it
                error = record.error
            elif code is grpc.StatusCode.OK and record.result_sizes.get(SUPPRESSED_SIZE):
                error = _SUPPRESSED
            metrics.record_call(record.method, code, metrics.now() - record.started, metrics.refusal_reason(error))
        except Exception:  # the call's outcome must never depend on its metrics
            log.warning("could not record the metrics of %s", record.method, exc_info=True)


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
