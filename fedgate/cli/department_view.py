"""A department's view of every request for its data: the gateway's entries and its own log, reconciled.

The gateway's audit entries about the department's datasets and the records of
its own disclosure log are joined by query id. A request shows what each side
recorded, and a flag where one side holds what the other lacks:

- the gateway logged a query on the department's data as served (pre-access
  entry, then an OK outcome: a ticket was admitted), but the department's log
  has no record of it, or no served record;
- the department's log has a record for a query id the gateway never logged.

A request the gateway refused before logging its intent never reached the
department (no query id, no ticket): it is listed, never flagged. One the
gateway refused or failed after its intent may or may not have reached the
department, so a missing department record there is noted, not flagged.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table as RichTable

from fedgate.adapters.disclosure_log import Disclosure, read_disclosures
from fedgate.client.gateway import GatewayClient
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import FedgateError
from fedgate.core.identity import who
from fedgate.query.audit_params import decode

QUERY_ACTIONS = ("query.count", "query.disclose", "query.match", "query.sum", "query.compare")
STARTED = "STARTED"
MISSING_AT_DEPARTMENT = "served by the gateway's log, but the department's log has no record of it"
NOT_SERVED_AT_DEPARTMENT = "served by the gateway's log, but the department's log has no served record"
DECIDE_ACTION = "approval.decide"
AWAITING_SIZE = "awaiting_approval"  # the outcome of a request held for approval: approvals still missing
MISSING_AT_GATEWAY = "in the department's log, but the gateway's log has no entry for this query"
MAX_ENTRIES = 10_000  # the most one audit search returns


class State(enum.StrEnum):
    """Where a request stands, as one record says."""

    SERVED = "served"
    REFUSED = "refused"
    FAILED = "failed"
    IN_PROGRESS = "in progress"
    # Held by a department's rules, waiting for its approvers (gateway/approvals.py).
    PENDING = "pending"
    ABSENT = "-"


@dataclass(frozen=True)
class Request:
    """One request for the department's data, with what each record says about it."""

    query_id: str
    time: str
    agency: str
    supervisor: str
    purpose: str
    case_number: str
    kind: str
    datasets: tuple[str, ...]
    fields: tuple[str, ...]          # "dataset.field:form" for each field released from the department
    rows: int | None                 # rows the department served (its own count), else the gateway's
    gateway: State
    department: str                  # the department's last decision (admitted, served, refused, stopped) or "-"
    reason: str
    audit_indexes: tuple[int, ...]
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "time": self.time, "agency": self.agency, "supervisor": self.supervisor,
                "purpose": self.purpose, "case_number": self.case_number, "kind": self.kind,
                "datasets": list(self.datasets), "fields": list(self.fields), "rows": self.rows,
                "gateway": self.gateway.value, "department": self.department, "reason": self.reason,
                "audit_indexes": list(self.audit_indexes), "flags": list(self.flags), "notes": list(self.notes)}


@dataclass
class _Group:
    entries: list[tuple[int, AuditEntry]] = field(default_factory=list)
    records: list[Disclosure] = field(default_factory=list)
    decisions: list[AuditEntry] = field(default_factory=list)  # approvers' decisions on it, as logged


def reconcile(department: str, entries: Iterable[tuple[int, AuditEntry]], records: Iterable[Disclosure],
              since: str = "") -> list[Request]:
    """Every request for `department`'s data, oldest first, from both records, with flags where they differ.

    `entries` are the gateway's (index, entry) about the department's datasets; `records` its disclosure log.
    `since`: the earliest time the gateway's entries cover (RFC 3339); older department records are left out
    rather than flagged, since the gateway's entries for them were not read.
    """
    groups: dict[str, _Group] = {}
    decisions: dict[str, list[AuditEntry]] = {}
    for index, entry in entries:
        if entry.action in QUERY_ACTIONS and _names(entry, department):
            groups.setdefault(entry.query_id or f"#{index}", _Group()).entries.append((index, entry))
        elif entry.action == DECIDE_ACTION and entry.decision == "allow" and entry.query_id:
            decisions.setdefault(entry.query_id, []).append(entry)
    for record in records:
        if since and record.time < since:
            continue
        groups.setdefault(record.query_id, _Group()).records.append(record)
    for qid, decided in decisions.items():
        if qid in groups:
            groups[qid].decisions.extend(decided)
    requests = [_request(department, qid, g) for qid, g in groups.items()]
    return sorted(requests, key=lambda r: r.time)


def _names(entry: AuditEntry, department: str) -> bool:
    return any(d.partition(".")[0] == department for d in entry.datasets)


def _request(department: str, query_id: str, group: _Group) -> Request:
    entries = sorted(group.entries, key=lambda ie: ie[0])
    started = [e for _, e in entries if e.status == STARTED]
    outcomes = [e for _, e in entries if e.status != STARTED]
    outcome = outcomes[-1] if outcomes else None
    first = entries[0][1] if entries else None
    records = group.records
    served = [r for r in records if r.decision == "served"]
    source = first or _first_asked(records)
    subject = source.subject if source else ""
    agency, supervisor = who(subject)
    gateway = _gateway_state(entries, outcome, bool(started))
    flags: list[str] = []
    notes: list[str] = []
    if not entries:
        flags.append(MISSING_AT_GATEWAY)
    elif started and gateway is State.SERVED:
        if not records:
            flags.append(MISSING_AT_DEPARTMENT)
        elif not served:
            flags.append(NOT_SERVED_AT_DEPARTMENT)
    elif gateway is State.PENDING:
        notes.append(f"held for approval: `fedgate approvals show {query_id}`")
    elif started and not records and gateway is not State.IN_PROGRESS:
        notes.append("no department record: the gateway refused or failed it, perhaps before asking the department")
    for d in group.decisions:
        params = dict(d.params)
        notes.append(f"{params.get('decision', '?')} by {params.get('approver', '?')} (audit entry)"
                     + (f": {d.reason}" if d.reason else ""))
    mine = tuple(sorted({d for d in (first.datasets if first else ()) if d.partition(".")[0] == department}
                        | {r.dataset for r in records}))
    return Request(
        query_id=query_id if not query_id.startswith("#") else "",
        time=first.time if first else records[0].time,
        agency=agency, supervisor=supervisor,
        purpose=source.purpose if source else "", case_number=source.case_number if source else "",
        kind=(first.action if first else records[0].action).removeprefix("query."),
        datasets=mine, fields=_fields(first, mine) if first else (),
        rows=sum(r.result_rows or 0 for r in served) if served else _gateway_rows(outcome),
        gateway=gateway, department=records[-1].decision if records else State.ABSENT.value,
        reason=(outcome.reason if outcome and outcome.decision != "allow" else "")
        or next((r.reason for r in reversed(records) if r.reason), ""),
        audit_indexes=tuple(i for i, _ in entries), flags=tuple(flags), notes=tuple(notes))


def _first_asked(records: Sequence[Disclosure]) -> Disclosure | None:
    """The first record that names who asked (one refused before its entry was verified names nobody)."""
    return next((r for r in records if r.subject), records[0] if records else None)


def _gateway_state(entries: Sequence[tuple[int, AuditEntry]], outcome: AuditEntry | None, started: bool) -> State:
    if not entries:
        return State.ABSENT
    if outcome is None:
        return State.IN_PROGRESS
    if dict(outcome.result_sizes).get(AWAITING_SIZE):
        return State.PENDING
    if not started and outcome.decision != "allow":  # a request stopped before the log said it would go ahead
        return State.REFUSED
    return {"allow": State.SERVED, "deny": State.REFUSED}.get(outcome.decision, State.FAILED)


def _fields(entry: AuditEntry, mine: Sequence[str]) -> tuple[str, ...]:
    """The department's fields the request released, with their forms; else the fields it named."""
    try:
        params = decode(dict(entry.params))
    except (FedgateError, ValueError, KeyError):  # a refused request may carry no parameters
        params = None
    if params is not None:
        forms = [f"{d}.{name}:{form.form}" for d in mine for name, form in sorted(params.forms_of(d).items())]
        if forms:
            return tuple(forms)
    return tuple(f for f in entry.fields if f.partition(".")[0] in {d.partition(".")[0] for d in mine})


def _gateway_rows(outcome: AuditEntry | None) -> int | None:
    if outcome is None:
        return None
    sizes = dict(outcome.result_sizes)
    for key in ("rows", "pairs", "flagged_pairs"):
        if key in sizes:
            return sizes[key]
    return None


@dataclass(frozen=True)
class View:
    """The department's requests, and how much of the gateway's log they cover."""

    department: str
    requests: list[Request]
    since: str       # the earliest time covered ("" for the whole log)
    truncated: bool  # the gateway's answer reached the limit: entries before `since` were not read

    @property
    def flagged(self) -> list[Request]:
        return [r for r in self.requests if r.flags]


async def read_view(client: GatewayClient, department: str, log_path: Path, since: str = "",
                    limit: int = MAX_ENTRIES) -> View:
    """Read the gateway's entries about the department's datasets (its own certificate limits them to
    those) and its disclosure log at `log_path`, and reconcile them. `since`: RFC 3339 UTC, or ""."""
    found = await client.search(since=since, limit=limit)
    records = read_disclosures(log_path)
    truncated = len(found) >= limit
    if truncated:  # newest first: the oldest entry read bounds what can be reconciled
        since = min(e.time for _, e in found)
    return View(department, reconcile(department, found, records, since), since, truncated)


def department_table(requests: Sequence[Request], department: str) -> RichTable:
    """A department's requests: who asked, why, for what, and what each record says (flags in red)."""
    table = RichTable("time (UTC)", "agency", "supervisor", "purpose", "case", "kind", "fields (form)", "rows",
                      "gateway", "department", "flags",
                      title=f"Requests for department {department}'s data (gateway's log ⋈ its disclosure log)")
    for r in requests:
        table.add_row(r.time.replace("T", " ").rstrip("Z"), escape(r.agency), escape(r.supervisor),
                      escape(r.purpose), escape(r.case_number), r.kind, escape(", ".join(r.fields)),
                      "" if r.rows is None else f"{r.rows:,}", r.gateway.value, r.department,
                      "[red]" + escape("; ".join(r.flags)) + "[/]" if r.flags else escape("; ".join(r.notes)))
    return table
