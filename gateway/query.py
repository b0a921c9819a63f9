"""Queries over department data: decided by policy, logged, then asked of adapters with signed tickets.

The order is fixed and is the point: planning (policy and the ADMIT safeguards,
`gateway/planning.py`) first, then the pre-access audit entry, and only then any
adapter, each with a ticket proving the entry is in the log. One-dataset kinds
(count, disclose, ...: `fedgate.query.kinds`) run through one pump, `one_dataset`;
matches run as the machines of `fedgate.query.match`.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import trace

from fedgate.crypto.compare import packing_for
from fedgate.crypto.paillier import PlaintextOverflow, check_sum_fits, ciphertext_bytes
from fedgate.crypto.ticket import Ticket
from fedgate.core.datasets import DatasetDecl, FieldDecl, FieldGrant
from fedgate.core.encryptors import VALUE_BOUND
from fedgate.core.errors import FailedPrecondition, InvalidInput
from fedgate.gateway.adapter_links import AdapterLinks, StaleTicket
from fedgate.gateway.approvals import ApprovalDesk
from fedgate.gateway.audit import entry_for
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.matching import (
    STREAM_IDLE_S,
    ComparisonsSent as ComparisonsSent,  # the servicer reads these results from here
    Flagged,
    Homomorphic,
    MatchOutcome,
    PackedResults as PackedResults,
    Progress,
    Relay,
    ResultsReady,
    SidePlan,
    run_match,
)
from fedgate.gateway.planning import (
    CompareQuery,
    Decisions,
    MatchQuery,
    MatchSideQuery,
    Planner,
    Purpose,
    SumQuery,
    logged_params,
)
from fedgate.gateway.registry import Registry
from fedgate.gateway.registry_store import Department
from fedgate.gateway.tickets import Admissions, TicketIssuer
from fedgate.core.identity import Identity
from fedgate.server.interceptors import RequestRecord, log_outcome
from fedgate.query import protocols
from fedgate.query.audit_params import QueryParams
from fedgate.query.kinds.base import AdapterCall, Answer, Counted, DepartmentAsk, Query, RowsDisclosed, Target
from fedgate.query.match import Comparison, MatchPlan
from fedgate.query.noise import from_micro, to_micro
from fedgate.query.probing import SUPPRESSED_SIZE
from fedgate.query.safeguards import Release, Request
from fedgate.core.row_limit import RowLimit, quota_rule
from fedgate.server.telemetry import safe_attributes
from fedgate.server.worker_pool import WorkerPool
from fedgate.gateway.spill import SpillConfig

__all__ = ["CompareQuery", "ComparisonsSent", "Decisions", "Asking", "MatchQuery", "MatchSideQuery",
           "PackedResults", "Purpose", "QueryEngine", "QueryOutcome", "SumQuery", "Timeouts"]

tracer = trace.get_tracer(__name__)
T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")
TICKET_ATTEMPTS = 3
# How long a comparison waits for the client's flagged pairs, holding the left department's stream open
# (`flags_timeout_s` in gateway.toml).
FLAGS_TIMEOUT_S = 300.0


@dataclass
class QueryOutcome(MatchOutcome):
    """A match's outcome and, when rows were disclosed, how many of those available and what cut them."""

    row_limit: RowLimit | None = None


@dataclass(frozen=True)
class Asking:
    """What asking a department takes: where it is, the log every ask is bound to, and its tickets."""

    registry: Registry
    links: AdapterLinks
    log: AuditLog
    tickets: TicketIssuer
    approvals: ApprovalDesk | None = None  # None: department rules are not applied (tools, benchmarks)


@dataclass(frozen=True)
class Timeouts:
    adapter_idle_s: float = STREAM_IDLE_S   # a match stream its adapter sends nothing on
    flags_s: float = FLAGS_TIMEOUT_S        # a comparison's wait for the client's flagged pairs


class QueryEngine:
    """The pump: plans each query, logs it, asks the departments and feeds their answers to its machine."""

    def __init__(self, decisions: Decisions, asking: Asking, pool: WorkerPool | None = None,
                 timeouts: Timeouts = Timeouts(), spill: SpillConfig | None = None) -> None:
        self._decisions = decisions
        self._spill = spill
        self._planner = Planner(decisions, asking.registry)
        self._pool = pool or WorkerPool(0)
        self._idle_timeout_s = timeouts.adapter_idle_s
        self._flags_timeout_s = timeouts.flags_s
        self._admissions = Admissions(asking.log.store)
        self._links = asking.links
        self._log = asking.log
        self._tickets = asking.tickets
        self._approvals = asking.approvals
        # The configured values, for the checks made before a plan exists (a Paillier key's room for a sum).
        self._safeguards = decisions.safeguards.config

    # --- steps every query goes through ---

    async def _log_intent(self, record: RequestRecord) -> tuple[int, bytes]:
        """Append the pre-access entry; its index goes into every ticket.

        The departments' own rules apply here, to the request as it will be logged: one may refuse it
        (nothing is logged but the refusal), or hold it for approval (logged, then AwaitingApproval). A
        collected request that was approved is not logged again: its tickets carry the held entry.
        """
        if record.collect_query_id and self._approvals is not None:
            index, body, record.approvals = await self._approvals.collect(record, entry_for(record, None, ""))
            return index, body
        if record.collect_query_id:
            raise FailedPrecondition("this gateway holds no requests for approval")
        record.query_id = secrets.token_hex(16)
        needs = {}
        if self._approvals is not None:
            needs = await self._approvals.screen(record, entry_for(record, None, ""))
        entry = entry_for(record, None, "")
        with tracer.start_as_current_span("audit.append_intent") as span:
            appended = await self._log.append(entry)
            span.set_attributes(safe_attributes(**{"fedgate.audit_index": appended.index}))
        if needs and self._approvals is not None:
            raise await self._approvals.hold(record, appended.index, needs)
        return appended.index, entry.canonical()

    async def _ask(self, target: Target, record: RequestRecord, index: int, entry: bytes,
                   call: Callable[[Ticket, Callable[[], None]], Awaitable[T]]) -> T:
        """Call an adapter with a fresh ticket, re-issuing it if the adapter moved on meanwhile.

        The department's admission turn is held from the ticket's issue until
        the adapter reports it admitted (`call` gets the release).
        """
        for attempt in range(TICKET_ATTEMPTS):
            release = await self._admissions.acquire(target.department)
            try:
                ticket = await self._ticket(target.department, target.endpoint, record, index, entry, attempt)
                return await call(ticket, release)
            except StaleTicket:
                if attempt == TICKET_ATTEMPTS - 1:
                    raise
            finally:
                release()
        raise AssertionError("unreachable")

    async def _ticket(self, department: str, endpoint: str, record: RequestRecord, index: int, entry: bytes,
                      attempt: int = 0) -> Ticket:
        """A ticket for `department`, proving consistency from the checkpoint it accepted last."""
        with tracer.start_as_current_span("ticket.issue") as span:
            seen = await self._links.log_state(department, endpoint)
            approvals = record.approvals.get(department, ())
            ticket = await self._tickets.issue(department, record.query_id, index, entry, seen, approvals)
            span.set_attributes(safe_attributes(**{"fedgate.department": department,
                                                   "fedgate.base_size": seen, "fedgate.attempt": attempt}))
        return ticket

    # --- one-dataset query kinds (count, disclose, ...) ---

    async def one_dataset(self, caller: Identity, record: RequestRecord, query: Query[P, R],
                          why: Purpose) -> tuple[R, int]:
        """Plan a one-dataset query, log it, ask its department with a ticket and feed the answer to its
        machine; returns the result and the audit index."""
        with logged_params(record) as params:
            plan, admitted = await query.plan(self._planner.steps(caller, record, params, why))
        machine = query.machine(plan, self._decisions.safeguards.size_check(admitted))
        index, entry = await self._log_intent(record)
        ask = machine.ask()
        answer = await self._ask(ask.target, record, index, entry,
                                 lambda ticket, admitted: self._department_call(ask, ticket, admitted))
        record.result_sizes.update(answer.sizes())
        result = machine.receive(answer)
        if machine.suppressed:
            record.result_sizes[SUPPRESSED_SIZE] = 1  # for the probing alerts (fedgate/query/probing.py)
        if machine.released_rows is not None:
            # RELEASE: the rows are charged to the caller's daily quota before they leave.
            self._decisions.safeguards.release(Release(params, rows=machine.released_rows, caller=caller))
        return result, index

    async def _department_call(self, ask: DepartmentAsk, ticket: Ticket, admitted: Callable[[], None]) -> Answer:
        """The one place a plan's named call becomes an adapter call."""
        t = ask.target
        match ask.call:
            case AdapterCall.COUNT_ROWS:
                return Counted(*await self._links.count_rows(t.department, t.endpoint, ticket, t.dataset,
                                                             ask.filter.canonical, ask.filter.nonce, admitted,
                                                             ask.min_set_size))
            case AdapterCall.DISCLOSE:
                matched, rows = await self._links.disclose(t.department, t.endpoint, ticket, t.dataset,
                                                           list(ask.grants), ask.filter.canonical, ask.filter.nonce,
                                                           ask.min_set_size, ask.limit, admitted)
                return RowsDisclosed(matched, rows)

    # --- matching two datasets ---

    async def _run_match(self, caller: Identity, record: RequestRecord, params: QueryParams, left: SidePlan,
                         right: SidePlan, mode: str, right_dept: Department, grants: list[FieldGrant], limit: int,
                         outcome: MatchOutcome, admitted: Request, homomorphic: Homomorphic | None = None, *,
                         comparison: Comparison | None = None, epsilon: float = 0.0,
                         flagged: Callable[[], Awaitable[list[int]]] | None = None) -> AsyncIterator[Any]:
        """Log the intent, then drive both adapters with fresh tickets; sizes go into the record."""
        index, entry = await self._log_intent(record)
        outcome.audit_index = index
        check_sizes = self._decisions.safeguards.size_check(admitted)
        plan = MatchPlan(left, right, protocols.get(mode), check_sizes, params.min_set_size or 0,
                         params.max_match_rows or 0, tuple(grants), limit, right_dept.matching_key,
                         homomorphic, comparison, epsilon)
        relay = Relay(self._links, self._admissions, self._pool, self._idle_timeout_s, self._flags_timeout_s,
                      self._spill.for_query(record.query_id) if self._spill is not None else None)
        for attempt in range(TICKET_ATTEMPTS):
            try:
                async def ticket_for(plan: SidePlan, attempt: int = attempt) -> Ticket:
                    return await self._ticket(plan.department, plan.endpoint, record, index, entry, attempt)

                async for event in run_match(relay, plan, outcome, ticket_for, flagged):
                    if isinstance(event, ResultsReady):
                        # The flags are results: logged before the first leaves. Flagged rows, if asked for,
                        # are logged again before they leave (below).
                        record.result_sizes["pairs"] = event.pairs
                        _record_sizes(record, outcome)
                        await log_outcome(record, "" if not grants else "comparison results sent; the flagged "
                                          "rows disclosed, if any, are in the next entry of this query",
                                          final=not grants)
                    elif isinstance(event, Flagged):
                        record.result_sizes["flagged_pairs"] = event.pairs
                    else:
                        yield event
                break
            except StaleTicket:
                # Only a match no department admitted yet starts again: an admitted ticket is spent (single use).
                if attempt == TICKET_ATTEMPTS - 1 or outcome.admitted:
                    raise
        _record_sizes(record, outcome)
        # The outcome is in the log before the result leaves (the caller yields it after this).
        await log_outcome(record)
        # RELEASE: the disclosed rows are charged to the caller's daily quota before they leave.
        self._decisions.safeguards.release(Release(params, rows=len(outcome.rows), caller=caller))

    async def match(self, caller: Identity, record: RequestRecord, q: MatchQuery, why: Purpose,
                    outcome: QueryOutcome) -> AsyncIterator[Progress]:
        """Private matching of two datasets; progress while tokens flow, the result left in `outcome`."""
        with logged_params(record) as params:
            sides, left, right, filter_levels = await self._planner.match_sides(
                caller, record, params, "query.match", q.left, q.right, q.mode, why)
            (_, ldecl), (rdept, rdecl) = sides
            # The cardinality reveals about both key fields: it must reach their highest min_aggregate.
            key_levels = _levels(ldecl, q.left.key_field, rdecl, q.right.key_field)
            grants, limit, admitted = self._planner.matched_rows(caller, record, params, "match", ldecl,
                                                              q.disclose_fields, q.limit, key_levels)
            outcome.grants = grants
            # A cardinality alone is an aggregate, answered with noise where levels.toml says so. Rows disclosed
            # show their own number, so a disclosing match is governed by the disclosure safeguards instead.
            epsilon = 0.0 if grants else self._planner.noise(
                caller, record, [ldecl.qualified_name, rdecl.qualified_name], key_levels + filter_levels)
            if epsilon:
                params.noise_epsilon_micro = to_micro(epsilon)
        async for event in self._run_match(caller, record, params, left, right, q.mode, rdept, grants, limit, outcome,
                                           admitted, epsilon=epsilon):
            yield event
        if grants and outcome.intersection is not None and not outcome.fewer_than:
            outcome.row_limit = RowLimit.of(outcome.intersection.cardinality, len(outcome.rows), q.limit, limit,
                                            quota_rule(caller.role.value))

    async def intersection_sum(self, caller: Identity, record: RequestRecord, q: SumQuery, why: Purpose,
                               outcome: MatchOutcome) -> AsyncIterator[Any]:
        """Encrypted totals of value fields over the value holder's rows whose key is in the other set."""
        with logged_params(record) as params:
            sides, left, right, filter_levels = await self._planner.match_sides(
                caller, record, params, "query.sum", q.values, q.other, q.mode, why)
            (_, vdecl), (rdept, odecl) = sides
            n = self._planner.paillier_key(caller, params, q.paillier_key, q.key_signature, q.supervisor_certificate)
            fields = self._planner.value_fields(caller, record, params, vdecl, q.value_fields, "sum",
                                                q.values.key_field, "left")
            # Every value is a signed 64-bit integer (checked by its adapter): refuse a key whose plaintext
            # space could not hold the largest possible total of the largest allowed set.
            check_sum_fits(VALUE_BOUND, self._safeguards.max_match_rows, n)
            admitted = self._planner.admit(caller, params, "sum", aggregate_levels=tuple(f.level for f in fields))
            params.limit = 1  # one row of totals
            epsilon = self._sum_noise(caller, record, params, vdecl, odecl, fields,
                                      _levels(vdecl, q.values.key_field, odecl, q.other.key_field) + filter_levels)
            if epsilon:
                outcome.total_sensitivity = [f.sensitivity for f in fields]
        left = dataclasses.replace(left, value_fields=tuple(q.value_fields))
        async for event in self._run_match(caller, record, params, left, right, q.mode, rdept, [], 1, outcome,
                                           admitted, _homomorphic("query.sum", q, n), epsilon=epsilon):
            yield event

    def _sum_noise(self, caller: Identity, record: RequestRecord, params: QueryParams, values: DatasetDecl,
                   other: DatasetDecl, fields: list[FieldDecl], levels: tuple[str, ...]) -> float:
        """A sum's ε per noisy number (0.0: exact), its budget charged; a noisy sum logs its fields' bounds.

        A sum releases its cardinality and one total per field: the answer's ε is split evenly among them
        (sequential composition), and each total's noise is scaled to its field's bounds by the department."""
        levels = tuple(f.level for f in fields) + levels
        datasets = [values.qualified_name, other.qualified_name]
        if not self._planner.noisy(datasets, levels):
            return 0.0
        unbounded = [f.name for f in fields if f.bounds is None]
        if unbounded:
            # Before the charge: a query that cannot be answered costs no budget.
            raise FailedPrecondition(
                f"a sum of {values.qualified_name} is answered with noise, which needs each summed field's range: "
                f"field(s) {', '.join(unbounded)} declare no bounds (`min` and `max` in the department's dataset "
                "declaration)")
        epsilon = self._planner.noise(caller, record, datasets, levels) / (len(fields) + 1)
        if not epsilon:  # the policies changed since `noisy` looked
            return 0.0
        params.noise_epsilon_micro = to_micro(epsilon)
        params.side(values.qualified_name, "left").bounds = {f.name: f.bounds for f in fields if f.bounds}
        return from_micro(to_micro(epsilon))

    async def compare(self, caller: Identity, record: RequestRecord, q: CompareQuery, why: Purpose,
                      outcome: QueryOutcome, flagged: Callable[[], Awaitable[list[int]]]) -> AsyncIterator[Any]:
        """Blinded comparisons a·x > b·y for every matched pair; then, if asked, disclose flagged left rows."""
        with logged_params(record) as params:
            sides, left, right, _ = await self._planner.match_sides(caller, record, params, "query.compare", q.left,
                                                                    q.right, q.mode, why)
            (_, ldecl), (rdept, rdecl) = sides
            n = self._planner.paillier_key(caller, params, q.paillier_key, q.key_signature, q.supervisor_certificate)
            self._planner.value_fields(caller, record, params, ldecl, [q.left_value], "compare", q.left.key_field,
                                       "left")
            self._planner.value_fields(caller, record, params, rdecl, [q.right_value], "compare",
                                       q.right.key_field, "right")
            params.weights = (q.left_weight, q.right_weight)
            a, b = self._planner.weights(caller, record, f"{ldecl.qualified_name}.{q.left_value}",
                                         f"{rdecl.qualified_name}.{q.right_value}", (q.left_weight, q.right_weight))
            try:
                packing = packing_for(a, b, VALUE_BOUND, VALUE_BOUND, n)
            except PlaintextOverflow as exc:
                raise InvalidInput(f"comparison refused: {exc}") from None
            # The pairs reveal about both compared fields: fewer than their highest min_aggregate are refused.
            grants, limit, admitted = self._planner.matched_rows(caller, record, params, "compare", ldecl,
                                                              q.disclose_fields, q.limit,
                                                              _levels(ldecl, q.left_value, rdecl, q.right_value))
            outcome.grants = grants
        left = dataclasses.replace(left, value_fields=(q.left_value,))
        right = dataclasses.replace(right, value_fields=(q.right_value,))

        comparison = Comparison(a, b, VALUE_BOUND, packing)
        async for event in self._run_match(caller, record, params, left, right, q.mode, rdept, grants, limit, outcome,
                                           admitted, _homomorphic("query.compare", q, n, pairs=True),
                                           comparison=comparison, flagged=flagged):
            yield event
        if outcome.flagged_rows is not None:
            outcome.row_limit = RowLimit.of(outcome.flagged_rows, len(outcome.rows), q.limit, limit,
                                            quota_rule(caller.role.value))


def _levels(left: DatasetDecl, left_field: str, right: DatasetDecl, right_field: str) -> tuple[str, ...]:
    """The levels of one field on each side (both were checked to exist while planning)."""
    fields = (left.field(left_field), right.field(right_field))
    return tuple(f.level for f in fields if f is not None)


def _homomorphic(action: str, q: SumQuery | CompareQuery, n: int, pairs: bool = False) -> Homomorphic:
    """What a sum or comparison adds to its match: the supervisor's vouched key, ciphertexts of its size."""
    return Homomorphic(action, q.paillier_key, ciphertext_bytes(n), pairs, q.key_signature, q.supervisor_certificate)


def _record_sizes(record: RequestRecord, outcome: MatchOutcome) -> None:
    """A match's sizes (sets, invalid keys, intersection, disclosed rows) into the record."""
    result = outcome.intersection
    assert result is not None and outcome.left and outcome.right
    record.result_sizes.update(left_rows=outcome.left.rows, right_rows=outcome.right.rows,
                               left_invalid=outcome.left.invalid_identifiers,
                               right_invalid=outcome.right.invalid_identifiers,
                               cardinality=result.cardinality, disclosed_rows=len(outcome.rows))
    if outcome.fewer_than:
        record.result_sizes[SUPPRESSED_SIZE] = 1  # for the probing alerts (fedgate/query/probing.py)
    if outcome.values:
        record.result_sizes.update(left_missing_values=outcome.left.missing_values,
                                   right_missing_values=outcome.right.missing_values)
