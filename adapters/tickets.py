"""The adapter's gate: nothing is served without a valid ticket, and every decision is recorded."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from fedgate.adapters.disclosure_log import Disclosure, DisclosureLog
from fedgate.audit_entry import AuditEntry, utc_now
from fedgate.crypto.checkpoint import Checkpoint, VerifierKey, verify_checkpoint
from fedgate.crypto.ticket import Ticket, TicketRefused, VerifiedTicket, verify_ticket
from fedgate.errors import FedgateError, RemoteProtocolError
from fedgate.protos.fedgate.v1 import adapter_pb2


def ticket_from_proto(msg: adapter_pb2.QueryTicket) -> Ticket:
    return Ticket(msg.claims, msg.entry, msg.checkpoint, tuple(msg.inclusion), msg.base_size, tuple(msg.consistency))


@dataclass
class Admission:
    """A ticket that passed; `served(rows)` records the disclosure once the answer is ready."""

    gate: TicketGate
    ticket: VerifiedTicket
    action: str
    dataset: str

    async def served(self, rows: int) -> None:
        await self.gate.record_served(self, rows)


class TicketGate:
    def __init__(self, department: str, vkey: VerifierKey, log: DisclosureLog) -> None:
        self._department = department
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

    async def admit(self, msg: adapter_pb2.QueryTicket, action: str, dataset: str) -> Admission:
        """Verify the ticket for `action` on `dataset` of this department, or record the refusal and raise."""
        qualified = f"{self._department}.{dataset}"
        ticket = ticket_from_proto(msg)
        async with self._lock:
            try:
                note = self._log.last_accepted_note()
                verified = verify_ticket(ticket, audience=self._department, now=int(time.time()), vkey=self._vkey,
                                         origin=self.origin, last_seen=self._open(note) if note else None)
                _check_entry(verified, action, qualified)
            except FedgateError as exc:
                await asyncio.to_thread(self._log.record, Disclosure(
                    utc_now(), _query_id(ticket), None, None, action, qualified, "refused", str(exc), None))
                raise
            # Accepting moves this adapter's view of the log forward before anything is served.
            admission = Admission(self, verified, action, qualified)
            await asyncio.to_thread(self._log.accept, verified.checkpoint, verified.checkpoint_note, Disclosure(
                utc_now(), verified.claims.query_id, verified.claims.entry_index, verified.checkpoint.size,
                action, qualified, "admitted", "", None))
        return admission

    async def record_served(self, admission: Admission, rows: int) -> None:
        t = admission.ticket
        await asyncio.to_thread(self._log.record, Disclosure(
            utc_now(), t.claims.query_id, t.claims.entry_index, t.checkpoint.size, admission.action,
            admission.dataset, "served", "", rows))


def _query_id(ticket: Ticket) -> str:
    # Only for the refusal record: the claims may be forged, so keep what is printable and short.
    for line in ticket.claims_note.split("\n")[2:3]:
        if len(line) == 32 and all(c in "0123456789abcdef" for c in line):
            return line
    return "unknown"


def _check_entry(ticket: VerifiedTicket, action: str, qualified: str) -> None:
    """The logged request must be the one being served: same action, this dataset, allowed."""
    try:
        entry = AuditEntry.from_canonical(ticket.entry)
    except RemoteProtocolError as exc:
        raise TicketRefused(f"the ticket's audit entry is malformed ({exc})") from None
    if entry.query_id != ticket.claims.query_id:
        raise TicketRefused("the ticket's audit entry belongs to another query")
    if entry.action != action:
        raise TicketRefused(f"the logged request is '{entry.action}', not '{action}'")
    if qualified not in entry.datasets:
        raise TicketRefused(f"the logged request does not name dataset '{qualified}'")
    if entry.decision != "allow":
        raise TicketRefused("the logged request was not allowed")
