"""Issuing query tickets: audit entry first, then a signed permission with its proofs."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.crypto.ticket import Ticket, TicketClaims, sign_claims
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import AuditStore, SharedTurn

log = logging.getLogger(__name__)
# Polling another replica's admission turn: short at first, admissions take milliseconds.
_TURN_POLL_S = (0.002, 0.05)


class TicketIssuer:
    def __init__(self, log: AuditLog, key: Ed25519PrivateKey, ttl_s: int = 60,
                 clock: Callable[[], float] = time.time) -> None:
        self._log = log
        self._key = key
        self._ttl_s = ttl_s
        self._clock = clock

    async def issue(self, audience: str, query_id: str, entry_index: int, entry: bytes, base_size: int,
                    approvals: tuple[str, ...] = ()) -> Ticket:
        """A ticket for `audience` to serve the logged request at `entry_index`.

        The proofs lead to the store's latest checkpoint, not this replica's
        own last append: it covers the entry and every checkpoint any replica
        sharing the store showed before (so the adapter's `base_size` too).
        """
        size, note = await self._log.latest()
        inclusion = await self._log.inclusion_proof(entry_index, size)
        # A base beyond the latest size means the adapter saw a longer log than the store holds:
        # send no proof and let the adapter refuse (it must, the log shrank).
        consistency = (await self._log.consistency_proof(base_size, size)
                       if 0 < base_size <= size else [])
        now = int(self._clock())
        claims = TicketClaims(audience, query_id, entry_index, hashlib.sha256(entry).digest(),
                              now + self._ttl_s, now)
        return Ticket(sign_claims(claims, self._log.origin, self._key), entry, note,
                      tuple(inclusion), base_size, tuple(consistency), approvals)


class Admissions:
    """One ticket in flight per department, from its issue until the adapter has admitted it.

    An adapter accepts a ticket only if its consistency proof starts at the
    checkpoint the adapter accepted last. Concurrent queries to one department
    would otherwise race: each ticket is issued from the same last-accepted
    checkpoint, the first admitted moves it on, and the others are stale.
    Admission takes milliseconds, so queuing it costs little; the work itself
    runs concurrently. Replicas of the gateway sharing a PostgreSQL log also
    share the turn (an advisory lock, `AuditStore.shared_turn`).
    """

    def __init__(self, store: AuditStore | None = None) -> None:
        self._store = store
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending: set[asyncio.Future[None]] = set()

    async def acquire(self, department: str) -> Callable[[], None]:
        """Wait for `department`'s turn; returns the (idempotent) release."""
        lock = self._locks.setdefault(department, asyncio.Lock())
        await lock.acquire()
        try:
            turn = await self._take_shared(department)
        except BaseException:
            lock.release()
            raise
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                if turn is not None:
                    self._give_back(turn)
                lock.release()

        return release

    async def _take_shared(self, department: str) -> SharedTurn | None:
        turn = self._store.shared_turn(department) if self._store is not None else None
        if turn is None:
            return None
        delay = _TURN_POLL_S[0]
        while True:
            attempt = asyncio.ensure_future(asyncio.to_thread(turn.try_take))
            try:
                taken = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # The try runs on in its thread: whatever it took is given back once it ends.
                attempt.add_done_callback(lambda _: self._give_back(turn))
                raise
            except BaseException:
                self._give_back(turn)
                raise
            if taken:
                return turn
            await asyncio.sleep(delay)
            delay = min(delay * 2, _TURN_POLL_S[1])

    def _give_back(self, turn: SharedTurn) -> None:
        """Unlock in a thread; the next taker polls until it is done, so nothing waits here."""
        done = asyncio.ensure_future(asyncio.to_thread(turn.give_back))
        self._pending.add(done)
        done.add_done_callback(self._given_back)

    def _given_back(self, done: asyncio.Future[None]) -> None:
        self._pending.discard(done)
        if not done.cancelled() and done.exception() is not None:
            log.warning("could not give back an admission turn (its connection was closed instead): %s",
                        done.exception())
