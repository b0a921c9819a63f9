"""fedgate's metrics: the instruments, the closed sets their attributes take, and the one map from domain error
to refusal reason.

Code records through the functions here; ``fedgate.server.telemetry`` builds the SDK ``MeterProvider`` (beside
the tracer provider, exporting over OTLP) and hands it to ``install``. With no provider installed every
function is a cheap no-op. Only the OpenTelemetry *API* is imported here.

Privacy: an attribute value is only ever one of a closed set: a registered gRPC method name, a status code
name, a refusal reason below, an audit entry's kind and decision, a query kind, a department code. Never an
identifier, a case number, a purpose, a filter value, a row, a supervisor's free text, a certificate serial
or a dataset name. ``_closed`` replaces anything outside its set with ``OTHER``.

Instruments (docs/architecture.md, "Metrics", lists them for operators):

- ``rpc.server.call.duration`` (histogram, s; ``rpc.system.name``, ``rpc.method``,
  ``rpc.response.status_code``): one measurement per call a gateway or adapter served, so its count per
  method and status code is the number of calls served. The RPC semantic conventions (release candidate)
  replaced ``rpc.server.duration`` (ms, ``rpc.grpc.status_code`` as an int) by this name, unit and
  attributes; we follow the current ones rather than a deprecated name, and no separate call counter
  duplicates the histogram's count.
- ``fedgate.refusals`` (counter; ``fedgate.refusal.reason``, ``rpc.method``): calls refused, by reason.
- ``fedgate.audit.appends`` (counter; ``fedgate.audit.kind``, ``fedgate.audit.decision``).
- ``fedgate.approvals.waiting`` (gauge; ``fedgate.department``): held requests still waiting for that
  department's approvals, read from the approvals store at each collection.
- ``fedgate.adapter.disclosed_rows`` (counter; ``fedgate.query.kind``): rows a department disclosed.
  Aggregates (counted, matched or summed rows) are deliberately not counted: the counter's step between two
  exports would be the exact aggregate of a single query, which may be one the gateway answered only as
  "fewer than k" or with noise.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import grpc
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from fedgate.core import errors
from fedgate.crypto.ticket import TicketRefused
from fedgate.query.sizes import Suppressed

log = logging.getLogger(__name__)

METER_NAME = "fedgate"
OTHER = "_OTHER"  # the semantic conventions' value for a method (or any closed-set value) not recognised

CALL_DURATION = "rpc.server.call.duration"
REFUSALS = "fedgate.refusals"
AUDIT_APPENDS = "fedgate.audit.appends"
APPROVALS_WAITING = "fedgate.approvals.waiting"
DISCLOSED_ROWS = "fedgate.adapter.disclosed_rows"

# The semantic conventions' advice for rpc.server.call.duration, in seconds.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# The closed set of refusal reasons.
POLICY = "policy"                      # no rule of the central policy allows it
DEPARTMENT_RULE = "department_rule"    # a department's own rule refuses it (checked at the gateway)
DEPARTMENT = "department"              # a department refused what the gateway forwarded (seen at the gateway)
BUDGET = "budget"                      # the differential-privacy budget is used up
QUOTA = "quota"                        # a daily query or disclosed-row quota is used up
PROBING = "probing"                    # a safeguard against probing: minimum set size both ways, difference check
SUPPRESSED = "suppressed"              # an aggregate below its threshold, answered only as "fewer than k"
APPROVAL_PENDING = "approval_pending"  # held for a department's approval
UNAUTHENTICATED = "unauthenticated"    # no usable identity
INVALID_INPUT = "invalid_input"        # a malformed request, filter or message
TICKET = "ticket"                      # at a department: a ticket refused (forged, stale, replayed, not logged, its rules)
PERMISSION = "permission"              # any other refusal of a known caller (wrong role, another department's data)
NOT_FOUND = "not_found"                # an unknown dataset, department or entry
PRECONDITION = "precondition"          # any other refusal by the system's state (collected already, expired)
REASONS = frozenset({POLICY, DEPARTMENT_RULE, DEPARTMENT, BUDGET, QUOTA, PROBING, SUPPRESSED, APPROVAL_PENDING,
                     UNAUTHENTICATED, INVALID_INPUT, TICKET, PERMISSION, NOT_FOUND, PRECONDITION})

# THE one map from domain error to refusal reason, looked up along the exception's MRO like
# fedgate.server.status.STATUS_BY_ERROR (the most specific class wins). None: a failure, not a refusal
# (a dependency down, a deadline, a misconfiguration, our own bug): the status code tells those apart.
REFUSAL_BY_ERROR: dict[type[errors.FedgateError], str | None] = {
    errors.PolicyDenied: POLICY,
    errors.DepartmentRefused: DEPARTMENT_RULE,
    errors.DepartmentDeclined: DEPARTMENT,
    errors.BudgetExhausted: BUDGET,
    errors.QuotaExceeded: QUOTA,
    errors.ProbeRefused: PROBING,
    # Caught by the query machines and answered "fewer than k": the call ends OK, its record marked
    # (fedgate.query.probing.SUPPRESSED_SIZE), and the interceptor counts it as this class.
    Suppressed: SUPPRESSED,
    errors.AwaitingApproval: APPROVAL_PENDING,
    errors.Unauthenticated: UNAUTHENTICATED,
    errors.InvalidInput: INVALID_INPUT,
    errors.RemoteProtocolError: INVALID_INPUT,
    errors.MalformedProof: INVALID_INPUT,
    TicketRefused: TICKET,
    errors.TicketReplayed: TICKET,
    errors.VerificationError: TICKET,
    errors.PermissionDenied: PERMISSION,
    errors.NotFound: NOT_FOUND,
    errors.FailedPrecondition: PRECONDITION,
    errors.ConfigError: None,
    errors.DataSourceError: None,
    errors.LocalProtocolError: None,
    errors.Unavailable: None,
    errors.DeadlineExceeded: None,
    errors.RemoteCallFailed: None,
}


def refusal_reason(exc: BaseException | None) -> str | None:
    """The refusal reason of a call that ended with `exc`, or None when it was no refusal."""
    if not isinstance(exc, errors.FedgateError):
        return None
    for cls in type(exc).__mro__:
        if cls in REFUSAL_BY_ERROR:
            return REFUSAL_BY_ERROR[cls]
    return None


_METHOD = re.compile(r"/?([A-Za-z_][A-Za-z0-9_.]{0,127}/[A-Za-z_][A-Za-z0-9_]{0,63})")
_STATUS_NAMES = frozenset(code.name for code in grpc.StatusCode)
AUDIT_KINDS = frozenset({"intent", "outcome", "alert"})
AUDIT_DECISIONS = frozenset({"allow", "deny", "error", "alert"})
# Query kinds as a department records them (fedgate.adapters: Admission.action).
QUERY_KINDS = frozenset({"query.count", "query.disclose", "query.match", "query.sum", "query.compare"})
_DEPARTMENT = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def rpc_method(method: str) -> str:
    """``/package.Service/Method`` as the conventions' ``rpc.method`` (``package.Service/Method``), or OTHER."""
    match = _METHOD.fullmatch(method)
    return match.group(1) if match else OTHER


def _closed(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


@dataclass(frozen=True)
class _Instruments:
    duration: metrics.Histogram
    refusals: metrics.Counter
    audit_appends: metrics.Counter
    disclosed_rows: metrics.Counter
    waiting: metrics.ObservableGauge


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instruments: _Instruments | None = None
        # Readers of the approvals store, by registration token (one per gateway in this process).
        self.waiting: dict[int, Callable[[], Mapping[str, int]]] = {}
        self.next_token = 0


_state = _State()


def install(provider: metrics.MeterProvider | None) -> None:
    """Create the instruments on `provider` (``fedgate.server.telemetry`` calls this); None: record nothing."""
    if provider is None:
        _state.instruments = None
        return
    meter = provider.get_meter(METER_NAME)
    _state.instruments = _Instruments(
        duration=meter.create_histogram(
            CALL_DURATION, unit="s", description="Duration of the RPCs this server served, by method and status.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_S)),
        refusals=meter.create_counter(
            REFUSALS, unit="{request}", description="Requests refused, by reason and method."),
        audit_appends=meter.create_counter(
            AUDIT_APPENDS, unit="{entry}", description="Entries appended to the audit log, by kind and decision."),
        disclosed_rows=meter.create_counter(
            DISCLOSED_ROWS, unit="{row}", description="Rows a department disclosed, by query kind."),
        waiting=meter.create_observable_gauge(
            APPROVALS_WAITING, callbacks=[_observe_waiting], unit="{request}",
            description="Held requests still waiting for the department's approval."),
    )


def record_call(method: str, code: grpc.StatusCode, seconds: float, reason: str | None) -> None:
    """One call served: its duration by method and status, and its refusal reason if it was refused."""
    inst = _state.instruments
    if inst is None:
        return
    name = rpc_method(method)
    inst.duration.record(max(seconds, 0.0), {"rpc.system.name": "grpc", "rpc.method": name,
                                             "rpc.response.status_code": _closed(code.name, _STATUS_NAMES)})
    if reason is not None:
        inst.refusals.add(1, {"fedgate.refusal.reason": _closed(reason, REASONS), "rpc.method": name})


def audit_kind(status: str, decision: str) -> str:
    """An entry's kind: ``intent`` (logged before a query touches data), ``alert``, or ``outcome``."""
    if status == "STARTED":
        return "intent"
    return "alert" if decision == "alert" else "outcome"


def record_audit_append(status: str, decision: str) -> None:
    """One entry appended to the audit log (its status and decision, never its content)."""
    inst = _state.instruments
    if inst is None:
        return
    inst.audit_appends.add(1, {"fedgate.audit.kind": _closed(audit_kind(status, decision), AUDIT_KINDS),
                               "fedgate.audit.decision": _closed(decision, AUDIT_DECISIONS)})


def record_disclosed_rows(kind: str, rows: int) -> None:
    """Rows a department disclosed for a query of `kind`."""
    inst = _state.instruments
    if inst is None or rows <= 0:
        return
    inst.disclosed_rows.add(rows, {"fedgate.query.kind": _closed(kind, QUERY_KINDS)})


def watch_approvals(read: Callable[[], Mapping[str, int]]) -> Callable[[], None]:
    """Report `read()` (requests waiting, by department) as the approvals gauge; returns the unregister function.

    `read` runs in the metric reader's thread at each collection. Gateway replicas sharing one store each
    report the same numbers: aggregate them with max, not sum. Within one process (tests), the largest
    reading per department wins for the same reason.
    """
    with _state.lock:
        token = _state.next_token
        _state.next_token += 1
        _state.waiting[token] = read

    def unregister() -> None:
        with _state.lock:
            _state.waiting.pop(token, None)

    return unregister


def _observe_waiting(options: CallbackOptions) -> Iterable[Observation]:
    with _state.lock:
        readers = list(_state.waiting.values())
    merged: dict[str, int] = {}
    for read in readers:
        try:
            counts = read()
        except Exception:  # a store shutting down, a database away: no reading this time
            log.warning("could not read the approvals waiting", exc_info=True)
            continue
        for department, n in counts.items():
            key = department if _DEPARTMENT.fullmatch(department) else OTHER
            merged[key] = max(merged.get(key, 0), n)
    return [Observation(n, {"fedgate.department": department}) for department, n in sorted(merged.items())]


def now() -> float:
    """The clock call durations are measured with."""
    return time.perf_counter()
