"""Issuing query tickets: audit entry first, then a signed permission with its proofs."""

from __future__ import annotations

import hashlib
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.crypto.ticket import Ticket, TicketClaims, sign_claims
from fedgate.gateway.audit_log import AuditLog


class TicketIssuer:
    def __init__(self, log: AuditLog, key: Ed25519PrivateKey, ttl_s: int = 60) -> None:
        self._log = log
        self._key = key
        self._ttl_s = ttl_s

    async def issue(self, audience: str, query_id: str, entry_index: int, entry: bytes, base_size: int) -> Ticket:
        """A ticket for `audience` to serve the logged request at `entry_index`.

        The proofs lead to the latest checkpoint, which covers the entry and,
        sizes only growing, every checkpoint this gateway showed before.
        """
        size = self._log.size
        note = self._log.store.checkpoint_at(size)
        assert note is not None, "every append stores the checkpoint of its size"
        inclusion = await self._log.inclusion_proof(entry_index, size)
        # A base beyond our size means the adapter saw a longer log than we have:
        # send no proof and let the adapter refuse (it must, the log shrank).
        consistency = (await self._log.consistency_proof(base_size, size)
                       if 0 < base_size <= size else [])
        claims = TicketClaims(audience, query_id, entry_index, hashlib.sha256(entry).digest(),
                              int(time.time()) + self._ttl_s)
        return Ticket(sign_claims(claims, self._log.origin, self._key), entry, note,
                      tuple(inclusion), base_size, tuple(consistency))
