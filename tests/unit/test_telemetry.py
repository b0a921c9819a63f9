"""Tracing: one trace across a real grpc.aio call, tracecontext only, the span store, safe attributes.

The OTel API sets the global tracer provider once per process; ``setup_tracing``
installs a forwarder once and a fresh SDK provider per call, so each test sets
tracing up and shuts it down on its own without disturbing other test modules.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from rich.console import Console

from fedgate.server import telemetry
from fedgate.core.errors import ConfigError, InvalidInput, LocalProtocolError
from fedgate.server.telemetry import (
    ScrubbingSpanExporter,
    client_interceptors,
    current_trace_id,
    safe_attributes,
    server_interceptors,
    setup_tracing,
    shutdown_tracing,
)
from fedgate.server.trace_store import SqliteSpanExporter, list_traces, load_trace, render_tree

RESIDENT_ID = "11010519491231002X"
USCC = "91350100M000100Y43"
METHOD = "/test.Echo/Say"

Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


@dataclass
class Tracing:
    provider: TracerProvider
    memory: InMemorySpanExporter
    db: Path


@pytest.fixture
def tracing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tracing]:
    """Tracing for service "gateway" into a temp store, plus raw spans in memory."""
    monkeypatch.delenv(telemetry.OTLP_ENDPOINT_ENV, raising=False)
    db = tmp_path / "gateway-spans.db"
    provider = setup_tracing("gateway", db)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    try:
        yield Tracing(provider, memory, db)
    finally:
        shutdown_tracing()


@dataclass
class Echo:
    channel: grpc.aio.Channel
    seen: dict[str, object]

    async def say(self, payload: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
        call = self.channel.unary_unary(METHOD)  # no serializers: bytes in, bytes out
        reply: bytes = await call(payload, metadata=metadata, timeout=10)
        return reply


@pytest.fixture
async def echo() -> AsyncIterator[Callable[[Handler | None], Awaitable[Echo]]]:
    """Starts a traced echo server on 127.0.0.1:0 and a traced channel to it."""
    started: list[tuple[grpc.aio.Server, grpc.aio.Channel]] = []

    async def start(handler: Handler | None = None) -> Echo:
        seen: dict[str, object] = {}

        async def default(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        async def observed(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            span_ctx = trace.get_current_span().get_span_context()
            seen.update(baggage=dict(baggage.get_all()), trace_id=current_trace_id(),
                        span_ctx=span_ctx)
            return await (handler or default)(request, context)

        server = grpc.aio.server(interceptors=server_interceptors())
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(observed)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=client_interceptors())
        started.append((server, channel))
        return Echo(channel, seen)

    yield start
    for server, channel in started:
        await channel.close()
        await server.stop(None)


async def _spans_by_kind(memory: InMemorySpanExporter) -> dict[trace.SpanKind, ReadableSpan]:
    # The client span ends in a done-callback of the call: give it a moment.
    for _ in range(100):
        spans = {s.kind: s for s in memory.get_finished_spans() if s.name == METHOD}
        if trace.SpanKind.CLIENT in spans and trace.SpanKind.SERVER in spans:
            return spans
        await asyncio.sleep(0.01)
    raise AssertionError(f"spans seen: {[(s.name, s.kind) for s in memory.get_finished_spans()]}")


async def test_client_and_server_spans_share_one_trace(tracing: Tracing, echo: Callable[..., Awaitable[Echo]]) -> None:
    client = await echo()
    assert await client.say(b"ping") == b"ping"
    spans = await _spans_by_kind(tracing.memory)
    client_span, server_span = spans[trace.SpanKind.CLIENT], spans[trace.SpanKind.SERVER]
    assert client_span.context is not None and server_span.context is not None
    assert server_span.context.trace_id == client_span.context.trace_id
    assert server_span.parent is not None and server_span.parent.is_remote
    assert server_span.parent.span_id == client_span.context.span_id
    trace_id = format(server_span.context.trace_id, "032x")
    assert client.seen["trace_id"] == trace_id  # what the audit log will record

    assert telemetry.force_flush()
    stored = {s.kind: s for s in load_trace([tracing.db], trace_id)}
    assert set(stored) == {"CLIENT", "SERVER"}
    assert stored["SERVER"].parent_span_id == stored["CLIENT"].span_id
    assert stored["SERVER"].service == "gateway"
    assert stored["SERVER"].attributes["rpc.method"] == "Say"
    assert stored["SERVER"].attributes["net.peer.ip"] == "127.0.0.1"
    # Recorded raw by the instrumentation, dropped before it reaches the store.
    assert "rpc.user_agent" in (server_span.attributes or {})
    assert "rpc.user_agent" not in stored["SERVER"].attributes


async def test_client_baggage_and_tracestate_do_not_propagate(
        tracing: Tracing, echo: Callable[..., Awaitable[Echo]]) -> None:
    carrier = {"baggage": "k=v", "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01",
               "tracestate": "leak=abc"}
    # Sanity: the stock propagators would honour these very headers.
    assert baggage.get_all(W3CBaggagePropagator().extract(carrier)) == {"k": "v"}
    stock = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
    assert stock.trace_state.get("leak") == "abc"

    textmap = propagate.get_global_textmap()
    assert isinstance(textmap, TraceContextTextMapPropagator)
    assert textmap.fields == {"traceparent", "tracestate"}

    client = await echo()
    await client.say(b"x", metadata=(("baggage", "k=v"), ("tracestate", "leak=abc")))
    assert client.seen["baggage"] == {}
    span_ctx = client.seen["span_ctx"]
    assert isinstance(span_ctx, trace.SpanContext) and span_ctx.is_valid
    assert len(span_ctx.trace_state) == 0


async def test_status_details_and_exception_text_are_scrubbed(
        tracing: Tracing, echo: Callable[..., Awaitable[Echo]]) -> None:
    scrubbed = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(scrubbed)))

    async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.INTERNAL, f"lookup failed for {RESIDENT_ID}")
        raise AssertionError("unreachable")

    client = await echo(fail)
    with pytest.raises(grpc.aio.AioRpcError):
        await client.say(b"x")
    await _spans_by_kind(tracing.memory)
    await _spans_by_kind(scrubbed)
    raw = "".join(s.to_json() for s in tracing.memory.get_finished_spans())
    assert RESIDENT_ID in raw  # the instrumentation does copy abort details into spans...
    clean = scrubbed.get_finished_spans()
    assert all(RESIDENT_ID not in s.to_json() for s in clean)  # ...the scrubber removes them
    server = next(s for s in clean if s.kind is trace.SpanKind.SERVER)
    assert server.status.status_code is trace.StatusCode.ERROR
    assert server.status.description == telemetry.WITHHELD
    assert (server.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]


def test_store_merges_two_processes_into_one_tree(tmp_path: Path) -> None:
    """Two providers standing for two processes, each with its own store file."""
    gw_db, ad_db = tmp_path / "gateway.db", tmp_path / "adapter.db"
    gw = _local_provider("gateway", gw_db)
    ad = _local_provider("adapter-tax", ad_db)
    propagator = TraceContextTextMapPropagator()
    carrier: dict[str, str] = {}
    with gw.get_tracer("t").start_as_current_span("query", attributes={"rows": 3}) as root:
        with gw.get_tracer("t").start_as_current_span("psi.round"):
            propagator.inject(carrier)
    remote = propagator.extract(carrier)
    with ad.get_tracer("t").start_as_current_span("adapter.match", context=remote,
                                                  attributes={"datasets": ("tax.records", "x")}):
        with ad.get_tracer("t").start_as_current_span("mask"):
            pass
    with gw.get_tracer("t").start_as_current_span("other.query"):
        pass
    gw.shutdown()
    ad.shutdown()

    trace_id = format(root.get_span_context().trace_id, "032x")
    spans = load_trace([gw_db, ad_db, tmp_path / "absent.db"], trace_id.upper())
    by_name = {s.name: s for s in spans}
    assert list(by_name) == ["query", "psi.round", "adapter.match", "mask"]
    assert by_name["query"].parent_span_id is None
    assert by_name["psi.round"].parent_span_id == by_name["query"].span_id
    assert by_name["adapter.match"].parent_span_id == by_name["psi.round"].span_id
    assert by_name["mask"].parent_span_id == by_name["adapter.match"].span_id
    assert by_name["adapter.match"].service == "adapter-tax"
    assert by_name["query"].attributes == {"rows": 3}
    assert by_name["adapter.match"].attributes["datasets"] == ("tax.records", "x")

    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(render_tree(spans))
    lines = out.getvalue().splitlines()
    assert trace_id in lines[0]
    depth = {name: next(i for i, line in enumerate(lines) if f" {name} " in line) for name in by_name}
    assert depth["query"] < depth["psi.round"] < depth["adapter.match"] < depth["mask"]
    indent = {name: lines[depth[name]].index(name) for name in by_name}
    assert indent["query"] < indent["psi.round"] < indent["adapter.match"] < indent["mask"]
    assert "adapter-tax" in lines[depth["mask"]] and "rows=3" in lines[depth["query"]]

    listed = list_traces([gw_db, ad_db], limit=5)
    assert [t.root_name for t in listed] == ["other.query", "query"]
    assert listed[1].trace_id == trace_id and listed[1].span_count == 4
    assert list_traces([gw_db, ad_db], limit=1) == listed[:1]
    with pytest.raises(InvalidInput):
        load_trace([gw_db], "not-a-trace-id")


def test_store_export_never_raises(tmp_path: Path) -> None:
    db = tmp_path / "spans.db"
    exporter = SqliteSpanExporter(db)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    spans = memory.get_finished_spans()
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    with sqlite3.connect(db) as other:
        other.execute("DROP TABLE spans")
    assert exporter.export(spans) is SpanExportResult.FAILURE
    exporter.shutdown()
    assert exporter.export(spans) is SpanExportResult.FAILURE
    provider.shutdown()
    with pytest.raises(ConfigError):
        SqliteSpanExporter(db / "under-a-file.db")


def test_setup_is_repeatable_and_otlp_needs_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(telemetry.OTLP_ENDPOINT_ENV, "http://127.0.0.1:9")
    try:
        setup_tracing("adapter-tax", tmp_path / "a.db")
        info = telemetry.tracing_info()
        assert info is not None and info.otlp_endpoint == "http://127.0.0.1:9"
        # Without the exporter package: a clear ConfigError, and the running setup stays.
        monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
        with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-grpc"):
            setup_tracing("gateway", tmp_path / "b.db")
        assert telemetry.tracing_info() == info
        monkeypatch.delenv(telemetry.OTLP_ENDPOINT_ENV)
        provider = setup_tracing("gateway", None)
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        # A tracer obtained before the switch follows it.
        with trace.get_tracer(__name__).start_as_current_span("after.switch"):
            assert len(current_trace_id()) == 32
        assert [s.resource.attributes["service.name"] for s in memory.get_finished_spans()] == ["gateway"]
    finally:
        shutdown_tracing()
    assert telemetry.tracing_info() is None
    with trace.get_tracer(__name__).start_as_current_span("off"):
        assert current_trace_id() == ""


@pytest.mark.parametrize("value", [
    RESIDENT_ID,
    "110105-19491231-002X",           # dashes hide the digit run; the check digit does not
    USCC,
    "org:" + USCC,
    "张伟",
    "Zhang Wei",                      # a space is not identifier-like
    "123456789012345",                # a first-generation (15-digit) resident ID
    110105194912310021,
    1.1010519491231002e17,
    ["tax.records", RESIDENT_ID],
    ["a", 1],
    {"a": 1},
    b"bytes",
    "x" * 129,
])
def test_safe_attributes_rejects_data(value: object) -> None:
    with pytest.raises(LocalProtocolError) as info:
        safe_attributes(**{"fedgate.value": value})
    assert str(value) not in str(info.value)


def test_safe_attributes_accepts_sizes_and_ids() -> None:
    attrs = safe_attributes(**{
        "fedgate.rows": 1200, "fedgate.ratio": 0.25, "fedgate.cached": True,
        "fedgate.dataset": "tax.records", "net.peer": "127.0.0.1:50051",
        "rpc.method": "/fedgate.v1.Query/Run", "fedgate.department": "tax-bureau",
        "fedgate.root_prefix": "0123456789abcd", "fedgate.datasets": ["tax.records", "social.ins"],
        "fedgate.case": "2024-ZJ-0042",
    })
    assert attrs["fedgate.datasets"] == ("tax.records", "social.ins")
    assert attrs["fedgate.rows"] == 1200
    with pytest.raises(LocalProtocolError, match="key"):
        safe_attributes(**{"张伟": 1})


def _local_provider(service: str, db: Path) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(SqliteSpanExporter(db))))
    return provider
