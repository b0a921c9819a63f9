"""The gateway's append-only audit log: entries hashed into an RFC 9162 tree, checkpoints signed.

Every append stores the entry, the tree nodes it completes and a checkpoint
signed for the new size, in one transaction, before the caller gets its index
back. Proofs are planned by `fedgate.crypto.merkle` and read from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.core.audit_entry import AuditEntry
from fedgate.crypto.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from fedgate.crypto.cosignature import parse_cosignature_line
from fedgate.crypto.merkle import RFC6962_SHA256, CompactRange, consistency_nodes, inclusion_nodes
from fedgate.core.errors import FailedPrecondition, InvalidInput
from fedgate.gateway.audit_store import AuditStore
from fedgate.server import metrics

HASHER = RFC6962_SHA256
# Index ranges of other writers' entries remembered (newest kept); a reader far behind loses the oldest.
OTHERS_KEPT = 4096


@dataclass(frozen=True)
class Appended:
    index: int
    checkpoint: str  # signed note for size index + 1


class AuditLog:
    def __init__(self, store: AuditStore, key: Ed25519PrivateKey, origin: str, tree: CompactRange) -> None:
        self.store = store
        self._key = key
        self.origin = origin
        self._tree = tree
        # The largest size seen in the store: other replicas may have appended beyond our own tree.
        self._store_size = tree.size
        # Ranges of indexes other replicas appended, learnt at each of our appends (the gap it jumped).
        self._others: deque[range] = deque(maxlen=OTHERS_KEPT)
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, store: AuditStore, key: Ed25519PrivateKey, origin: str) -> AuditLog:
        """Resume from the store, refusing to start if its tree and latest checkpoint disagree."""

        def load() -> CompactRange:
            # One snapshot: another replica appending meanwhile must not look like a torn log.
            state = store.state()
            if state.checkpoint is None:
                if state.size:
                    raise FailedPrecondition("audit store has entries but no checkpoint; run `fedgate audit verify`")
                return CompactRange(HASHER)
            at, note = state.checkpoint
            tree = CompactRange.from_frontier(HASHER, at, state.frontier)
            cp = verify_checkpoint(note, origin, key.public_key(), origin=origin)
            if state.size != at or cp.size != at or cp.root_hash != tree.root():
                raise FailedPrecondition(
                    f"audit store is inconsistent: {state.size} entries but the latest checkpoint is for "
                    f"size {cp.size} with another root; run `fedgate audit verify`")
            return tree

        return cls(store, key, origin, await asyncio.to_thread(load))

    @property
    def size(self) -> int:
        return self._tree.size

    async def append(self, entry: AuditEntry) -> Appended:
        """Durably append one entry; returns its index and the signed checkpoint covering it."""
        body = entry.canonical()
        leaf = HASHER.hash_leaf(body)

        def build(size: int, frontier: Callable[[], list[bytes]]) -> tuple[Any, str, tuple[CompactRange, str]]:
            # Another gateway replica may have appended since: then resume from the stored frontier.
            tree = (self._tree.copy() if size == self._tree.size
                    else CompactRange.from_frontier(HASHER, size, frontier()))
            new_nodes = tree.append(leaf)
            note = sign_checkpoint(Checkpoint(self.origin, tree.size, tree.root()), self.origin, self._key)
            return new_nodes, note, (tree, note)

        async with self._lock:
            write = asyncio.ensure_future(asyncio.to_thread(self.store.append_next, body, build))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # The caller went away (a cancelled RPC), but the commit runs on in its thread:
                # wait for it so memory and store agree, then let the cancellation through.
                await asyncio.wait([write])
                if not write.cancelled() and write.exception() is None:
                    self._advance(write.result()[0])
                    metrics.record_audit_append(entry.status, entry.decision)
                raise
            # Only a committed append moves the in-memory tree forward.
            tree, note = write.result()
            self._advance(tree)
        metrics.record_audit_append(entry.status, entry.decision)
        return Appended(tree.size - 1, note)

    def _advance(self, tree: CompactRange) -> None:
        """Take the tree of our committed append; entries it jumped over are another writer's."""
        if tree.size - 1 > self._tree.size:
            self._others.append(range(self._tree.size, tree.size - 1))
        self._tree = tree

    def appended_by_others(self, start: int, stop: int) -> list[range]:
        """The indexes within [start, stop) other writers (replicas) appended, oldest first.

        Known up to this log's latest own append: each append learns the gap it jumped. With one
        writer (SQLite) it is always empty. Beyond OTHERS_KEPT gaps, the oldest are forgotten.
        """
        found: list[range] = []
        for gap in reversed(self._others):
            if gap.stop <= start:
                break
            if gap.start < stop:
                found.append(range(max(gap.start, start), min(gap.stop, stop)))
        return found[::-1]

    async def add_cosignature(self, note: str, witness: str, line: str) -> None:
        """Keep `witness`'s cosignature on our checkpoint `note` (one a ticket carried), if it has none there yet.

        Only a well-formed line under the caller's witness name is kept; its signature is the
        officer's to check (`fedgate audit verify --witness-keys`), against keys the officer pins.
        """
        cp = verify_checkpoint(note, self.origin, self._key.public_key(), origin=self.origin)
        name, _ = parse_cosignature_line(line)
        if name != witness:
            raise InvalidInput("the cosignature is not under the department's witness name")
        await asyncio.to_thread(self.store.add_cosignature, cp.size, witness, line)

    def latest_checkpoint(self) -> str | None:
        return self.store.latest_checkpoint()

    async def latest(self) -> tuple[int, str]:
        """The store's latest checkpoint (size, signed note).

        With replicas sharing the store it may be newer than this replica's own
        appends; it is never older than any checkpoint a replica has handed out,
        since each is committed before it leaves.
        """
        found = await asyncio.to_thread(self.store.latest_checkpoint_with_size)
        if found is None:
            raise FailedPrecondition("the audit log has no checkpoint yet")
        self._store_size = max(self._store_size, found[0])
        return found

    async def stored_size(self) -> int:
        """How many entries the store holds, with those other replicas appended."""
        size = await asyncio.to_thread(self.store.size)
        self._store_size = max(self._store_size, size)
        return size

    @property
    def _known_size(self) -> int:
        return max(self._tree.size, self._store_size)

    async def _knows(self, size: int) -> bool:
        """Whether the store holds a tree of `size`; another replica may have appended past what this one saw."""
        if size > self._known_size:
            with contextlib.suppress(FailedPrecondition):
                await self.latest()
        return size <= self._known_size

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not (0 <= index < size and await self._knows(size)):
            raise InvalidInput(f"no inclusion proof for index {index} in a tree of size {size} "
                               f"(the log has {self._known_size} entries)")
        plan = inclusion_nodes(index, size)
        return plan.rehash(await asyncio.to_thread(self.store.node_hashes, plan.ids), HASHER)

    async def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        if not (0 < size1 <= size2 and await self._knows(size2)):
            raise InvalidInput(f"no consistency proof from size {size1} to {size2} "
                               f"(the log has {self._known_size} entries)")
        plan = consistency_nodes(size1, size2)
        return plan.rehash(await asyncio.to_thread(self.store.node_hashes, plan.ids), HASHER)
