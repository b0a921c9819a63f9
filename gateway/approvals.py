"""Requests that wait for their departments' approval: held once logged, decided, collected once.

A query whose department rules (`fedgate.query.department_rules`) ask for
approval is logged like any other, then held here instead of being sent to any
department. The department's approvers sign their decision
(`fedgate.crypto.approval`); each decision is appended to the audit log and
kept here. The supervisor who asked collects the answer by query id, sending
the same request again: the gateway checks it is the request logged and
approved, and only then issues tickets, each carrying the department's signed
approvals, which the adapter checks itself. A request is collected once;
approvals expire with it.

Nothing here holds a filter's values: the client keeps its request and the
filter nonces (which its pending reply gave it), and sends both back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import (AwaitingApproval, DepartmentRefused, FailedPrecondition, FedgateError,
                                 InvalidInput, NotFound, PermissionDenied)
from fedgate.core.identity import Identity, Role
from fedgate.crypto.approval import APPROVE, DENY, ApprovalStatement, open_approval
from fedgate.crypto.checkpoint import parse_verifier_key
from fedgate.crypto.ticket import utc_text
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import StoredEntry
from fedgate.gateway.registry import Registry
from fedgate.gateway.registry_store import SqlStore
from fedgate.query.audit_params import QueryParams, decode
from fedgate.query.department_rules import APPROVE as NEEDS_APPROVAL, REFUSE, Verdict, departments_of, request_of
from fedgate.server.interceptors import RequestRecord, format_nonces, log_outcome

PENDING, APPROVED, DENIED, EXPIRED, COLLECTED = "pending", "approved", "denied", "expired", "collected"
APPROVAL_MARGIN_S = 60
AWAITING_SIZE = "awaiting_approval"  # in a held request's outcome entry: the approvals still missing
MAX_REASON = 512

_meta = sa.MetaData()
held = sa.Table(
    "fedgate_approvals", _meta,
    sa.Column("query_id", sa.String(32), primary_key=True),
    sa.Column("entry_index", sa.BigInteger, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("needs", sa.Text, nullable=False),       # JSON {department: [rule text, approvers needed]}
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("collected_at", sa.BigInteger, nullable=True),
)
votes = sa.Table(
    "fedgate_approval_votes", _meta,
    sa.Column("query_id", sa.String(32), primary_key=True),
    sa.Column("department", sa.String(63), primary_key=True),
    sa.Column("approver", sa.String(128), primary_key=True),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("decided_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),  # the signed note's own expiry
)


@dataclass(frozen=True)
class Need:
    rule: str        # the department rule text, as the entry names it
    approvers: int   # distinct approvers needed


@dataclass(frozen=True)
class Vote:
    department: str
    approver: str
    decision: str    # approve | deny
    note: str        # the signed approval
    reason: str
    decided_at: int
    expires_at: int


@dataclass(frozen=True)
class Held:
    """A logged request waiting for (or past) its departments' decisions."""

    query_id: str
    entry_index: int
    subject: str
    needs: dict[str, Need]
    created_at: int
    expires_at: int
    collected_at: int | None = None
    votes: tuple[Vote, ...] = ()

    def _valid(self, department: str, now: float) -> list[Vote]:
        # An approval about to expire no longer counts: the ticket carrying it must reach the adapter in time.
        return [v for v in self.votes if v.department == department and v.decision == APPROVE
                and v.expires_at > now + APPROVAL_MARGIN_S]

    def approvals(self, department: str, now: float) -> tuple[str, ...]:
        """The department's signed approvals still valid, as its adapter checks them in the ticket."""
        return tuple(v.note for v in self._valid(department, now))

    def denial(self) -> Vote | None:
        return next((v for v in self.votes if v.decision == DENY), None)

    def missing(self, now: float) -> dict[str, int]:
        """Approvals still missing, by department."""
        out = {}
        for dept, need in self.needs.items():
            got = len({v.approver for v in self._valid(dept, now)})
            if got < need.approvers:
                out[dept] = need.approvers - got
        return out

    def state(self, now: float) -> str:
        if self.collected_at is not None:
            return COLLECTED
        if self.denial() is not None:
            return DENIED
        if now >= self.expires_at:
            return EXPIRED
        return PENDING if self.missing(now) else APPROVED


class ApprovalStore(SqlStore):
    """Held requests and their decisions, shared by replicas on one database."""

    _tables = _meta
    _closed_message = "the approval store is closed: the gateway is shutting down"

    def hold(self, h: Held) -> None:
        with self._writes.begin() as conn:
            conn.execute(held.insert().values(
                query_id=h.query_id, entry_index=h.entry_index, subject=h.subject, created_at=h.created_at,
                expires_at=h.expires_at, needs=json.dumps({d: [n.rule, n.approvers] for d, n in h.needs.items()},
                                                          sort_keys=True, ensure_ascii=False)))

    def get(self, query_id: str) -> Held | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(held).where(held.c.query_id == query_id)).first()
            if row is None:
                return None
            found = conn.execute(sa.select(votes).where(votes.c.query_id == query_id)
                                 .order_by(votes.c.decided_at, votes.c.approver)).all()
        return _held(row, found)

    def for_department(self, department: str, since: int) -> list[Held]:
        """Requests created since `since` that wait for (or had) this department's decision, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(held).where(held.c.created_at >= since, held.c.needs.contains(
                json.dumps(department))).order_by(held.c.created_at)).all()
            ids = [r.query_id for r in rows]
            found = conn.execute(sa.select(votes).where(votes.c.query_id.in_(ids))).all() if ids else []
        by_id: dict[str, list[sa.Row[Any]]] = {}
        for v in found:
            by_id.setdefault(v.query_id, []).append(v)
        return [h for h in (_held(r, by_id.get(r.query_id, [])) for r in rows) if department in h.needs]

    def waiting(self, now: float) -> dict[str, int]:
        """Requests still waiting for each department's approvals (state pending), for the metrics gauge.

        Reads only the requests neither collected nor expired, and their votes: few, as requests expire
        within hours. Every replica reads the same rows, so each reports the same numbers.
        """
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(held).where(held.c.collected_at.is_(None),
                                                      held.c.expires_at > int(now))).all()
            ids = [r.query_id for r in rows]
            found = conn.execute(sa.select(votes).where(votes.c.query_id.in_(ids))).all() if ids else []
        by_id: dict[str, list[sa.Row[Any]]] = {}
        for v in found:
            by_id.setdefault(v.query_id, []).append(v)
        out: dict[str, int] = {}
        for h in (_held(r, by_id.get(r.query_id, [])) for r in rows):
            if h.state(now) == PENDING:
                for department in h.missing(now):
                    out[department] = out.get(department, 0) + 1
        return out

    def add_vote(self, query_id: str, vote: Vote) -> bool:
        """Keep a decision; False if this approver decided on this request already."""
        try:
            with self._writes.begin() as conn:
                conn.execute(votes.insert().values(query_id=query_id, **vote.__dict__))
        except sa.exc.IntegrityError:
            return False
        return True

    def uncollect(self, query_id: str) -> None:
        with self._writes.begin() as conn:
            conn.execute(held.update().where(held.c.query_id == query_id).values(collected_at=None))

    def mark_collected(self, query_id: str, now: int) -> bool:
        """Take the request's one collection; False if it was collected already (or raced)."""
        with self._writes.begin() as conn:
            done = conn.execute(held.update().where(held.c.query_id == query_id, held.c.collected_at.is_(None))
                                .values(collected_at=now))
        return done.rowcount == 1


def _held(row: sa.Row[Any], found: Sequence[sa.Row[Any]]) -> Held:
    needs = {d: Need(str(rule), int(n)) for d, (rule, n) in json.loads(row.needs).items()}
    return Held(row.query_id, int(row.entry_index), row.subject, needs, int(row.created_at), int(row.expires_at),
                None if row.collected_at is None else int(row.collected_at),
                tuple(Vote(v.department, v.approver, v.decision, v.note, v.reason, int(v.decided_at),
                           int(v.expires_at)) for v in found))


# Entry parameters that differ between two plans of one request without changing it: the officers'
# sealed copy of each filter is sealed afresh (its digest, which binds the filter, must be equal).
_RESEALED = "sealed_filter."


class ApprovalDesk:
    """The gateway's side of approvals: rules checked before logging, requests held, decisions, collection."""

    def __init__(self, store: ApprovalStore, registry: Registry, log: AuditLog,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._registry = registry
        self._log = log
        self._clock = clock

    def waiting(self) -> dict[str, int]:
        """Requests still waiting for each department's approvals (blocking: the metrics reader's thread)."""
        return self._store.waiting(self._clock())

    async def verdicts(self, entry: AuditEntry, params: QueryParams) -> dict[str, Verdict]:
        """Each department's verdict on the request, by its own registered rules."""
        out = {}
        for department in departments_of(entry, params):
            rules, decls = await self._registry.rules_of(department)
            out[department] = rules.verdict(request_of(entry, params, department, decls))
        return out

    async def ttl_s(self, departments: list[str]) -> int:
        """How long a request held for these departments may wait: the shortest of their settings."""
        return min([(await self._registry.rules_of(d))[0].approval_ttl_s for d in departments])

    async def screen(self, record: RequestRecord, entry: AuditEntry) -> dict[str, Need]:
        """Apply the departments' rules to a request about to be logged: name them in its rule, refuse it
        (DepartmentRefused) if one refuses, or return the approvals it needs (empty: none)."""
        verdicts = await self.verdicts(entry, decode(dict(entry.params)))
        named = [v.describe(d) for d, v in verdicts.items() if v.rules]
        if named:
            record.rule = " | ".join([record.rule, *named] if record.rule else named)
        refusing = [v.describe(d) for d, v in verdicts.items() if v.effect == REFUSE]
        if refusing:
            raise DepartmentRefused("; ".join(refusing) + " this request (the department's own rules, in its "
                                    "adapter configuration, apply besides the gateway's policy)")
        return {d: Need(v.describe(d), v.approvers) for d, v in verdicts.items() if v.effect == NEEDS_APPROVAL}

    async def hold(self, record: RequestRecord, index: int, needs: dict[str, Need]) -> AwaitingApproval:
        """Keep the logged request waiting; the error its caller gets (with the query id and filter nonces)."""
        now = int(self._clock())
        expires = now + await self.ttl_s(list(needs))
        assert record.identity is not None
        await asyncio.to_thread(self._store.hold, Held(record.query_id, index, record.identity.spiffe_id, needs,
                                                       now, expires))
        record.result_sizes[AWAITING_SIZE] = sum(n.approvers for n in needs.values())
        return AwaitingApproval(_waiting(record.query_id, needs, expires), record.query_id,
                                format_nonces(record.filter_nonces))

    async def collect(self, record: RequestRecord, entry: AuditEntry) -> tuple[int, bytes, dict[str, tuple[str, ...]]]:
        """The logged entry of an approved request the caller sends again, and each department's approvals.

        `entry` is the request as planned now; it must be the one logged. The collection is taken once.
        """
        query_id = record.collect_query_id
        h = await asyncio.to_thread(self._store.get, query_id) if len(query_id) == 32 else None
        if h is None or record.identity is None or h.subject != record.identity.spiffe_id:
            raise NotFound(f"no request {query_id[:32]!r} of yours was held for approval")
        record.query_id = query_id
        now = self._clock()
        state = h.state(now)
        if state == COLLECTED:
            raise FailedPrecondition(f"request {query_id} was collected already: an approved request is served once")
        if state == DENIED:
            d = h.denial()
            assert d is not None
            raise PermissionDenied(f"department {d.department} denied request {query_id} (approver {d.approver}"
                                   + (f": {d.reason}" if d.reason else "") + ")")
        if state == EXPIRED:
            raise FailedPrecondition(f"request {query_id} expired at {utc_text(h.expires_at)} before it was approved; "
                                     "ask again")
        if state == PENDING:
            record.result_sizes[AWAITING_SIZE] = sum(h.missing(now).values())
            raise AwaitingApproval(_waiting(query_id, h.needs, h.expires_at, h.missing(now)), query_id,
                                   format_nonces(record.filter_nonces))
        logged = await self._logged(h)
        _check_same(AuditEntry.from_canonical(logged.body), entry)
        if not await asyncio.to_thread(self._store.mark_collected, query_id, int(now)):
            raise FailedPrecondition(f"request {query_id} was collected already: an approved request is served once")
        record.rule = AuditEntry.from_canonical(logged.body).rule
        return h.entry_index, logged.body, {d: h.approvals(d, now) for d in h.needs}

    async def collect_failed(self, query_id: str) -> None:
        """A collection that ended without an answer gives the request back: a department that served it
        already refuses the replay (its tickets are single-use), so nothing is served twice."""
        await asyncio.to_thread(self._store.uncollect, query_id)

    async def decide(self, caller: Identity, record: RequestRecord, query_id: str, note: str,
                     reason: str) -> Held:
        """Check and keep one approver's signed decision; the audit entry (written by the interceptor) holds it."""
        h = await self.visible(caller, record, query_id)
        if caller.role is not Role.DEPARTMENT or caller.org not in h.needs:
            raise PermissionDenied(f"request {query_id} does not wait for department '{caller.org}'")
        rules, _ = await self._registry.rules_of(caller.org)
        try:
            approver, statement = open_approval(note, [parse_verifier_key(k) for k in rules.approvers])
        except FedgateError as exc:
            raise PermissionDenied(f"the decision is not signed by one of department {caller.org}'s approvers "
                                   f"as registered ({exc})") from None
        logged = await self._logged(h)
        _check_statement(statement, h, caller.org, self._log.origin, logged.body)
        asked = AuditEntry.from_canonical(logged.body)
        # Filed under the request's datasets and case: the department (and officers) find it beside the request.
        record.datasets, record.purpose, record.case_number = list(asked.datasets), asked.purpose, asked.case_number
        now = self._clock()
        state = h.state(now)
        if state != PENDING:
            raise FailedPrecondition(f"request {query_id} is {state}: it takes no more decisions")
        if statement.expires_at <= now + APPROVAL_MARGIN_S:
            raise InvalidInput(f"the signed decision expires at {utc_text(statement.expires_at)}, too soon to be used: "
                               "sign it again")
        record.params.update({"decision": statement.decision, "approver": approver, "approval": note})
        # In the log before it counts: a decision the log lacks never reaches a ticket.
        await log_outcome(record, reason[:MAX_REASON])
        vote = Vote(caller.org, approver, statement.decision, note, reason[:MAX_REASON], int(now),
                    statement.expires_at)
        if not await asyncio.to_thread(self._store.add_vote, query_id, vote):
            raise FailedPrecondition(f"approver {approver} decided on request {query_id} already")
        found = await asyncio.to_thread(self._store.get, query_id)
        assert found is not None
        return found

    async def visible(self, caller: Identity, record: RequestRecord, query_id: str) -> Held:
        """A held request the caller may see: the asking supervisor's own, or one waiting for its department."""
        record.query_id = query_id[:32]
        h = await asyncio.to_thread(self._store.get, query_id) if len(query_id) == 32 else None
        if h is None or not (caller.spiffe_id == h.subject or (caller.role is Role.DEPARTMENT and caller.org in h.needs)):
            raise NotFound(f"no request {query_id[:32]!r} held for approval is visible to you")
        return h

    async def for_department(self, department: str, since: int) -> list[Held]:
        return await asyncio.to_thread(self._store.for_department, department, since)

    async def entry(self, h: Held) -> AuditEntry:
        return AuditEntry.from_canonical((await self._logged(h)).body)

    async def _logged(self, h: Held) -> StoredEntry:
        """The held request's entry as the log stores it (the bytes an approval's hash binds)."""
        found = await asyncio.to_thread(lambda: list(self._log.store.entries(h.entry_index, h.entry_index + 1)))
        if not found:
            raise FailedPrecondition(f"the audit log has no entry {h.entry_index} for held request {h.query_id}: "
                                     "run `fedgate audit verify`")
        return found[0]

    def now(self) -> float:
        return self._clock()


def _check_statement(s: ApprovalStatement, h: Held, department: str, origin: str, entry: bytes) -> None:
    if not s.binds(origin, h.query_id, h.entry_index, entry, department):
        raise PermissionDenied("the signed decision is for another request, entry or log: sign the request as "
                               "`fedgate approvals show` lists it")


def _check_same(logged: AuditEntry, now: AuditEntry) -> None:
    """The request sent again must be the request logged: same caller, reason, datasets, fields and parameters."""
    for name in ("subject", "action", "datasets", "fields", "purpose", "case_number"):
        if getattr(logged, name) != getattr(now, name):
            raise InvalidInput(f"the request differs from the one held for approval ({name.replace('_', ' ')}): "
                               "collect it with the same command")
    mine = {k: v for k, v in now.params if not k.startswith(_RESEALED)}
    theirs = {k: v for k, v in logged.params if not k.startswith(_RESEALED)}
    if mine != theirs:
        differs = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise InvalidInput(f"the request differs from the one held for approval (parameter {differs[0]}): "
                           "collect it with the same command")


def _waiting(query_id: str, needs: Mapping[str, Need], expires: int, missing: Mapping[str, int] | None = None) -> str:
    waits = "; ".join(f"{n.rule}" + (f" ({missing[d]} still missing)" if missing and d in missing else "")
                      for d, n in needs.items() if missing is None or d in missing)
    return (f"request {query_id} is logged and waits for approval: {waits}; it expires at {utc_text(expires)}. "
            f"Collect the answer once approved: fedgate query collect {query_id}")
