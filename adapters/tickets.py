"""The adapter's gate: nothing is served without a valid ticket, and every decision is recorded.

A ticket admits its logged entry once per action and side: the admission
takes that use in the disclosure log's transaction, so a replay (later, after
a restart, or racing the first use) is refused and recorded as refused. A
ticket refused before admission (stale, expired, asking for other parameters)
takes nothing, so the gateway can re-issue a stale one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from collections.abc import Mapping
from dataclasses import dataclass, field

from fedgate.adapters.disclosure import Ask, check_ask
from fedgate.adapters.disclosure_log import REPLAYED, Disclosure, DisclosureLog, Use
from fedgate.core.classification import Levels
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.crypto.checkpoint import Checkpoint, VerifierKey, open_note, verify_checkpoint
from fedgate.crypto.ticket import (DEFAULT_CLOCK_SKEW_S, Ticket, TicketClaims, TicketRefused, VerifiedTicket,
                                   verify_ticket)
from fedgate.core.errors import FedgateError, RemoteProtocolError, TicketReplayed
from fedgate.protos.fedgate.v1 import adapter_pb2
from fedgate.query.audit_params import QueryParams
from fedgate.query.department_rules import APPROVE, NO_RULES, REFUSE, DepartmentRules, request_of
from fedgate.crypto.approval import APPROVE as APPROVED, open_approval
from fedgate.crypto.checkpoint import parse_verifier_key
from fedgate.core.datasets import DatasetDecl

from fedgate.server.witness_key import Witness

MAX_APPROVALS = 8  # more than any rule needs (MAX_APPROVERS): a ticket cannot make the gate check thousands


def ticket_from_proto(msg: adapter_pb2.QueryTicket) -> Ticket:
    return Ticket(msg.claims, msg.entry, msg.checkpoint, tuple(msg.inclusion), msg.base_size, tuple(msg.consistency),
                  tuple(msg.approvals[:MAX_APPROVALS]))


@dataclass
class Admission:
    """A ticket that passed; `served(rows)` records the disclosure once the answer is ready."""

    gate: TicketGate
    ticket: VerifiedTicket
    action: str
    dataset: str
    entry: AuditEntry      # the logged request the ticket proves
    params: QueryParams    # its parameters: the safeguard values this department enforces while serving
    cosignature: str = ""  # this department's witness cosignature on the ticket's checkpoint ("" without a key)

    async def served(self, rows: int) -> None:
        await self.gate.record_served(self, rows)

    async def refused_after_check(self, reason: str) -> None:
        await self.gate.record_refused(self, reason)

    async def stopped(self, reason: str) -> None:
        """Record that the work ended before an answer: cancelled, timed out or failed."""
        await self.gate.record_stopped(self, reason)


CANCELLED = "cancelled by the gateway (the query was cancelled, timed out or failed elsewhere)"


def stop_reason(exc: BaseException) -> str:
    """Why admitted work ended without an answer, in the department's own log."""
    if isinstance(exc, FedgateError):
        return str(exc)
    if isinstance(exc, asyncio.CancelledError):
        return CANCELLED
    return f"failed: {type(exc).__name__}"


@contextlib.asynccontextmanager
async def recording_stops(admission: Admission) -> AsyncIterator[None]:
    """Record in the department's own log why admitted work ended without an answer (a source that
    failed, with its reference; a cancellation), so its last word on the ticket is never `admitted`."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(BaseException):  # the record is shielded; the error below is what counts
            await asyncio.shield(admission.stopped(stop_reason(exc)))
        raise


class TicketGate:
    def __init__(self, department: str, vkey: VerifierKey, log: DisclosureLog, levels: Levels,
                 skew_s: int = DEFAULT_CLOCK_SKEW_S, clock: Callable[[], float] = time.time,
                 witness: Witness | None = None, rules: OwnRules | None = None) -> None:
        self._department = department
        # The department's own rules, applied here whatever the gateway decided (its copy may be stale, or lie).
        self._rules = rules or OwnRules()
        # Witnessing: every checkpoint accepted (consistent with all accepted before, the last of
        # which survives restarts in the disclosure log) is cosigned, so a split view is provable.
        self._witness = witness
        self._skew_s = skew_s
        self._clock = clock
        self._levels = levels
        self._vkey = vkey
        self._log = log
        # One ticket at a time: each accepted checkpoint is the base of the next proof.
        self._lock = asyncio.Lock()

    @property
    def origin(self) -> str:
        return self._vkey.name

    def seen_size(self) -> int:
        note = self._log.last_accepted_note()
        return self._open(note).size if note else 0

    def _open(self, note: str) -> Checkpoint:
        return verify_checkpoint(note, self._vkey.name, self._vkey.public_key, origin=self.origin)

    async def admit(self, msg: adapter_pb2.QueryTicket, ask: Ask) -> Admission:
        """Verify the ticket for exactly this request and take its entry's use, or record the refusal and raise."""
        action, qualified = ask.action, ask.dataset.qualified_name
        ticket = ticket_from_proto(msg)
        claims = self._signed_claims(ticket)  # None unless the gateway signed them for this department
        async with self._lock:
            try:
                if claims is not None and self._log.was_used(Use(claims.entry_index, action, ask.role)):
                    # Named for what it is, whatever else is wrong with it (stale, expired, altered).
                    raise TicketReplayed(REPLAYED)
                note = self._log.last_accepted_note()
                verified = verify_ticket(ticket, audience=self._department, now=int(self._clock()),
                                         vkey=self._vkey, origin=self.origin,
                                         last_seen=self._open(note) if note else None, skew_s=self._skew_s)
                entry = _entry_of(verified)
                params = check_ask(entry, ask, self._levels)
                self._rules.check(self._department, self.origin, verified, entry, params, int(self._clock()))
            except FedgateError as exc:
                await self._record_refusal(ticket, claims, ask, exc)
                raise
            # Accepting moves this adapter's view of the log forward and takes the entry's use for this
            # action and side, before anything is served.
            admission = Admission(self, verified, action, qualified, entry, params, self._cosign(verified))
            use = Use(verified.claims.entry_index, action, ask.role)
            try:
                await self._log.accept_async(verified.checkpoint, verified.checkpoint_note, use, Disclosure(
                    utc_now(), verified.claims.query_id, verified.claims.entry_index, verified.checkpoint.size,
                    action, qualified, "admitted", "", None, *_asker(entry)))
            except TicketReplayed as exc:  # another presentation took the use first
                await self._record_refusal(ticket, claims, ask, exc)
                raise
        return admission

    def _cosign(self, verified: VerifiedTicket) -> str:
        if self._witness is None:
            return ""
        return self._witness.cosign(verified.checkpoint.to_text(), int(self._clock()))

    def _signed_claims(self, ticket: Ticket) -> TicketClaims | None:
        """The ticket's claims if the pinned key signed them for this department (the rest is unchecked)."""
        try:
            claims = TicketClaims.from_text(open_note(ticket.claims_note, self._vkey.name, self._vkey.public_key))
        except FedgateError:
            return None
        return claims if claims.audience == self._department else None

    async def _record_refusal(self, ticket: Ticket, claims: TicketClaims | None, ask: Ask,
                              exc: FedgateError) -> None:
        # Signed claims name the entry the gateway tried; unsigned ones only a printable query id.
        await self._log.record_async(Disclosure(
            utc_now(), claims.query_id if claims else _query_id(ticket), claims.entry_index if claims else None,
            None, ask.action, ask.dataset.qualified_name, "refused", str(exc), None))

    async def record_refused(self, admission: Admission, reason: str) -> None:
        t = admission.ticket
        await self._log.record_async(Disclosure(
            utc_now(), t.claims.query_id, t.claims.entry_index, t.checkpoint.size, admission.action,
            admission.dataset, "refused", reason, None, *_asker(admission.entry)))

    async def record_stopped(self, admission: Admission, reason: str) -> None:
        t = admission.ticket
        await self._log.record_async(Disclosure(
            utc_now(), t.claims.query_id, t.claims.entry_index, t.checkpoint.size, admission.action,
            admission.dataset, "stopped", reason, None, *_asker(admission.entry)))

    async def record_served(self, admission: Admission, rows: int) -> None:
        t = admission.ticket
        await self._log.record_async(Disclosure(
            utc_now(), t.claims.query_id, t.claims.entry_index, t.checkpoint.size, admission.action,
            admission.dataset, "served", "", rows, *_asker(admission.entry)))


@dataclass(frozen=True)
class OwnRules:
    """The department's rules and its datasets' declarations, as the ticket gate applies them."""

    rules: DepartmentRules = NO_RULES
    decls: Mapping[str, DatasetDecl] = field(default_factory=dict)

    def check(self, department: str, origin: str, ticket: VerifiedTicket, entry: AuditEntry, params: QueryParams,
              now: int) -> None:
        """Refuse (TicketRefused) what a rule refuses, and what needs approvals the ticket does not carry."""
        if not self.rules.rules:
            return
        verdict = self.rules.verdict(request_of(entry, params, department, self.decls))
        if verdict.effect == REFUSE:
            raise TicketRefused(f"{verdict.describe(department)} this request")
        if verdict.effect != APPROVE:
            return
        keys = [parse_verifier_key(k) for k in self.rules.approvers]
        approvers: set[str] = set()
        problems: list[str] = []
        for note in ticket.approvals:
            try:
                name, s = open_approval(note, keys)
            except FedgateError as exc:
                problems.append(str(exc))
                continue
            if not s.binds(origin, ticket.claims.query_id, ticket.claims.entry_index, ticket.entry, department):
                problems.append(f"the approval by {name} is for another request")
            elif s.decision != APPROVED:
                problems.append(f"{name} denied the request")
            elif now >= s.expires_at:
                problems.append(f"the approval by {name} expired")
            else:
                approvers.add(name)
        if len(approvers) < verdict.approvers:
            raise TicketRefused(f"{verdict.describe(department)}: the ticket carries {len(approvers)} valid "
                                "approval(s)" + (f" ({'; '.join(problems)[:400]})" if problems else ""))


def _asker(entry: AuditEntry) -> tuple[str, str, str]:
    """Who asked, why and under which case, as the verified entry says: the department's own record of it."""
    return entry.subject, entry.purpose, entry.case_number


def _query_id(ticket: Ticket) -> str:
    # Only for the refusal record: the claims may be forged, so keep what is printable and short.
    for line in ticket.claims_note.split("\n")[2:3]:
        if len(line) == 32 and all(c in "0123456789abcdef" for c in line):
            return line
    return "unknown"


def _entry_of(ticket: VerifiedTicket) -> AuditEntry:
    """The logged request the ticket proves, which must belong to the ticket's query."""
    try:
        entry = AuditEntry.from_canonical(ticket.entry)
    except RemoteProtocolError as exc:
        raise TicketRefused(f"the ticket's audit entry is malformed ({exc})") from None
    if entry.query_id != ticket.claims.query_id:
        raise TicketRefused("the ticket's audit entry belongs to another query")
    return entry
