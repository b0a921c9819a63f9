"""OTLP export reaches a collector when OTEL_EXPORTER_OTLP_ENDPOINT is set (a real gRPC collector stand-in)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from fedgate.server import telemetry


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []

    async def Export(self, request, context):  # type: ignore[no-untyped-def]
        for resource_spans in request.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes
                           if a.key == "service.name")
            for scope in resource_spans.scope_spans:
                self.spans += [(service, s.name) for s in scope.spans]
        return trace_service_pb2.ExportTraceServiceResponse()


async def test_spans_are_exported_over_otlp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    collector = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    monkeypatch.setenv(telemetry.OTLP_ENDPOINT_ENV, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    try:
        telemetry.setup_tracing("fedgate-test-otlp", tmp_path / "spans.db")
        with trace.get_tracer(__name__).start_as_current_span("otlp.probe"):
            pass
        assert await asyncio.to_thread(telemetry.force_flush, 10_000)
    finally:
        await asyncio.to_thread(telemetry.shutdown_tracing)
        await server.stop(0)
    assert ("fedgate-test-otlp", "otlp.probe") in collector.spans
