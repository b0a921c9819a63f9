"""fedgate.server.metrics: the refusal reason of each domain error, the closed attribute sets, and setting
metrics up and down (an in-memory reader; OTLP export itself is tests/e2e/test_metrics_otlp.py's)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from fedgate.core import errors
from fedgate.crypto.ticket import TicketRefused
from fedgate.gateway.adapter_links import StaleTicket
from fedgate.query.safeguards import DifferenceRefused
from fedgate.query.sizes import Suppressed
from fedgate.server import metrics, telemetry
from fedgate.server.interceptors import AuditUnavailable


@pytest.mark.parametrize(("desc", "exc", "reason"), [
    ("central policy", errors.PolicyDenied("no rule"), "policy"),
    ("a department's rule, at the gateway", errors.DepartmentRefused("no-sums"), "department_rule"),
    ("a department refused what was forwarded", errors.DepartmentDeclined("hrss refused"), "department"),
    ("privacy budget", errors.BudgetExhausted("used up"), "budget"),
    ("daily quota", errors.QuotaExceeded("used up"), "quota"),
    ("min_set_size both ways", errors.ProbeRefused("fewer than 10"), "probing"),
    ("difference check", DifferenceRefused("too close"), "probing"),
    ("aggregate below threshold", Suppressed(10, "fewer than 10"), "suppressed"),
    ("held for approval", errors.AwaitingApproval("waiting", "q1"), "approval_pending"),
    ("no identity", errors.Unauthenticated("no certificate"), "unauthenticated"),
    ("bad filter", errors.InvalidInput("bad filter"), "invalid_input"),
    ("bad identifier", errors.InvalidIdentifier("bad check digit"), "invalid_input"),
    ("peer sent garbage", errors.RemoteProtocolError("bad chunk"), "invalid_input"),
    ("ticket refused at a department", TicketRefused("expired"), "ticket"),
    ("ticket replayed", errors.TicketReplayed("served once"), "ticket"),
    ("wrong role", errors.PermissionDenied("only officers"), "permission"),
    ("unknown dataset", errors.NotFound("no such dataset"), "not_found"),
    ("stale ticket", StaleTicket("hrss"), "precondition"),
    ("collected already", errors.FailedPrecondition("collected"), "precondition"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_each_refusal_has_its_reason(desc: str, exc: Exception, reason: str) -> None:
    assert metrics.refusal_reason(exc) == reason
    assert reason in metrics.REASONS


@pytest.mark.parametrize("exc", [
    errors.Unavailable("adapter down"), errors.SourceFailed("0123abcd"), AuditUnavailable("log down"),
    errors.DeadlineExceeded("too slow"), errors.ConfigError("x.toml", "bad"), errors.DataSourceError("gone"),
    errors.LocalProtocolError("our bug"), errors.RemoteCallFailed("UNAVAILABLE", "x"), errors.FedgateError("?"),
    ValueError("not ours"), None,
], ids=lambda e: type(e).__name__)
def test_failures_are_no_refusals(exc: BaseException | None) -> None:
    assert metrics.refusal_reason(exc) is None


def test_every_error_class_of_the_tree_is_decided() -> None:
    """A new FedgateError subclass inherits a reason from its base, and that reason is in the closed set."""
    def subclasses(cls: type) -> Iterator[type]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in subclasses(errors.FedgateError):
        decided = next((c for c in cls.__mro__ if c in metrics.REFUSAL_BY_ERROR), None)
        assert decided is not None or cls is errors.ProtocolError, cls
        assert metrics.REFUSAL_BY_ERROR.get(decided) in metrics.REASONS | {None}  # type: ignore[arg-type]
    assert set(metrics.REFUSAL_BY_ERROR.values()) - {None} == metrics.REASONS
    assert inspect.getsource(metrics).count("REFUSAL_BY_ERROR[") == 1  # looked up in one function only


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.install(provider)
    try:
        yield reader
    finally:
        metrics.install(None)
        provider.shutdown()


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, object], object]]]:
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, object], object]]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = [(dict(p.attributes or {}), getattr(p, "value", getattr(p, "count", None)))
                               for p in m.data.data_points]
    return out


def test_values_outside_the_closed_sets_become_other(reader: InMemoryMetricReader) -> None:
    metrics.record_call("/fedgate.v1.QueryService/CountRows", grpc.StatusCode.OK, 0.01, None)
    metrics.record_call("not a method: 330106194001010011", grpc.StatusCode.PERMISSION_DENIED, 0.01, "policy")
    metrics.record_call("/fedgate.v1.QueryService/CountRows", grpc.StatusCode.NOT_FOUND, 0.01, "张三")
    metrics.record_audit_append("STARTED", "allow")
    metrics.record_audit_append("OK", "DC-2026-115")
    metrics.record_disclosed_rows("query.disclose", 3)
    metrics.record_disclosed_rows("name = '张三'", 2)
    metrics.record_disclosed_rows("query.disclose", 0)
    unwatch = metrics.watch_approvals(lambda: {"hrss": 2, "Robert'); DROP": 1})
    broken = metrics.watch_approvals(lambda: 1 // 0)  # type: ignore[arg-type,return-value]
    try:
        got = _points(reader)
    finally:
        unwatch()
        broken()
    methods = {a["rpc.method"] for a, _ in got[metrics.CALL_DURATION]}
    assert methods == {"fedgate.v1.QueryService/CountRows", metrics.OTHER}
    assert sorted((a["fedgate.refusal.reason"], n) for a, n in got[metrics.REFUSALS]) == [
        (metrics.OTHER, 1), ("policy", 1)]
    assert sorted((a["fedgate.audit.kind"], a["fedgate.audit.decision"], n) for a, n in got[metrics.AUDIT_APPENDS]) \
        == [("intent", "allow", 1), ("outcome", metrics.OTHER, 1)]
    assert sorted((a["fedgate.query.kind"], n) for a, n in got[metrics.DISCLOSED_ROWS]) == [
        (metrics.OTHER, 2), ("query.disclose", 3)]
    assert sorted((a["fedgate.department"], n) for a, n in got[metrics.APPROVALS_WAITING]) == [
        (metrics.OTHER, 1), ("hrss", 2)]
    assert _points(reader).get(metrics.APPROVALS_WAITING, []) == []  # unregistered: nothing more reported


def test_replicas_sharing_a_store_report_its_number_once(reader: InMemoryMetricReader) -> None:
    unwatch = [metrics.watch_approvals(lambda: {"hrss": 3}) for _ in range(2)]
    try:
        assert _points(reader)[metrics.APPROVALS_WAITING] == [({"fedgate.department": "hrss"}, 3)]
    finally:
        for u in unwatch:
            u()


def test_metrics_follow_otlp_and_stop_in_bounded_time_with_the_collector_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry.setup_tracing("fedgate-test", None)
    try:
        info = telemetry.tracing_info()
        assert info is not None and not info.metrics_exported  # no OTLP: no metrics
    finally:
        telemetry.shutdown_tracing()
    monkeypatch.setenv(telemetry.OTLP_ENDPOINT_ENV, "http://127.0.0.1:9")  # the discard port: nobody answers
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv(telemetry.METRICS_EXPORTER_ENV, "none")
    telemetry.setup_tracing("fedgate-test", None)
    try:
        info = telemetry.tracing_info()
        assert info is not None and not info.metrics_exported  # switched off by the standard variable
    finally:
        telemetry.shutdown_tracing()
    monkeypatch.delenv(telemetry.METRICS_EXPORTER_ENV)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "60")  # the exporter alone would retry for a minute
    telemetry.setup_tracing("fedgate-test", None)
    metrics.record_call("/fedgate.v1.QueryService/CountRows", grpc.StatusCode.OK, 0.01, None)
    info = telemetry.tracing_info()
    assert info is not None and info.metrics_exported
    start = time.monotonic()
    telemetry.shutdown_tracing()
    # The spans' exporter has its own bound; the metrics add at most METRICS_SHUTDOWN_TIMEOUT_MS.
    assert time.monotonic() - start < telemetry.METRICS_SHUTDOWN_TIMEOUT_MS / 1000 + 3
    metrics.record_call("/fedgate.v1.QueryService/CountRows", grpc.StatusCode.OK, 0.01, None)  # a no-op now


class Receiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.names: list[str] = []

    async def Export(self, request, context):  # type: ignore[no-untyped-def]
        self.names += [m.name for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
        return metrics_service_pb2.ExportMetricsServiceResponse()


async def test_stopping_exports_what_was_recorded_since_the_last_export(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver()
    server = grpc.aio.server()
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    monkeypatch.setenv(telemetry.OTLP_ENDPOINT_ENV, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")  # no periodic export before the stop
    try:
        telemetry.setup_tracing("fedgate-test", None)
        metrics.record_call("/fedgate.v1.QueryService/CountRows", grpc.StatusCode.OK, 0.01, None)
        assert receiver.names == []
        await asyncio.to_thread(telemetry.shutdown_tracing)
    finally:
        await server.stop(0)
    assert receiver.names == [metrics.CALL_DURATION]
