"""Queries over department data: decided by policy, logged, then asked of adapters with signed tickets.

The order is fixed and is the point: policy and safeguards first, then the
pre-access audit entry, and only then any adapter, each with a ticket proving
the entry is in the log.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from opentelemetry import trace

from fedgate.crypto.ticket import Ticket
from fedgate.audit_entry import filter_digest
from fedgate.datasets import DatasetDecl, FieldGrant
from fedgate.errors import FailedPrecondition, InvalidInput, QuotaExceeded
from fedgate.filters import Filter, fields_of, parse_checked, redacted_text, to_text
from fedgate.gateway.adapter_links import AdapterLinks, StaleTicket
from fedgate.gateway.audit import entry_for
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.matching import MatchOutcome, Progress, SidePlan, run_match
from fedgate.gateway.policy import Policy, PolicyDenied
from fedgate.gateway.registry import Registry
from fedgate.gateway.registry_store import Department
from fedgate.gateway.safeguards import QuotaBook, Safeguards
from fedgate.gateway.tickets import TicketIssuer
from fedgate.identity import Identity
from fedgate.interceptors import RequestRecord
from fedgate.telemetry import safe_attributes

tracer = trace.get_tracer(__name__)
T = TypeVar("T")
MAX_TEXT = 256
_CASE_NUMBER = re.compile(r"^[\w\-/()（）〔〕\[\]#.]{1,64}$")
TICKET_ATTEMPTS = 3
MAX_DISCLOSE_ROWS = 10_000


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


MODES = ("keyed", "ecdh")


@dataclass(frozen=True)
class MatchSideQuery:
    dataset: str
    key_field: str
    filter: str = ""


@dataclass(frozen=True)
class MatchQuery:
    left: MatchSideQuery
    right: MatchSideQuery
    mode: str = "keyed"
    disclose_fields: list[str] = field(default_factory=list)
    limit: int = 100


@dataclass(frozen=True)
class Disclosed:
    fields: list[FieldGrant]
    rows: list[tuple[list[str], list[bool]]]
    matched_rows: int
    audit_index: int


class QueryEngine:
    def __init__(self, registry: Registry, links: AdapterLinks, log: AuditLog, tickets: TicketIssuer,
                 policy: Policy, safeguards: Safeguards, quotas: QuotaBook) -> None:
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

    def _filter(self, caller: Identity, record: RequestRecord, decl: DatasetDecl, text: str) -> tuple[Filter | None, str, bytes]:
        """Parse, type-check and authorise the filter; bind it into the record without its values."""
        where = parse_checked(text, decl.field_types)
        if where is None:
            return None, "", b""
        for name in sorted(fields_of(where)):
            field = decl.field(name)
            assert field is not None  # check() refused unknown fields
            self._policy.decide_for(caller, f"{decl.qualified_name}.{name}", "filter", field.level).require()
        canonical, nonce = to_text(where), secrets.token_bytes(16)
        record.params[f"filter.{decl.qualified_name}"] = redacted_text(where)
        record.params[f"filter_digest.{decl.qualified_name}"] = filter_digest(nonce, canonical)
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
                   call: Callable[[Ticket], Awaitable[T]]) -> T:
        """Call an adapter with a fresh ticket, re-issuing it if the adapter moved on meanwhile."""
        for attempt in range(TICKET_ATTEMPTS):
            with tracer.start_as_current_span("ticket.issue") as span:
                seen = await self._links.log_state(department.code, department.endpoint)
                ticket = await self._tickets.issue(department.code, record.query_id, index, entry, seen)
                span.set_attributes(safe_attributes(**{"fedgate.department": department.code,
                                                       "fedgate.base_size": seen, "fedgate.attempt": attempt}))
            try:
                return await call(ticket)
            except StaleTicket:
                if attempt == TICKET_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

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
        rows = await self._ask(department, record, index, entry, lambda t: self._links.count_rows(
            department.code, department.endpoint, t, decl.name, canonical, nonce))
        record.result_sizes["rows"] = rows
        if 0 < rows < k:
            raise FailedPrecondition(f"count suppressed: fewer than {k} rows, the minimum aggregation size for "
                                     f"level {touched.name if touched else ''} (safeguard min_aggregate)")
        return rows, index

    async def match(self, caller: Identity, record: RequestRecord, q: MatchQuery, why: Purpose,
                    outcome: MatchOutcome) -> AsyncIterator[Progress]:
        """Private matching of two datasets; progress while tokens flow, the result left in `outcome`."""
        if q.mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
        if not 0 < q.limit <= MAX_DISCLOSE_ROWS:
            raise InvalidInput(f"limit must be between 1 and {MAX_DISCLOSE_ROWS}")
        record.action = "query.match"
        record.datasets = [q.left.dataset, q.right.dataset]
        record.purpose, record.case_number = why.purpose, why.case_number
        record.params["mode"] = q.mode
        sides = []
        for name, side in (("left", q.left), ("right", q.right)):
            department, decl = await self._registry.locate(side.dataset)
            key = decl.field(side.key_field)
            if key is None:
                raise InvalidInput(f"{name} dataset '{side.dataset}' has no field '{side.key_field}'")
            if key.key is None:
                raise InvalidInput(f"{name} field '{side.dataset}.{side.key_field}' is not a key field "
                                   "(declared with an identifier kind): it cannot be matched on")
            record.rule = self._policy.decide_for(caller, f"{side.dataset}.{side.key_field}", "match",
                                                  key.level).require()
            record.params[f"key.{side.dataset}"] = side.key_field
            sides.append((department, decl, key))
        (ldept, ldecl, lkey), (rdept, rdecl, rkey) = sides
        if lkey.key != rkey.key:
            raise InvalidInput(f"the key fields hold different identifier kinds ({lkey.key.value} and "
                               f"{rkey.key.value}): they cannot match")
        grants = outcome.grants = self._grants(caller, record, ldecl, q.disclose_fields)
        record.fields = [f"{q.left.dataset}.{q.left.key_field}", f"{q.right.dataset}.{q.right.key_field}",
                         *(f"{q.left.dataset}.{g.name}" for g in grants)]
        _, lcanon, lnonce = self._filter(caller, record, ldecl, q.left.filter)
        _, rcanon, rnonce = self._filter(caller, record, rdecl, q.right.filter)
        if q.mode == "keyed" and rdept.matching_key is None:
            raise FailedPrecondition(f"department '{rdept.code}' registered no matching key; restart its adapter")
        allowance = self._quotas.charge_query(caller)
        limit = q.limit if allowance is None else min(q.limit, allowance)
        if grants and limit == 0:
            raise QuotaExceeded(f"daily disclosed-row quota used up (rule: quotas.{caller.role.value}"
                                ".disclosed_rows_per_day)")
        min_set = self._safeguards.min_set_size
        record.params.update(min_set_size=str(min_set), limit=str(limit))
        index, entry = await self._log_intent(record)
        left = SidePlan(ldept.code, ldept.endpoint, ldecl.name, q.left.key_field, lcanon, lnonce)
        right = SidePlan(rdept.code, rdept.endpoint, rdecl.name, q.right.key_field, rcanon, rnonce)
        for attempt in range(TICKET_ATTEMPTS):
            try:
                tickets = []
                for plan in (left, right):
                    seen = await self._links.log_state(plan.department, plan.endpoint)
                    tickets.append(await self._tickets.issue(plan.department, record.query_id, index, entry, seen))
                async for event in run_match(self._links, left, right, q.mode, (tickets[0], tickets[1]),
                                             rdept.matching_key, min_set, grants, limit,
                                             self._safeguards.max_match_rows, outcome):
                    yield event
                break
            except StaleTicket:
                if attempt == TICKET_ATTEMPTS - 1 or outcome.left is not None:
                    raise
        result = outcome.intersection
        assert result is not None and outcome.left and outcome.right
        record.result_sizes.update(left_rows=outcome.left.rows, right_rows=outcome.right.rows,
                                   left_invalid=outcome.left.invalid_identifiers,
                                   right_invalid=outcome.right.invalid_identifiers,
                                   cardinality=result.cardinality, disclosed_rows=len(outcome.rows))
        self._quotas.charge_rows(caller, len(outcome.rows))
        outcome.audit_index = index

    def _grants(self, caller: Identity, record: RequestRecord, decl: DatasetDecl, fields: list[str]) -> list[FieldGrant]:
        """The form each requested field may leave in, or PolicyDenied for one that may not leave."""
        if len(set(fields)) != len(fields):
            raise InvalidInput("name each field to disclose once")
        grants, rules = [], [record.rule]
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
        if allowance is not None:
            if allowance == 0:
                raise QuotaExceeded(f"daily disclosed-row quota used up (rule: quotas.{caller.role.value}"
                                    ".disclosed_rows_per_day)")
            limit = min(limit, allowance)
        min_set = self._safeguards.min_set_size
        record.params["min_set_size"] = str(min_set)
        record.params["limit"] = str(limit)
        index, entry = await self._log_intent(record)
        matched, rows = await self._ask(department, record, index, entry, lambda t: self._links.disclose(
            department.code, department.endpoint, t, decl.name, grants, canonical, nonce, min_set, limit))
        self._quotas.charge_rows(caller, len(rows))
        record.result_sizes.update(matched_rows=matched, disclosed_rows=len(rows))
        return Disclosed(grants, rows, matched, index)
