"""Opening an audit entry's sealed request text with the officers' key (`fedgate audit open`).

Pure: it takes an entry as the gateway served it with its inclusion proof and
signed checkpoint, checks both against the pinned log key first (an entry the
log does not hold is never opened), then opens each sealed filter and checks it
against the digest the department verified.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedgate.client.audit_verify import check_inclusion
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import NotFound, VerificationError
from fedgate.core.officer_seal import OpenKey
from fedgate.crypto.checkpoint import VerifierKey
from fedgate.crypto.ticket import TicketRefused
from fedgate.query.audit_params import decode, open_filter


@dataclass(frozen=True)
class OpenedFilter:
    """One side's filter: as logged (values blanked) and as the officers' key opened it."""

    dataset: str
    role: str       # left/right in a match, sum or comparison; "" in a count or disclosure
    redacted: str
    text: str


@dataclass(frozen=True)
class OpenedEntry:
    index: int
    entry: AuditEntry
    tree_size: int  # the signed tree the entry was proven in
    filters: tuple[OpenedFilter, ...]


def open_entry(index: int, body: bytes, proof: list[bytes], note: str, vkey: VerifierKey,
               key: OpenKey) -> OpenedEntry:
    """Verify the entry's inclusion in a signed checkpoint, then open its sealed filters.

    Raises VerificationError if the entry is not in the signed log, CannotOpen for
    a key that is not the officers', NotFound if the entry holds no sealed text.
    """
    checkpoint = check_inclusion(index, body, proof, note, vkey)
    entry = AuditEntry.from_canonical(body)
    try:
        params = decode(dict(entry.params))
    except TicketRefused as exc:
        raise VerificationError(f"entry {index}'s parameters cannot be read: {exc}") from None
    logged = [(ref, side.filter) for ref, side in params.sides.items() if side.filter is not None]
    sealed = [(ref, f) for ref, f in logged if f.sealed]
    if not sealed:
        why = ("its filters were logged by a gateway without officer_seal_key, redacted only" if logged
               else "it logs no filter")
        raise NotFound(f"entry {index} holds no sealed text: {why}")
    opened = tuple(OpenedFilter(ref.dataset, ref.role, f.redacted, open_filter(key, f)) for ref, f in sealed)
    return OpenedEntry(index, entry, checkpoint.size, opened)
