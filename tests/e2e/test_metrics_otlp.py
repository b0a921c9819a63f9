"""Metrics, end to end: a real gateway and adapter over mTLS export to an in-test OTLP metrics receiver.

A few real queries (served, refused by policy, by a department's rule, by the probing safeguard, held for
approval) and then what the receiver got: call counts per method and status code, refusals per reason,
the approvals waiting, the audit appends (against the audit log itself), the rows disclosed; and not one
attribute holding a value of the queries (filter values, identifiers, case number, purpose, names, serials).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.metrics.v1 import metrics_pb2

import support
from fedgate.client.approvals import HeldForApproval
from fedgate.client.gateway import FewerThan, GatewayClient, Side
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import RemoteCallFailed
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.demo.deployment import policy_copy
from fedgate.server import metrics, telemetry
from fedgate.server.tls import TlsFiles

WHY = {"purpose": "核查冒领养老金", "case_number": "DC-2026-4711"}
RULES = """
[approvals]
keys = ["{dir}/hrss-zhang.vkey"]
ttl_hours = 1

[[rules]]
name = "rows-leave-with-approval"
effect = "approve"
kinds = ["disclose"]

[[rules]]
name = "no-sums"
effect = "refuse"
kinds = ["sum"]
"""


class Receiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    """An OTLP metrics collector stand-in: keeps every export request as it arrived."""

    def __init__(self) -> None:
        self.requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []

    async def Export(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def latest(self) -> dict[str, metrics_pb2.Metric]:
        """Each metric as last exported (cumulative temporality: the last export holds the totals)."""
        out: dict[str, metrics_pb2.Metric] = {}
        for request in self.requests:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        out[metric.name] = metric
        return out


class SpanSink(trace_service_pb2_grpc.TraceServiceServicer):
    """Takes the spans exported beside the metrics (tests/unit/test_telemetry_otlp.py checks those)."""

    async def Export(self, request, context):  # type: ignore[no-untyped-def]
        return trace_service_pb2.ExportTraceServiceResponse()


def _attrs(point: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((a.key, a.value.string_value) for a in point.attributes))


def _sums(metric: metrics_pb2.Metric) -> dict[tuple[tuple[str, str], ...], int]:
    return {_attrs(p): p.as_int for p in metric.sum.data_points}


def _calls(metric: metrics_pb2.Metric) -> dict[tuple[str, str], int]:
    """rpc.server.call.duration's count per (method, status code)."""
    out = {}
    for p in metric.histogram.data_points:
        a = dict(_attrs(p))
        assert a["rpc.system.name"] == "grpc"
        out[(a["rpc.method"], a["rpc.response.status_code"])] = p.count
        assert sum(p.bucket_counts) == p.count and p.sum >= 0
        assert list(p.explicit_bounds) == list(metrics.DURATION_BUCKETS_S)
    return out


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    collector = Receiver()
    server = grpc.aio.server()
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(collector, server)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(SpanSink(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    monkeypatch.setenv(telemetry.OTLP_ENDPOINT_ENV, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    # No periodic export during the test: the flushes below decide what the receiver holds.
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "600000")
    telemetry.setup_tracing("fedgate-test-metrics", tmp_path / "spans.db")
    try:
        info = telemetry.tracing_info()
        assert info is not None and info.metrics_exported
        yield collector
    finally:
        await asyncio.to_thread(telemetry.shutdown_tracing)
        await server.stop(0)


async def test_queries_are_counted_by_method_status_and_reason_and_no_value_leaks(
        servers, receiver: Receiver, tmp_path: Path) -> None:
    keys = tmp_path / "approvers"
    from fedgate.server.signing_key import load_or_create

    load_or_create(keys / "hrss-zhang.key", "hrss-zhang")
    policies = support.with_test_rules(policy_copy(tmp_path / "policies", "min_set_size = 50\n"))
    gw = await servers.gateway(tmp_path / "gw", f'policy_dir = "{policies}"')
    csv = tmp_path / "pensions.csv"
    csv.write_text(support.pensions_csv(150), encoding="utf-8")
    await servers.adapter("hrss", gw, RULES.format(dir=keys) + support.PENSIONS_DECL.format(path=csv))
    resident_ids = [line.split(",")[0] for line in csv.read_text(encoding="utf-8").splitlines()[1:]]
    names = [line.split(",")[1] for line in csv.read_text(encoding="utf-8").splitlines()[1:]]
    probe_name = names[7]

    def client(who: Any = support.SUPERVISOR) -> GatewayClient:
        return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, who))

    async with client() as c:
        served = await c.count_rows("hrss.pensions", filter="district = '西湖区'", **WHY)
        # One person's record: a count of 1 is answered only as "fewer than k" (suppressed) ...
        suppressed = await c.count_rows("hrss.pensions", filter=f"name = '{probe_name}'", **WHY)
        with pytest.raises(RemoteCallFailed) as probing:  # ... and everyone but that person is refused
            await c.count_rows("hrss.pensions", filter=f"not name = '{probe_name}'", **WHY)
        with pytest.raises(RemoteCallFailed) as department_rule:
            await c.intersection_sum(values=Side("hrss.pensions", "resident_id"), value_fields=["monthly_amount_fen"],
                                     other=Side("hrss.pensions", "resident_id"), key=SupervisorKey.generate(), **WHY)
        with pytest.raises(HeldForApproval) as held:
            await c.disclose("hrss.pensions", ["name"], filter="district = '上城区'", limit=5, **WHY)
    async with client(support.OFFICER) as officer:  # an officer reads the log; it may not query data
        with pytest.raises(RemoteCallFailed) as policy:
            await officer.count_rows("hrss.pensions", filter="district = '上城区'", **WHY)
    assert served.rows == 100
    assert isinstance(suppressed.rows, FewerThan)
    assert probing.value.code == "FAILED_PRECONDITION" and "both ways" in probing.value.details
    assert department_rule.value.code == "PERMISSION_DENIED" and "no-sums" in department_rule.value.details
    assert policy.value.code == "PERMISSION_DENIED"

    assert await asyncio.to_thread(telemetry.flush_metrics, 10_000)
    got = receiver.latest()

    # Calls served, by method and status code: the gateway's queries as made, the adapter's as forwarded.
    calls = _calls(got[metrics.CALL_DURATION])
    queries = {k: n for k, n in calls.items() if k[0].startswith("fedgate.v1.QueryService/")}
    assert queries == {
        ("fedgate.v1.QueryService/CountRows", "OK"): 2,
        ("fedgate.v1.QueryService/CountRows", "FAILED_PRECONDITION"): 1,
        ("fedgate.v1.QueryService/CountRows", "PERMISSION_DENIED"): 1,
        ("fedgate.v1.QueryService/IntersectionSum", "PERMISSION_DENIED"): 1,
        ("fedgate.v1.QueryService/Disclose", "FAILED_PRECONDITION"): 1,
    }
    # The adapter counted three times (the suppressed and refused counts are judged at the gateway, on the
    # sizes it returned); the refused sum and the held disclosure never reached it.
    adapter = {k: n for k, n in calls.items() if k[0].startswith("fedgate.v1.AdapterService/")}
    assert adapter.get(("fedgate.v1.AdapterService/CountRows", "OK")) == 3
    assert not [k for k in adapter if k[0].endswith(("/Disclose", "/Match"))]
    assert not [k for k in adapter if k[1] != "OK"]
    # Every other gateway call is in the audit log with its status (lease renewals aside, never logged).
    entries = [AuditEntry.from_canonical(i.body) for i in gw.audit_log.store.entries()]
    outcomes = Counter((e.method.lstrip("/"), e.status) for e in entries if e.status not in ("STARTED", "ALERT"))
    gateway_calls = {k: n for k, n in calls.items() if not k[0].startswith("fedgate.v1.AdapterService/")}
    assert gateway_calls == dict(outcomes)

    # Refusals by reason (and method): one of each kind made.
    assert _sums(got[metrics.REFUSALS]) == {
        (("fedgate.refusal.reason", "suppressed"), ("rpc.method", "fedgate.v1.QueryService/CountRows")): 1,
        (("fedgate.refusal.reason", "probing"), ("rpc.method", "fedgate.v1.QueryService/CountRows")): 1,
        (("fedgate.refusal.reason", "department_rule"), ("rpc.method", "fedgate.v1.QueryService/IntersectionSum")): 1,
        (("fedgate.refusal.reason", "approval_pending"), ("rpc.method", "fedgate.v1.QueryService/Disclose")): 1,
        (("fedgate.refusal.reason", "policy"), ("rpc.method", "fedgate.v1.QueryService/CountRows")): 1,
    }

    # The approvals waiting: the held disclosure, for hrss.
    (waiting,) = got[metrics.APPROVALS_WAITING].gauge.data_points
    assert (_attrs(waiting), waiting.as_int) == ((("fedgate.department", "hrss"),), 1)

    # Audit appends, by kind and decision: exactly the entries in the log.
    expected_appends = Counter((metrics.audit_kind(e.status, e.decision), e.decision) for e in entries)
    appended = {(dict(k)["fedgate.audit.kind"], dict(k)["fedgate.audit.decision"]): n
                for k, n in _sums(got[metrics.AUDIT_APPENDS]).items()}
    assert appended == dict(expected_appends)
    assert appended[("intent", "allow")] == 4  # the three counts that reached the department, the held disclosure
    assert sum(appended.values()) == len(entries)
    assert metrics.DISCLOSED_ROWS not in got  # nothing was disclosed

    # Privacy: every attribute is a known key with a value from its closed set ...
    closed = {"rpc.system.name": {"grpc"}, "fedgate.refusal.reason": metrics.REASONS,
              "fedgate.audit.kind": metrics.AUDIT_KINDS, "fedgate.audit.decision": metrics.AUDIT_DECISIONS,
              "fedgate.department": {"hrss"}, "fedgate.query.kind": metrics.QUERY_KINDS,
              "rpc.response.status_code": {code.name for code in grpc.StatusCode}}
    method = re.compile(r"(fedgate\.v1\.[A-Za-z]+Service|grpc\.health\.v1\.Health)/[A-Za-z]+")
    for m in got.values():
        for point in [*m.sum.data_points, *m.gauge.data_points, *m.histogram.data_points]:
            for key, value in _attrs(point):
                assert value in closed[key] if key != "rpc.method" else method.fullmatch(value), (m.name, key)
    # ... and no value of the queries is anywhere in what was exported, resource attributes included.
    exported = b"".join(r.SerializeToString() for r in receiver.requests).decode("utf-8", errors="replace")
    serials = [str(x509.load_pem_x509_certificate(p.read_bytes()).serial_number) for p in servers.certs.glob("*.pem")]
    secrets = [*resident_ids, *names, "西湖区", "上城区", WHY["case_number"], WHY["purpose"], held.value.query_id,
               support.SUPERVISOR.user, support.OFFICER.user, "spiffe://", "district", *serials,
               *[format(int(s), "x") for s in serials]]
    assert [s for s in secrets if s in exported] == []
