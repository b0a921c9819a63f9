"""Query tickets: the gateway's signed permission for one adapter to serve one logged request.

A ticket binds (audience department, query id, audit entry index, SHA-256 of
the entry's canonical bytes, issue time, expiry) in a C2SP signed note by the gateway's
log key, and carries the evidence an adapter needs to check for itself that
the request is already in the audit log:

- the entry itself, an inclusion proof of it, and the signed checkpoint the
  proof leads to;
- a consistency proof from the last checkpoint this adapter accepted, so the
  gateway cannot show it a rewritten history.

A ticket is good from its issue time (less the allowed clock skew) until it
expires, by the adapter's clock: an adapter whose clock is far off says so.

Sans-I/O: the caller supplies the time and the adapter's last accepted
checkpoint, and stores the returned checkpoint once it has served the request.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.crypto.checkpoint import Checkpoint, VerifierKey, open_note, sign_note, verify_checkpoint
from fedgate.crypto.merkle import RFC6962_SHA256, verify_consistency, verify_inclusion
from fedgate.core.errors import FailedPrecondition, MalformedProof, RootMismatch, VerificationError

TICKET_TAG = "fedgate-ticket/v2"
# How far the clocks of gateway and adapter may disagree before a ticket is refused for it.
DEFAULT_CLOCK_SKEW_S = 30
# The fields a ticket and an approval (crypto/approval.py) share: a department code, a query id, a count.
DEPARTMENT_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
QUERY_ID = re.compile(r"^[0-9a-f]{32}$")
DECIMAL = re.compile(r"^(?:0|[1-9][0-9]{0,18})$")
HASHER = RFC6962_SHA256


class TicketRefused(VerificationError):
    """The ticket is not valid for this adapter (wrong audience, expired, forged, not logged)."""


class StaleBase(FailedPrecondition):
    """The ticket's consistency proof starts from a checkpoint other than the one this adapter holds."""

    def __init__(self, seen_size: int, base_size: int) -> None:
        super().__init__(f"ticket proves consistency from size {base_size} but this adapter last accepted "
                         f"size {seen_size}; ask for its log state and issue a new ticket")
        self.seen_size = seen_size


@dataclass(frozen=True)
class TicketClaims:
    audience: str
    query_id: str
    entry_index: int
    entry_sha256: bytes
    expires_at: int  # Unix seconds
    issued_at: int   # Unix seconds, by the gateway's clock

    def __post_init__(self) -> None:
        if not DEPARTMENT_CODE.match(self.audience):
            raise MalformedProof("ticket audience is not a department code")
        if not QUERY_ID.match(self.query_id):
            raise MalformedProof("ticket query id is not 32 lower-case hex digits")
        if self.entry_index < 0 or self.expires_at < 0 or self.issued_at < 0:
            raise MalformedProof("ticket index, issue time and expiry must be non-negative")
        if self.issued_at > self.expires_at:
            raise MalformedProof("ticket expires before it was issued")
        if len(self.entry_sha256) != 32:
            raise MalformedProof("ticket entry hash must be 32 bytes")

    def to_text(self) -> str:
        return (f"{TICKET_TAG}\n{self.audience}\n{self.query_id}\n{self.entry_index}\n"
                f"{self.entry_sha256.hex()}\n{self.issued_at}\n{self.expires_at}\n")

    @classmethod
    def from_text(cls, text: str) -> TicketClaims:
        lines = text.split("\n")
        if len(lines) != 8 or lines[0] != TICKET_TAG or lines[7] != "":
            raise MalformedProof(f"not a {TICKET_TAG} note")
        _, audience, query_id, index, digest, issued, expires, _ = lines
        if not (DECIMAL.match(index) and DECIMAL.match(issued) and DECIMAL.match(expires)
                and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise MalformedProof("ticket fields are malformed")
        return cls(audience, query_id, int(index), bytes.fromhex(digest), int(expires), int(issued))


@dataclass(frozen=True)
class Ticket:
    claims_note: str              # TicketClaims, signed by the gateway's log key
    entry: bytes                  # canonical audit entry
    checkpoint: str               # signed checkpoint the inclusion proof leads to
    inclusion: tuple[bytes, ...]
    base_size: int                # size of the adapter's last accepted checkpoint (0: none)
    consistency: tuple[bytes, ...]
    approvals: tuple[str, ...] = ()  # the department's signed approvals of the entry (crypto/approval.py)


@dataclass(frozen=True)
class VerifiedTicket:
    claims: TicketClaims
    entry: bytes
    checkpoint: Checkpoint
    checkpoint_note: str
    approvals: tuple[str, ...] = ()  # as the ticket carried them: the department checks them itself


def sign_claims(claims: TicketClaims, signer_name: str, key: Ed25519PrivateKey) -> str:
    return sign_note(claims.to_text(), signer_name, key)


def utc_text(t: int) -> str:
    """A Unix time as people read it in a refusal (UTC, to the second; the number itself beyond the calendar)."""
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):  # beyond the calendar: the number itself says enough
        return f"Unix time {t}"


def _check_time(claims: TicketClaims, now: int, skew_s: int) -> None:
    """Refuse a ticket issued in this adapter's future, or expired; either way, name the clocks."""
    issued = utc_text(claims.issued_at)
    clocks = f"check the clocks of gateway and adapter (allowed skew {skew_s} s)"
    if claims.issued_at - now > skew_s:
        raise TicketRefused(f"ticket issued at {issued} is {claims.issued_at - now} s in this adapter's future: "
                            f"{clocks}")
    if now >= claims.expires_at:
        lifetime = claims.expires_at - claims.issued_at
        raise TicketRefused(f"ticket expired: issued at {issued}, it is {now - claims.issued_at} s in this "
                            f"adapter's past, beyond its lifetime of {lifetime} s; a ticket is used as soon as "
                            f"it is issued, so {clocks}")


def verify_ticket(ticket: Ticket, *, audience: str, now: int, vkey: VerifierKey, origin: str,
                  last_seen: Checkpoint | None, skew_s: int = DEFAULT_CLOCK_SKEW_S) -> VerifiedTicket:
    """Check everything an adapter must check before serving; raise on the first failure.

    1. the claims are signed by the pinned gateway key; 2. they name this
    department; 3. `now` is within their lifetime (from the issue time, less
    `skew_s`, until the expiry); 4. the entry is the one signed for;
    5. the checkpoint is signed by the same key for the same log; 6. the entry
    is included in it; 7. it is consistent with the last checkpoint accepted.
    """
    try:
        claims = TicketClaims.from_text(open_note(ticket.claims_note, vkey.name, vkey.public_key))
    except VerificationError as exc:
        raise TicketRefused(f"ticket signature does not verify with the pinned gateway key ({exc})") from None
    if claims.audience != audience:
        raise TicketRefused(f"ticket is for department '{claims.audience}', not '{audience}'")
    _check_time(claims, now, skew_s)
    if hashlib.sha256(ticket.entry).digest() != claims.entry_sha256:
        raise TicketRefused("the audit entry in the ticket is not the one the gateway signed for")
    try:
        cp = verify_checkpoint(ticket.checkpoint, vkey.name, vkey.public_key, origin=origin)
    except VerificationError as exc:
        raise TicketRefused(f"ticket checkpoint does not verify ({exc})") from None
    if claims.entry_index >= cp.size:
        raise TicketRefused("the ticket's checkpoint does not cover its audit entry")
    try:
        verify_inclusion(HASHER, claims.entry_index, cp.size, HASHER.hash_leaf(ticket.entry),
                         list(ticket.inclusion), cp.root_hash)
    except (MalformedProof, RootMismatch) as exc:
        raise TicketRefused(f"the audit entry is not proven to be in the log ({exc})") from None
    if last_seen is not None and (cp.size, cp.root_hash) != (last_seen.size, last_seen.root_hash):
        # (The very checkpoint accepted last needs no proof: several tickets of one query share it.)
        if ticket.base_size != last_seen.size:
            raise StaleBase(last_seen.size, ticket.base_size)
        if cp.size < last_seen.size:
            raise TicketRefused(f"ticket checkpoint (size {cp.size}) is older than one accepted before "
                                f"(size {last_seen.size}): the log shrank")
        try:
            verify_consistency(HASHER, last_seen.size, cp.size, list(ticket.consistency),
                               last_seen.root_hash, cp.root_hash)
        except (MalformedProof, RootMismatch) as exc:
            raise TicketRefused(f"the log is not consistent with the checkpoint of size {last_seen.size} "
                                f"this adapter accepted before: history was rewritten ({exc})") from None
    return VerifiedTicket(claims, ticket.entry, cp, ticket.checkpoint, ticket.approvals)
