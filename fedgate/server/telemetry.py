"""The one module that configures the OpenTelemetry SDK; everything else calls ``trace.get_tracer``.

Design, because the API lets a process set the global tracer provider only once:
the first ``setup_tracing`` installs a small forwarding provider as the global one,
and every call builds a fresh SDK ``TracerProvider`` (own resource, own exporters)
that the forwarder then uses. Tracers handed out earlier, including those inside
the gRPC interceptors, follow the switch; the previous SDK provider is flushed and
shut down. After ``shutdown_tracing`` the forwarder yields no-op spans. So tests
and the demo can set up tracing again and again, with another service name or
store, in one process.

Metrics sit beside the traces: whenever spans go out over OTLP, ``setup_tracing``
also builds an SDK ``MeterProvider`` with the same resource, whose periodic reader
exports over OTLP too (``OTEL_METRIC_EXPORT_INTERVAL``/``_TIMEOUT``, the
``OTEL_EXPORTER_OTLP_METRICS_*`` variables, and ``OTEL_METRICS_EXPORTER=none`` to
switch them off), and hands it to ``fedgate.server.metrics``, which owns the
instruments. It is never installed as the global meter provider, so it can be
switched like the tracer provider. Stopping exports once more, waiting at most
``METRICS_SHUTDOWN_TIMEOUT_MS`` for a collector that does not answer.

What may reach a span (docs/architecture.md: "sizes, indexes and ids"):
- app code passes attributes through ``safe_attributes``, which raises on
  anything that is not a number or a short identifier-like string;
- every exporter is wrapped in ``ScrubbingSpanExporter``, a backstop that drops
  the gRPC instrumentation's ``rpc.user_agent`` (client-controlled free text),
  exception messages and stack traces, status descriptions that could hold a
  value, and any attribute that fails the same rule;
- only W3C ``traceparent`` crosses processes: no baggage, and incoming
  ``tracestate`` is discarded (both are caller-chosen text that would otherwise
  ride along into every adapter and exporter).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import logging
import math
import os
import re
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.propagators.textmap import CarrierT, Getter, default_getter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from fedgate.crypto import ids
from fedgate.core.errors import ConfigError, LocalProtocolError
from fedgate.server import metrics
from fedgate.server.trace_store import SqliteSpanExporter

log = logging.getLogger(__name__)

OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTLP_REQUIREMENT = "opentelemetry-exporter-otlp-proto-grpc"
METRICS_EXPORTER_ENV = "OTEL_METRICS_EXPORTER"  # "none" keeps metrics off while spans go out over OTLP
# How long stopping a server waits for the last metrics export: a collector that is down must not hold up
# a shutdown for the exporter's full timeout and retries.
METRICS_SHUTDOWN_TIMEOUT_MS = 5_000
# Health checks and reflection would flood the store with spans that say nothing.
UNTRACED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
# What the next server interceptor (or the service) is reached through.
_Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]
# The local store feeds `fedgate trace show` right after a query: flush often.
_STORE_SCHEDULE_DELAY_MS = 500

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")
_SAFE_STR = re.compile(r"[A-Za-z0-9_.:/-]{0,128}")
# 15 is the length of a first-generation resident ID; bank card and account
# numbers are longer still. No size or id fedgate records has that many digits.
_DIGIT_RUN = re.compile(r"[0-9]{15}")
_MAX_NUMBER = 10**14  # numbers with 15 or more integer digits are rejected alike
_MAX_SEQUENCE = 32
_ID_SEPARATORS = re.compile(r"[_.:/]")
_ID_LENGTH = 18
# Attributes the gRPC instrumentation sets from the method path, the status and the
# peer address: structure, not data, and kept even where the value rule is stricter
# (an IPv6 peer is written "[::1]").
_INSTRUMENTATION_KEYS = frozenset({
    "rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code",
    "net.peer.ip", "net.peer.port", "net.peer.name",
})
# Client-controlled free text (any channel may set its user agent): always dropped.
_DROPPED_KEYS = frozenset({"rpc.user_agent"})
# record_exception() copies str(exception) and a traceback ending in that same text.
_DROPPED_EVENT_KEYS = frozenset({"exception.message", "exception.stacktrace"})
_MAX_DESCRIPTION = 256
WITHHELD = "details withheld from traces; see the audit log or the server log"
REDACTED_COUNT_KEY = "fedgate.redacted_attributes"


@dataclass(frozen=True, slots=True)
class TracingInfo:
    """What the current ``setup_tracing`` installed, for a startup log line."""

    service_name: str
    span_db: Path | None
    otlp_endpoint: str | None
    metrics_exported: bool = False


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.info: TracingInfo | None = None
        self.forwarder_installed = False


_state = _State()


class _ForwardingTracer(trace.Tracer):
    """Starts spans on whichever SDK provider is current; no-op spans when there is none."""

    def __init__(self, name: str, version: str | None, schema_url: str | None,
                 attributes: Any) -> None:
        self._args = (name, version, schema_url, attributes)
        self._cached: tuple[TracerProvider, trace.Tracer] | None = None

    def _current(self) -> trace.Tracer:
        provider = _state.provider
        if provider is None:
            return trace.NoOpTracer()
        cached = self._cached
        if cached is None or cached[0] is not provider:
            cached = (provider, provider.get_tracer(*self._args))
            self._cached = cached
        return cached[1]

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        """Start a span on the current provider."""
        return self._current().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        """Start a current span on the current provider (context manager and decorator)."""
        return self._current().start_as_current_span(*args, **kwargs)


class _ForwardingTracerProvider(trace.TracerProvider):
    """The process-global provider: installed once, forwards to the current SDK provider."""

    def get_tracer(self, instrumenting_module_name: str, instrumenting_library_version: str | None = None,
                   schema_url: str | None = None, attributes: Any = None) -> trace.Tracer:
        """A tracer that follows later ``setup_tracing`` calls."""
        return _ForwardingTracer(instrumenting_module_name, instrumenting_library_version,
                                 schema_url, attributes)


_FORWARDER = _ForwardingTracerProvider()


class TraceContextOnlyPropagator(TraceContextTextMapPropagator):
    """W3C tracecontext that keeps ``traceparent`` and drops any incoming ``tracestate``."""

    def extract(self, carrier: CarrierT, context: Context | None = None,
                getter: Getter[CarrierT] = default_getter) -> Context:
        """Extract the remote parent with an empty trace state."""
        ctx = super().extract(carrier, context, getter)
        remote = trace.get_current_span(ctx).get_span_context()
        if not remote.is_valid or not remote.trace_state:
            return ctx
        clean = trace.SpanContext(remote.trace_id, remote.span_id, is_remote=True,
                                  trace_flags=remote.trace_flags)
        return trace.set_span_in_context(trace.NonRecordingSpan(clean), ctx)


def setup_tracing(service_name: str, span_db: Path | None) -> TracerProvider:
    """Install a fresh SDK provider for ``service_name``: local store if ``span_db``, OTLP if the env var is set."""
    if _problem(service_name) is not None or not service_name:
        raise ConfigError("service name", "must be a short identifier-like name")
    endpoint = os.environ.get(OTLP_ENDPOINT_ENV) or None
    with _state.lock:
        _install_forwarder()
    # Build everything before switching, so a ConfigError leaves the old setup running.
    exporters: list[tuple[SpanExporter, float | None]] = []
    if span_db is not None:
        exporters.append((SqliteSpanExporter(span_db), _STORE_SCHEDULE_DELAY_MS))
    if endpoint is not None:
        try:
            exporters.append((_otlp_exporter(), None))  # None: OTEL_BSP_* env or SDK defaults
        except BaseException:
            for exporter, _ in exporters:
                exporter.shutdown()
            raise
    resource = Resource.create({SERVICE_NAME: service_name})
    try:
        meter_provider = _meter_provider(resource) if endpoint is not None and _metrics_wanted() else None
    except BaseException:
        for exporter, _ in exporters:
            exporter.shutdown()
        raise
    provider = TracerProvider(
        resource=resource,
        # A caller's traceparent with the sampled flag off must not switch off
        # tracing of its queries at the gateway and the adapters.
        sampler=ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON),
        # One atexit hook for the module instead of one per provider built.
        shutdown_on_exit=False,
    )
    for exporter, delay in exporters:
        # Batch, not Simple: Simple would run SQLite commits (or an OTLP round trip)
        # on the event loop at the end of every span; the batch worker thread does
        # them off the request path, one transaction per batch.
        provider.add_span_processor(
            BatchSpanProcessor(ScrubbingSpanExporter(exporter), schedule_delay_millis=delay))
    with _state.lock:
        propagate.set_global_textmap(TraceContextOnlyPropagator())
        old, _state.provider = _state.provider, provider
        old_meters, _state.meter_provider = _state.meter_provider, meter_provider
        _state.info = TracingInfo(service_name, span_db, endpoint, meter_provider is not None)
        metrics.install(meter_provider)
    if old is not None:
        old.shutdown()
    _shutdown_meters(old_meters)
    return provider


def shutdown_tracing() -> None:
    """Flush and shut down the provider ``setup_tracing`` installed; later spans are no-ops."""
    with _state.lock:
        old, _state.provider, _state.info = _state.provider, None, None
        old_meters, _state.meter_provider = _state.meter_provider, None
        metrics.install(None)
    if old is not None:
        old.shutdown()
    _shutdown_meters(old_meters)


def force_flush(timeout_millis: int = 5_000) -> bool:
    """Export every span ended so far (e.g. before the CLI reads the store); False on timeout."""
    provider = _state.provider
    return True if provider is None else provider.force_flush(timeout_millis)


def flush_metrics(timeout_millis: int = 5_000) -> bool:
    """Collect and export every metric now (e.g. before a test reads its collector); False on timeout."""
    provider = _state.meter_provider
    return True if provider is None else provider.force_flush(timeout_millis)


def tracing_info() -> TracingInfo | None:
    """The current setup, or None when tracing is off."""
    return _state.info


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The tracing server interceptors; put them FIRST so their spans cover identity, audit and error mapping.

    Unary calls are traced by the OpenTelemetry instrumentation, response-streaming
    calls by ``StreamServerSpans`` (see there why).
    """
    return [StreamServerSpans(),
            aio_server_interceptor(filter_=_traced_server_call)]  # type: ignore[no-untyped-call]


class StreamServerSpans(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # (grpc ships no type information)
    """The server span of every response-streaming call, and the closing of its handler in the call's task.

    Why not the instrumentation's aio stream wrapper: grpc.aio iterates a streaming
    handler's async generator and, when the call ends while the generator waits at a
    ``yield`` (the client cancelled while a message was being sent), never closes it
    (grpc/grpc#42295). Garbage collection closes it later, in a task with another
    ``contextvars`` context, where the wrapper's ``detach`` of the context it attached
    fails: "Failed to detach context" and a ValueError traceback for each such call,
    and every ``finally`` of the handler runs late. Here the handler becomes a
    coroutine that writes each message itself (``context.write``) and closes the
    generator in the call's own task, so the span, and every context attached under
    it, ends where it began. Span name and attributes are the instrumentation's.
    """

    async def intercept_service(self, continuation: _Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or not handler.response_streaming or not _response_streaming(method) \
                or method.startswith(UNTRACED_PREFIXES):
            return handler  # the instrumentation's filter took the same decision the other way
        if handler.unary_stream is not None:
            inner, make = handler.unary_stream, grpc.unary_stream_rpc_method_handler
        else:
            inner, make = handler.stream_stream, grpc.stream_stream_rpc_method_handler
        return make(_traced_stream(inner, method), request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)


def _traced_stream(inner: Callable[..., AsyncGenerator[Any, None]], method: str) -> Callable[..., Awaitable[None]]:
    tracer = trace.get_tracer(__name__)

    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> None:
        metadata = {md.key: md.value for md in context.invocation_metadata() or ()}
        parent = propagate.extract(metadata)
        code = grpc.StatusCode.OK
        with tracer.start_as_current_span(method, context=parent, kind=trace.SpanKind.SERVER,
                                          attributes=_stream_attributes(method, context),
                                          record_exception=False, set_status_on_exception=False) as span:
            try:
                async with contextlib.aclosing(inner(request, context)) as stream:
                    async for message in stream:
                        try:
                            await context.write(message)
                        except asyncio.CancelledError:
                            # The other way grpc.aio ends such a call (it races the failed send): the task is
                            # cancelled in the write. Closing the stream alone would end the handler with
                            # GeneratorExit, recorded by nobody; it is told it was cancelled, as below.
                            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                                await stream.athrow(asyncio.CancelledError())
                            raise
                        except Exception as exc:
                            if not _call_gone(exc):
                                raise
                            # The client went away (cancelled, or its deadline passed) while this message
                            # was being sent: the handler ends as a cancelled call, and records itself so.
                            await stream.athrow(asyncio.CancelledError())
                            raise asyncio.CancelledError() from None
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception:
                code = grpc.StatusCode.UNKNOWN
                raise
            finally:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in _ERROR_CODES:
                    span.set_status(Status(StatusCode.ERROR, code.name))

    return behavior


def _call_gone(exc: Exception) -> bool:
    """Whether a failed ``context.write`` means the call is over (grpc's core refused the send batch).

    grpc raises its Cython ``ExecuteBatchError`` there, which it does not export; a send
    fails that way only when the call has ended under the handler.
    """
    return type(exc).__module__.startswith("grpc._cython") and type(exc).__name__ == "ExecuteBatchError"


# The codes the instrumentation marks as a server error (the rest are the caller's doing).
_ERROR_CODES = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
                          grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL,
                          grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})


def _stream_attributes(method: str, context: grpc.aio.ServicerContext) -> dict[str, AttributeValue]:
    """The attributes the instrumentation gives a server span: method, service and peer."""
    service, _, name = method.lstrip("/").partition("/")
    attributes: dict[str, AttributeValue] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name,
                                             "rpc.grpc.status_code": grpc.StatusCode.OK.value[0]}
    peer = context.peer() or ""
    if peer.startswith(("ipv4:", "ipv6:")):
        host, _, port = peer.split(",")[0].split(":", 1)[1].rpartition(":")
        attributes.update({"net.peer.ip": host, "net.peer.port": port})
        if host in ("[::1]", "127.0.0.1"):
            attributes["net.peer.name"] = "localhost"
    return attributes


@functools.lru_cache(maxsize=256)
def _response_streaming(method: str) -> bool:
    """Whether `method` (/package.Service/Method) streams its responses, by its registered descriptor."""
    service, _, name = method.lstrip("/").partition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name)
    except KeyError:
        return False  # not a registered protobuf service (a test's generic handler): the instrumentation traces it
    return found is not None and bool(found.server_streaming)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Tracing client interceptors for a grpc.aio channel: W3C traceparent goes in the metadata."""
    # No request/response hooks: the instrumentation then never looks at message bodies.
    return list(aio_client_interceptors(filter_=_traced_client_call))  # type: ignore[no-untyped-call]


def current_trace_id() -> str:
    """The current span's trace id as 32 hex characters, or "" outside any span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def safe_attributes(**attrs: object) -> dict[str, AttributeValue]:
    """Check span attributes are sizes and ids, never data; raise ``LocalProtocolError`` otherwise.

    Accepted: bool, int and float below 10**14 in magnitude, strings matching
    ``[A-Za-z0-9_.:/-]{0,128}`` with no run of 15+ digits that are not a valid
    resident ID or USCC (whole or between ``_ . : /``), and lists of those (at most
    32). So a name (not ASCII), a resident ID (digit run, or check digit when
    written with dashes) or a USCC (check character) cannot slip into a trace by
    accident. Hex digests trip the digit rule by chance: use at most 14 hex chars.
    Keys as ``{"fedgate.rows": 3}`` via ``**``. Errors never echo the value.
    """
    clean: dict[str, AttributeValue] = {}
    for key, value in attrs.items():
        if not _KEY.fullmatch(key):
            raise LocalProtocolError("a span attribute key is not identifier-like")
        problem = _problem(value)
        if problem is not None:
            raise LocalProtocolError(f"span attribute {key!r} rejected: {problem}")
        clean[key] = tuple(value) if isinstance(value, (list, tuple)) else value  # type: ignore[assignment]
    return clean


class ScrubbingSpanExporter(SpanExporter):
    """Wraps an exporter and hands it copies of spans without anything that could hold data."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Scrub, then export through the wrapped exporter; FAILURE (logged) rather than raise."""
        try:
            clean = [scrub_span(span) for span in spans]
            return self.inner.export(clean)
        except Exception:  # the app must never fail because tracing did
            log.warning("could not export %d spans", len(spans), exc_info=True)
            return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        """Shut the wrapped exporter down, passing the timeout where it takes one."""
        if "timeout_millis" in inspect.signature(self.inner.shutdown).parameters:
            self.inner.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
        else:
            self.inner.shutdown()


def scrub_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` keeping only data-free attributes, events, links and status text."""
    attributes, dropped = _scrub_attributes(span.attributes, _INSTRUMENTATION_KEYS)
    name = span.name
    if _problem(name) is not None:
        name, dropped = "redacted", dropped + 1
    events = []
    for event in span.events:
        event_attrs, n = _scrub_attributes(
            {k: v for k, v in (event.attributes or {}).items() if k not in _DROPPED_EVENT_KEYS},
            frozenset(),
        )
        event_name = event.name if _problem(event.name) is None else "redacted"
        dropped += n + (event_name != event.name)
        events.append(Event(event_name, event_attrs, event.timestamp))
    links = []
    for link in span.links:
        link_attrs, n = _scrub_attributes(link.attributes, frozenset())
        dropped += n
        links.append(trace.Link(link.context, link_attrs))
    if dropped:
        # Counted, not named: tells the operator a call site needs safe_attributes.
        attributes[REDACTED_COUNT_KEY] = dropped
    status = span.status
    if status.description and not _safe_text(status.description):
        status = Status(status.status_code, WITHHELD if status.status_code is StatusCode.ERROR else None)
    return ReadableSpan(
        name=name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=attributes, events=events, links=links, kind=span.kind, status=status,
        start_time=span.start_time, end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _scrub_attributes(attrs: Mapping[str, Any] | None,
                      structural: frozenset[str]) -> tuple[dict[str, AttributeValue], int]:
    kept: dict[str, AttributeValue] = {}
    dropped = 0
    for key, value in (attrs or {}).items():
        if key in _DROPPED_KEYS:
            continue  # expected and always present: not counted as a call-site bug
        if key in structural and isinstance(value, (str, int)):
            kept[key] = value
        elif _KEY.fullmatch(key) and _problem(value) is None:
            kept[key] = value
        else:
            dropped += 1
    return kept, dropped


def _problem(value: object) -> str | None:
    """Why ``value`` may not go into a span, or None if it may."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return None if abs(value) < _MAX_NUMBER else "a number with 15 or more digits (an identifier?)"
    if isinstance(value, str):
        if not _SAFE_STR.fullmatch(value):
            return "not a short identifier-like string (letters, digits and _ . : / -, at most 128)"
        if _DIGIT_RUN.search(value):
            return "contains a run of 15 or more digits (a resident ID or account number?)"
        if _is_identifier(value):
            return "is or contains a valid resident ID or USCC"
        return None
    if isinstance(value, (list, tuple)):
        if len(value) > _MAX_SEQUENCE:
            return f"a list longer than {_MAX_SEQUENCE}"
        if len({type(v) for v in value}) > 1:
            return "a list mixing types"
        for item in value:
            if isinstance(item, (list, tuple)):
                return "a nested list"
            inner = _problem(item)
            if inner is not None:
                return f"a list item: {inner}"
        return None
    return f"type {type(value).__name__} (only bool, int, float, str and lists of them)"


def _is_identifier(text: str) -> bool:
    # The id normalisers strip dashes and spaces, so "110105-19491231-002X" is caught
    # whole; splitting on the other separators catches "org:<USCC>".
    for part in {text, *_ID_SEPARATORS.split(text)}:
        if len(part) >= _ID_LENGTH and (ids.is_valid("uscc", part) or ids.is_valid("resident_id", part)):
            return True
    return False


def _safe_text(text: str) -> bool:
    # Status descriptions are free text (abort details, str(AioRpcError)): keep one only
    # if it is short printable ASCII (no name in Chinese) with no identifier in it.
    if len(text) > _MAX_DESCRIPTION or not text.isascii() or not text.isprintable():
        return False
    if _DIGIT_RUN.search(text):
        return False
    return not any(_is_identifier(word) for word in re.split(r"[\s,;'\"()\[\]{}=]+", text) if word)


def _exporter_missing() -> ConfigError:
    return ConfigError(OTLP_ENDPOINT_ENV, f"is set but {OTLP_REQUIREMENT} is not installed; install it or unset "
                                          "the variable")


def _otlp_exporter() -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise _exporter_missing() from None
    # Endpoint, TLS, headers and timeout come from the standard OTEL_EXPORTER_OTLP_* variables.
    exporter: SpanExporter = OTLPSpanExporter()
    return exporter


def _metrics_wanted() -> bool:
    return os.environ.get(METRICS_EXPORTER_ENV, "otlp").strip().lower() != "none"


def _meter_provider(resource: Resource) -> MeterProvider:
    """A meter provider exporting over OTLP; interval and timeout from OTEL_METRIC_EXPORT_* (the SDK reads them)."""
    try:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    except ImportError:
        raise _exporter_missing() from None
    # Endpoint, TLS, headers, timeout, temporality and histogram aggregation come from the standard
    # OTEL_EXPORTER_OTLP_* / OTEL_EXPORTER_OTLP_METRICS_* variables.
    exporter: MetricExporter = OTLPMetricExporter()
    return MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(exporter)],
                         shutdown_on_exit=False)


def _shutdown_meters(provider: MeterProvider | None) -> None:
    """Export one last time and stop, within METRICS_SHUTDOWN_TIMEOUT_MS whatever the collector does."""
    if provider is None:
        return
    try:
        provider.shutdown(timeout_millis=METRICS_SHUTDOWN_TIMEOUT_MS)
    except Exception:  # stopping a server must never fail because metrics did
        log.warning("could not shut the meter provider down cleanly", exc_info=True)


def _install_forwarder() -> None:
    if _state.forwarder_installed:
        return
    trace.set_tracer_provider(_FORWARDER)
    if trace.get_tracer_provider() is not _FORWARDER:
        raise ConfigError(
            "tracer provider",
            "another TracerProvider is already installed in this process; "
            "only fedgate.server.telemetry may configure the OpenTelemetry SDK",
        )
    _state.forwarder_installed = True
    atexit.register(shutdown_tracing)


def _traced_server_call(details: grpc.HandlerCallDetails) -> bool:
    """For the instrumentation: unary calls only (``StreamServerSpans`` traces the streaming ones)."""
    method = details.method or ""
    return not method.startswith(UNTRACED_PREFIXES) and not _response_streaming(method)


def _traced_client_call(details: grpc.aio.ClientCallDetails) -> bool:
    method = details.method
    if isinstance(method, bytes):  # grpc passes bytes here (grpc/grpc#31092)
        method = method.decode()
    return not method.startswith(UNTRACED_PREFIXES)
