"""Issuing query tickets: audit entry first, then a signed permission with its proofs."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

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


class Admissions:
    """One ticket in flight per department, from its issue until the adapter has admitted it.

    An adapter accepts a ticket only if its consistency proof starts at the
    checkpoint the adapter accepted last. Concurrent queries to one department
    would otherwise race: each ticket is issued from the same last-accepted
    checkpoint, the first admitted moves it on, and the others are stale.
    Admission takes milliseconds, so queuing it costs little; the work itself
    runs concurrently. (Replicas of the gateway do not share this queue; a
    stale ticket is then re-issued, as before.)
    """

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, department: str) -> Callable[[], None]:
        """Wait for `department`'s turn; returns the (idempotent) release."""
        lock = self._locks.setdefault(department, asyncio.Lock())
        await lock.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                lock.release()

        return release
