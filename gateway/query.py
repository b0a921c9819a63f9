"""Queries over department data: checked, logged, then asked of adapters with signed tickets.

The order is fixed and is the point: no adapter is contacted before the
request's entry is in the audit log, and every adapter gets a ticket proving it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from opentelemetry import trace

from fedgate.errors import InvalidInput, PermissionDenied
from fedgate.gateway.adapter_links import AdapterLinks, StaleTicket
from fedgate.gateway.audit import entry_for
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.registry import Registry
from fedgate.gateway.tickets import TicketIssuer
from fedgate.identity import Identity, Role
from fedgate.interceptors import RequestRecord
from fedgate.telemetry import safe_attributes

tracer = trace.get_tracer(__name__)
MAX_TEXT = 256
_CASE_NUMBER = re.compile(r"^[\w\-/()（）〔〕\[\]#.]{1,64}$")
TICKET_ATTEMPTS = 3


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


def require_supervisor(caller: Identity) -> None:
    if caller.role is not Role.SUPERVISOR:
        raise PermissionDenied(f"only supervisors may query department data (caller is {caller})")


class QueryEngine:
    def __init__(self, registry: Registry, links: AdapterLinks, log: AuditLog, tickets: TicketIssuer) -> None:
        self._registry = registry
        self._links = links
        self._log = log
        self._tickets = tickets

    async def _log_intent(self, record: RequestRecord) -> tuple[int, bytes]:
        """Append the pre-access entry; its index goes into every ticket."""
        record.query_id = secrets.token_hex(16)
        entry = entry_for(record, None, "")
        appended = await self._log.append(entry)
        return appended.index, entry.canonical()

    async def count_rows(self, caller: Identity, record: RequestRecord, dataset: str, why: Purpose) -> tuple[int, int]:
        """Live row count of one dataset; returns (rows, audit index of the query)."""
        record.action = "query.count"
        record.datasets = [dataset]
        record.purpose, record.case_number = why.purpose, why.case_number
        require_supervisor(caller)
        department, decl = await self._registry.locate(dataset)
        with tracer.start_as_current_span("audit.append_intent") as span:
            index, entry = await self._log_intent(record)
            span.set_attributes(safe_attributes(**{"fedgate.audit_index": index}))
        for attempt in range(TICKET_ATTEMPTS):
            with tracer.start_as_current_span("ticket.issue") as span:
                seen = await self._links.log_state(department.code, department.endpoint)
                ticket = await self._tickets.issue(department.code, record.query_id, index, entry, seen)
                span.set_attributes(safe_attributes(**{"fedgate.department": department.code,
                                                       "fedgate.base_size": seen, "fedgate.attempt": attempt}))
            try:
                rows = await self._links.count_rows(department.code, department.endpoint, ticket, decl.name)
                break
            except StaleTicket:
                if attempt == TICKET_ATTEMPTS - 1:
                    raise
        record.result_sizes["rows"] = rows
        return rows, index
