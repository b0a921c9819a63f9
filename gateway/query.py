"""Queries over department data: decided by policy, logged, then asked of adapters with signed tickets.

The order is fixed and is the point: policy and safeguards first, then the
pre-access audit entry, and only then any adapter, each with a ticket proving
the entry is in the log.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace

from fedgate import certified
from fedgate.crypto.compare import packing_for
from fedgate.crypto.paillier import PlaintextOverflow, check_sum_fits, ciphertext_bytes
from fedgate.crypto.ticket import Ticket
from fedgate.audit_entry import filter_digest, paillier_key_digest
from fedgate.datasets import DatasetDecl, FieldDecl, FieldGrant, FieldType
from fedgate.encryptors import MAX_VALUE_FIELDS, VALUE_BOUND
from fedgate.errors import (
    FailedPrecondition,
    InvalidInput,
    LocalProtocolError,
    QuotaExceeded,
    RemoteProtocolError,
)
from fedgate.filters import Filter, fields_of, parse_checked, redacted_text, to_text
from fedgate.gateway.adapter_links import AdapterLinks, StaleTicket
from fedgate.gateway.audit import entry_for
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.homomorphic import checked_key
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
from fedgate.query import protocols
from fedgate.query.match import Comparison, MatchPlan
from fedgate.query.sizes import Sizes, SizeCheck
from fedgate.gateway.policy import Policy, PolicyDenied
from fedgate.gateway.registry import Registry
from fedgate.gateway.registry_store import Department
from fedgate.gateway.safeguards import QuotaBook, Safeguards
from fedgate.gateway.tickets import Admissions, TicketIssuer
from fedgate.identity import Identity
from fedgate.interceptors import RequestRecord, log_outcome
from fedgate.row_limit import RowLimit, quota_rule
from fedgate.telemetry import safe_attributes
from fedgate.supervisor_keys import key_statement
from fedgate.worker_pool import WorkerPool

tracer = trace.get_tracer(__name__)
T = TypeVar("T")
MAX_TEXT = 256
_CASE_NUMBER = re.compile(r"^[\w\-/()（）〔〕\[\]#.]{1,64}$")
TICKET_ATTEMPTS = 3
MAX_DISCLOSE_ROWS = 10_000
# How long a comparison waits for the client's flagged pairs, holding the left department's stream open
# (`flags_timeout_s` in gateway.toml).
FLAGS_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Purpose:
    """Why a supervisor asks: a stated purpose and a case number (督查事项编号), both required."""

    purpose: str
    case_number: str

    def __post_init__(self) -> None:
        if not self.purpose.strip() or len(self.purpose) > MAX_TEXT:
            raise InvalidInput(f"a purpose (1–{MAX_TEXT} characters) is required for every query")
        if not _CASE_NUMBER.match(self.case_number):
            raise InvalidInput("a case number (督查事项编号) of 1–64 letters, digits or -/()[]#. is required")


@dataclass(frozen=True)
class MatchSideQuery:
    dataset: str
    key_field: str
    filter: str = ""


@dataclass(frozen=True)
class MatchQuery:
    left: MatchSideQuery
    right: MatchSideQuery
    mode: str = protocols.DEFAULT
    disclose_fields: list[str] = field(default_factory=list)
    limit: int = 100


@dataclass(frozen=True)
class SumQuery:
    values: MatchSideQuery
    value_fields: list[str]
    other: MatchSideQuery
    paillier_key: bytes
    mode: str = protocols.DEFAULT
    key_signature: bytes = b""
    supervisor_certificate: str = ""


@dataclass(frozen=True)
class CompareQuery:
    left: MatchSideQuery
    left_value: str
    right: MatchSideQuery
    right_value: str
    paillier_key: bytes
    left_weight: int = 1
    right_weight: int = 1
    mode: str = protocols.DEFAULT
    disclose_fields: list[str] = field(default_factory=list)
    limit: int = 100
    key_signature: bytes = b""
    supervisor_certificate: str = ""


@dataclass(frozen=True)
class Disclosed:
    fields: list[FieldGrant]
    rows: list[tuple[list[str], list[bool]]]
    matched_rows: int
    audit_index: int
    row_limit: RowLimit


@dataclass
class QueryOutcome(MatchOutcome):
    """A match's outcome and, when rows were disclosed, how many of those available and what cut them."""

    row_limit: RowLimit | None = None


class QueryEngine:
    def __init__(self, registry: Registry, links: AdapterLinks, log: AuditLog, tickets: TicketIssuer,
                 policy: Policy, safeguards: Safeguards, quotas: QuotaBook, pool: WorkerPool | None = None,
                 ca_pem: bytes = b"", idle_timeout_s: float = STREAM_IDLE_S,
                 flags_timeout_s: float = FLAGS_TIMEOUT_S) -> None:
        self._pool = pool or WorkerPool(0)
        self._idle_timeout_s = idle_timeout_s
        self._flags_timeout_s = flags_timeout_s
        self._ca_pem = ca_pem
        self._admissions = Admissions(log.store)
        self._registry = registry
        self._links = links
        self._log = log
        self._tickets = tickets
        self._policy = policy
        self._safeguards = safeguards
        self._quotas = quotas

    # --- steps every query goes through ---

    async def _begin(self, caller: Identity, record: RequestRecord, action: str, policy_action: str,
                     dataset: str, why: Purpose) -> tuple[Department, DatasetDecl, int | None]:
        """Name the request, decide it, charge the quota; returns the remaining row allowance."""
        record.action = action
        record.datasets = [dataset]
        record.purpose, record.case_number = why.purpose, why.case_number
        department, decl = await self._registry.locate(dataset)
        record.rule = self._policy.decide_for(caller, dataset, policy_action).require()
        return department, decl, self._quotas.charge_query(caller)

    def _filter(self, caller: Identity, record: RequestRecord, decl: DatasetDecl, text: str,
                role: str = "") -> tuple[Filter | None, str, bytes]:
        """Parse, type-check and authorise the filter; bind it into the record without its values.

        ``role`` (left/right) keeps a match's two sides apart when both are the same dataset.
        """
        where = parse_checked(text, decl.field_types)
        if where is None:
            return None, "", b""
        for name in sorted(fields_of(where)):
            field = decl.field(name)
            assert field is not None  # check() refused unknown fields
            self._policy.decide_for(caller, f"{decl.qualified_name}.{name}", "filter", field.level).require()
        canonical, nonce = to_text(where), secrets.token_bytes(16)
        side = f"{role}." if role else ""
        record.params[f"filter.{side}{decl.qualified_name}"] = redacted_text(where)
        record.params[f"filter_digest.{side}{decl.qualified_name}"] = filter_digest(nonce, canonical)
        return where, canonical, nonce

    async def _log_intent(self, record: RequestRecord) -> tuple[int, bytes]:
        """Append the pre-access entry; its index goes into every ticket."""
        record.query_id = secrets.token_hex(16)
        entry = entry_for(record, None, "")
        with tracer.start_as_current_span("audit.append_intent") as span:
            appended = await self._log.append(entry)
            span.set_attributes(safe_attributes(**{"fedgate.audit_index": appended.index}))
        return appended.index, entry.canonical()

    async def _ask(self, department: Department, record: RequestRecord, index: int, entry: bytes,
                   call: Callable[[Ticket, Callable[[], None]], Awaitable[T]]) -> T:
        """Call an adapter with a fresh ticket, re-issuing it if the adapter moved on meanwhile.

        The department's admission turn is held from the ticket's issue until
        the adapter reports it admitted (`call` gets the release).
        """
        for attempt in range(TICKET_ATTEMPTS):
            release = await self._admissions.acquire(department.code)
            try:
                ticket = await self._ticket(department.code, department.endpoint, record, index, entry, attempt)
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
            ticket = await self._tickets.issue(department, record.query_id, index, entry, seen)
            span.set_attributes(safe_attributes(**{"fedgate.department": department,
                                                   "fedgate.base_size": seen, "fedgate.attempt": attempt}))
        return ticket

    # --- queries ---

    async def count_rows(self, caller: Identity, record: RequestRecord, dataset: str, why: Purpose,
                         filter_text: str = "") -> tuple[int, int]:
        """Live row count of one dataset, optionally filtered; returns (rows, audit index)."""
        department, decl, _ = await self._begin(caller, record, "query.count", "count", dataset, why)
        where, canonical, nonce = self._filter(caller, record, decl, filter_text)
        # A count reveals about the fields it filters on: suppress small counts by their highest level.
        touched = self._policy.levels.highest([f.level for f in decl.fields if where and f.name in fields_of(where)])
        k = touched.min_aggregate if touched else 0
        record.params["min_aggregate"] = str(k)
        index, entry = await self._log_intent(record)
        rows = await self._ask(department, record, index, entry, lambda t, admitted: self._links.count_rows(
            department.code, department.endpoint, t, decl.name, canonical, nonce, admitted))
        record.result_sizes["rows"] = rows
        if 0 < rows < k:
            raise FailedPrecondition(f"count suppressed: fewer than {k} rows, the minimum aggregation size for "
                                     f"level {touched.name if touched else ''} (safeguard min_aggregate)")
        return rows, index

    async def _match_sides(self, caller: Identity, record: RequestRecord, action: str, left_q: MatchSideQuery,
                           right_q: MatchSideQuery, mode: str,
                           why: Purpose) -> tuple[list[tuple[Department, DatasetDecl]], SidePlan, SidePlan]:
        """Check and authorise both sides' keys and filters; the plans each adapter gets."""
        protocol = protocols.get(mode)
        record.action = action
        record.datasets = [left_q.dataset, right_q.dataset]
        record.purpose, record.case_number = why.purpose, why.case_number
        record.params["mode"] = mode
        sides = []
        for name, side in (("left", left_q), ("right", right_q)):
            department, decl = await self._registry.locate(side.dataset)
            key = decl.field(side.key_field)
            if key is None:
                raise InvalidInput(f"{name} dataset '{side.dataset}' has no field '{side.key_field}'")
            if key.key is None:
                raise InvalidInput(f"{name} field '{side.dataset}.{side.key_field}' is not a key field "
                                   "(declared with an identifier kind): it cannot be matched on")
            _add_rule(record, self._policy.decide_for(caller, f"{side.dataset}.{side.key_field}", "match",
                                                      key.level).require())
            record.params[f"key.{name}.{side.dataset}"] = side.key_field
            sides.append((department, decl, key))
        (ldept, ldecl, lkey), (rdept, rdecl, rkey) = sides
        assert lkey.key is not None and rkey.key is not None  # refused above otherwise
        if lkey.key != rkey.key:
            raise InvalidInput(f"the key fields hold different identifier kinds ({lkey.key} and "
                               f"{rkey.key}): they cannot match")
        record.fields = [f"{left_q.dataset}.{left_q.key_field}", f"{right_q.dataset}.{right_q.key_field}"]
        _, lcanon, lnonce = self._filter(caller, record, ldecl, left_q.filter, "left")
        _, rcanon, rnonce = self._filter(caller, record, rdecl, right_q.filter, "right")
        if protocol.needs_peer_key and rdept.matching_key is None:
            raise FailedPrecondition(f"department '{rdept.code}' registered no matching key; restart its adapter")
        left = SidePlan(ldept.code, ldept.endpoint, ldecl.name, left_q.key_field, lcanon, lnonce)
        right = SidePlan(rdept.code, rdept.endpoint, rdecl.name, right_q.key_field, rcanon, rnonce)
        return [(ldept, ldecl), (rdept, rdecl)], left, right

    async def _run_match(self, caller: Identity, record: RequestRecord, left: SidePlan, right: SidePlan,
                         mode: str, right_dept: Department, grants: list[FieldGrant], limit: int,
                         outcome: MatchOutcome, homomorphic: Homomorphic | None = None, *,
                         check_sizes: SizeCheck | None = None, comparison: Comparison | None = None,
                         flagged: Callable[[], Awaitable[list[int]]] | None = None) -> AsyncIterator[Any]:
        """Log the intent, then drive both adapters with fresh tickets; sizes go into the record."""
        min_set = self._safeguards.min_set_size
        record.params.update(min_set_size=str(min_set), limit=str(limit))
        index, entry = await self._log_intent(record)
        outcome.audit_index = index
        plan = MatchPlan(left, right, protocols.get(mode), check_sizes or _size_check(min_set), min_set,
                         self._safeguards.max_match_rows, tuple(grants), limit, right_dept.matching_key,
                         homomorphic, comparison)
        relay = Relay(self._links, self._admissions, self._pool, self._idle_timeout_s, self._flags_timeout_s)
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
                if attempt == TICKET_ATTEMPTS - 1 or outcome.left is not None:
                    raise
        _record_sizes(record, outcome)
        # The outcome is in the log before the result leaves (the caller yields it after this).
        await log_outcome(record)
        self._quotas.charge_rows(caller, len(outcome.rows))

    def _limit(self, caller: Identity, limit: int, grants: list[FieldGrant]) -> int:
        """The disclosure limit after the caller's remaining daily row quota."""
        if not 0 < limit <= MAX_DISCLOSE_ROWS:
            raise InvalidInput(f"limit must be between 1 and {MAX_DISCLOSE_ROWS}")
        allowance = self._quotas.charge_query(caller)
        limit = limit if allowance is None else min(limit, allowance)
        if grants and limit == 0:
            raise QuotaExceeded(f"daily disclosed-row quota used up (rule: {quota_rule(caller.role.value)})")
        return limit

    async def match(self, caller: Identity, record: RequestRecord, q: MatchQuery, why: Purpose,
                    outcome: QueryOutcome) -> AsyncIterator[Progress]:
        """Private matching of two datasets; progress while tokens flow, the result left in `outcome`."""
        sides, left, right = await self._match_sides(caller, record, "query.match", q.left, q.right, q.mode, why)
        (_, ldecl), (rdept, _) = sides
        grants = outcome.grants = self._grants(caller, record, ldecl, q.disclose_fields)
        record.fields += [f"{q.left.dataset}.{g.name}" for g in grants]
        limit = self._limit(caller, q.limit, grants)
        _note_limit(record, q.limit, limit)
        async for event in self._run_match(caller, record, left, right, q.mode, rdept, grants, limit, outcome):
            yield event
        if grants and outcome.intersection is not None:
            outcome.row_limit = RowLimit.of(outcome.intersection.cardinality, len(outcome.rows), q.limit, limit,
                                            quota_rule(caller.role.value))

    def _paillier_key(self, caller: Identity, record: RequestRecord, public_key: bytes, signature: bytes,
                      certificate: str) -> int:
        """The supervisor's key modulus, checked and vouched for by the caller; the log binds it by digest."""
        try:
            n = checked_key(public_key)
        except (RemoteProtocolError, LocalProtocolError) as exc:
            raise InvalidInput(f"the supervisor's Paillier public key is refused: {exc}") from None
        certified.verify(key_statement(caller.spiffe_id, public_key), signature, certificate, self._ca_pem, caller,
                         "the Paillier key")
        record.params["paillier_key_sha256"] = paillier_key_digest(public_key)
        record.params["paillier_key_bits"] = str(n.bit_length())
        return n

    def _value_fields(self, caller: Identity, record: RequestRecord, decl: DatasetDecl, names: list[str],
                      action: str, key_field: str, role: str) -> list[FieldDecl]:
        """Authorise integer fields to sum or compare, by their levels."""
        if not names or len(names) > MAX_VALUE_FIELDS or len(set(names)) != len(names):
            raise InvalidInput(f"name 1 to {MAX_VALUE_FIELDS} distinct integer fields to {action}")
        fields = []
        for name in names:
            field = decl.field(name)
            if field is None:
                raise InvalidInput(f"dataset '{decl.qualified_name}' has no field '{name}'")
            if field.type is not FieldType.INT or name == key_field:
                raise InvalidInput(f"field '{decl.qualified_name}.{name}' is a {field.type.value} field: only "
                                   f"integer fields (amounts in fen, counts) can be {action}ed")
            _add_rule(record, self._policy.decide_for(caller, f"{decl.qualified_name}.{name}", action,
                                                      field.level).require())
            record.fields.append(f"{decl.qualified_name}.{name}")
            fields.append(field)
        record.params[f"values.{role}.{decl.qualified_name}"] = ",".join(names)
        return fields

    async def intersection_sum(self, caller: Identity, record: RequestRecord, q: SumQuery, why: Purpose,
                               outcome: MatchOutcome) -> AsyncIterator[Any]:
        """Encrypted totals of value fields over the value holder's rows whose key is in the other set."""
        sides, left, right = await self._match_sides(caller, record, "query.sum", q.values, q.other, q.mode, why)
        (_, vdecl), (rdept, _) = sides
        n = self._paillier_key(caller, record, q.paillier_key, q.key_signature, q.supervisor_certificate)
        fields = self._value_fields(caller, record, vdecl, q.value_fields, "sum", q.values.key_field, "left")
        # Every value is a signed 64-bit integer (checked by its adapter): refuse a key whose plaintext
        # space could not hold the largest possible total of the largest allowed set.
        check_sum_fits(VALUE_BOUND, self._safeguards.max_match_rows, n)
        touched = self._policy.levels.highest([f.level for f in fields])
        k = touched.min_aggregate if touched else 0
        record.params["min_aggregate"] = str(k)
        self._limit(caller, 1, [])
        left = dataclasses.replace(left, value_fields=tuple(q.value_fields))
        homomorphic = Homomorphic("query.sum", q.paillier_key, ciphertext_bytes(n), False, q.key_signature,
                                  q.supervisor_certificate)

        check_sizes = _size_check(self._safeguards.min_set_size, k, touched.name if touched else "")
        async for event in self._run_match(caller, record, left, right, q.mode, rdept, [], 1, outcome,
                                           homomorphic, check_sizes=check_sizes):
            yield event

    async def compare(self, caller: Identity, record: RequestRecord, q: CompareQuery, why: Purpose,
                      outcome: QueryOutcome, flagged: Callable[[], Awaitable[list[int]]]) -> AsyncIterator[Any]:
        """Blinded comparisons a·x > b·y for every matched pair; then, if asked, disclose flagged left rows."""
        if not (0 < q.left_weight < 1 << 63 and 0 < q.right_weight < 1 << 63):
            raise InvalidInput("comparison weights must be positive 64-bit integers (e.g. 5 and 6 for x > 1.2·y)")
        sides, left, right = await self._match_sides(caller, record, "query.compare", q.left, q.right, q.mode, why)
        (_, ldecl), (rdept, rdecl) = sides
        n = self._paillier_key(caller, record, q.paillier_key, q.key_signature, q.supervisor_certificate)
        self._value_fields(caller, record, ldecl, [q.left_value], "compare", q.left.key_field, "left")
        self._value_fields(caller, record, rdecl, [q.right_value], "compare", q.right.key_field, "right")
        record.params["weights"] = f"{q.left_weight},{q.right_weight}"
        try:
            packing = packing_for(q.left_weight, q.right_weight, VALUE_BOUND, VALUE_BOUND, n)
        except PlaintextOverflow as exc:
            raise InvalidInput(f"comparison refused: {exc}") from None
        grants = outcome.grants = self._grants(caller, record, ldecl, q.disclose_fields)
        record.fields += [f"{q.left.dataset}.{g.name}" for g in grants]
        limit = self._limit(caller, q.limit, grants)
        _note_limit(record, q.limit, limit)
        left = dataclasses.replace(left, value_fields=(q.left_value,))
        right = dataclasses.replace(right, value_fields=(q.right_value,))
        homomorphic = Homomorphic("query.compare", q.paillier_key, ciphertext_bytes(n), True, q.key_signature,
                                  q.supervisor_certificate)

        comparison = Comparison(q.left_weight, q.right_weight, VALUE_BOUND, packing)
        async for event in self._run_match(caller, record, left, right, q.mode, rdept, grants, limit, outcome,
                                           homomorphic, comparison=comparison, flagged=flagged):
            yield event
        if outcome.flagged_rows is not None:
            outcome.row_limit = RowLimit.of(outcome.flagged_rows, len(outcome.rows), q.limit, limit,
                                            quota_rule(caller.role.value))

    def _grants(self, caller: Identity, record: RequestRecord, decl: DatasetDecl,
                fields: list[str]) -> list[FieldGrant]:
        """The form each requested field may leave in, or PolicyDenied for one that may not leave."""
        if len(set(fields)) != len(fields):
            raise InvalidInput("name each field to disclose once")
        grants, rules = [], [record.rule] if record.rule else []
        for name in fields:
            field = decl.field(name)
            if field is None:
                raise InvalidInput(f"dataset '{decl.qualified_name}' has no field '{name}'")
            form, decision = self._policy.disclosure_form(caller, f"{decl.qualified_name}.{name}", field.level)
            if form == "never":
                raise PolicyDenied(decision.rule)
            grants.append(FieldGrant(name, field.level, form))
            rules.append(decision.rule)
            record.params[f"form.{decl.qualified_name}.{name}"] = form
            record.params[f"level.{decl.qualified_name}.{name}"] = field.level
        record.rule = " | ".join(dict.fromkeys(rules))
        return grants

    async def disclose(self, caller: Identity, record: RequestRecord, dataset: str, fields: list[str],
                       why: Purpose, filter_text: str = "", limit: int = 100) -> Disclosed:
        """Fields of filtered rows in the form policy allows; refused below the minimum set size."""
        department, decl, allowance = await self._begin(caller, record, "query.disclose", "count", dataset, why)
        if not fields:
            raise InvalidInput("name at least one field to disclose")
        if not 0 < limit <= MAX_DISCLOSE_ROWS:
            raise InvalidInput(f"limit must be between 1 and {MAX_DISCLOSE_ROWS}")
        grants = self._grants(caller, record, decl, fields)
        record.fields = [f"{dataset}.{g.name}" for g in grants]
        where, canonical, nonce = self._filter(caller, record, decl, filter_text)
        requested = limit
        if allowance is not None:
            if allowance == 0:
                raise QuotaExceeded(f"daily disclosed-row quota used up (rule: {quota_rule(caller.role.value)})")
            limit = min(limit, allowance)
        min_set = self._safeguards.min_set_size
        record.params["min_set_size"] = str(min_set)
        record.params["limit"] = str(limit)
        _note_limit(record, requested, limit)
        index, entry = await self._log_intent(record)
        matched, rows = await self._ask(department, record, index, entry, lambda t, admitted: self._links.disclose(
            department.code, department.endpoint, t, decl.name, grants, canonical, nonce, min_set, limit, admitted))
        self._quotas.charge_rows(caller, len(rows))
        record.result_sizes.update(matched_rows=matched, disclosed_rows=len(rows))
        return Disclosed(grants, rows, matched, index,
                         RowLimit.of(matched, len(rows), requested, limit, quota_rule(caller.role.value)))


def _size_check(min_set: int, min_aggregate: int = 0, level: str = "") -> SizeCheck:
    """The sizes-phase safeguards: each side's set after its filter, then a sum's matched rows."""
    def check(sizes: Sizes) -> None:
        for name, rows in sizes.set_rows.items():
            if 0 < rows < min_set:
                raise FailedPrecondition(f"the {name} set has fewer than {min_set} rows after its filter "
                                         "(safeguard min_set_size): no result")
        if sizes.aggregated_rows is not None and 0 < sizes.aggregated_rows < min_aggregate:
            raise FailedPrecondition(f"sum suppressed: fewer than {min_aggregate} matched rows, the minimum "
                                     f"aggregation size for level {level} (safeguard min_aggregate)")
    return check


def _note_limit(record: RequestRecord, requested: int, applied: int) -> None:
    """Keep the limit asked for in the entry when a safeguard lowered it (params["limit"] is the applied one)."""
    if applied != requested:
        record.params["limit_requested"] = str(requested)


def _record_sizes(record: RequestRecord, outcome: MatchOutcome) -> None:
    """A match's sizes (sets, invalid keys, intersection, disclosed rows) into the record."""
    result = outcome.intersection
    assert result is not None and outcome.left and outcome.right
    record.result_sizes.update(left_rows=outcome.left.rows, right_rows=outcome.right.rows,
                               left_invalid=outcome.left.invalid_identifiers,
                               right_invalid=outcome.right.invalid_identifiers,
                               cardinality=result.cardinality, disclosed_rows=len(outcome.rows))
    if outcome.values:
        record.result_sizes.update(left_missing_values=outcome.left.missing_values,
                                   right_missing_values=outcome.right.missing_values)


def _add_rule(record: RequestRecord, rule: str) -> None:
    """Record every distinct rule a request was allowed by, in the order they were applied."""
    rules = [r for r in record.rule.split(" | ") if r] if record.rule else []
    record.rule = " | ".join(dict.fromkeys([*rules, rule]))
