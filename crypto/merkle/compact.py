"""The append-only frontier of a log tree, and MTH over a stream of leaf hashes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fedgate.crypto.merkle.hasher import LogHasher
from fedgate.crypto.merkle.proof import NodeID, range_nodes
from fedgate.core.errors import LocalProtocolError

__all__ = ["CompactRange", "root_from_leaf_hashes"]


class CompactRange:
    """Roots of the perfect subtrees covering leaves ``[0, size)``, largest first.

    There is one hash per set bit of ``size``, so the state is O(log size) and
    ``(size, frontier())`` is all a store needs to persist to resume appending.
    """

    __slots__ = ("_hasher", "_hashes", "_size")

    def __init__(self, hasher: LogHasher) -> None:
        """Start an empty tree."""
        self._hasher = hasher
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_frontier(
        cls, hasher: LogHasher, size: int, hashes: Sequence[bytes]
    ) -> CompactRange:
        """Resume from a persisted ``(size, frontier())`` pair; raises if they disagree."""
        if type(size) is not int or size < 0:
            raise LocalProtocolError("frontier size must be a non-negative int")
        if len(hashes) != size.bit_count():
            raise LocalProtocolError(
                f"a frontier of size {size} has {size.bit_count()} hashes, got {len(hashes)}"
            )
        for h in hashes:
            _check_hash(hasher, h)
        cr = cls(hasher)
        cr._size = size
        cr._hashes = [bytes(h) for h in hashes]
        return cr

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def frontier(self) -> list[bytes]:
        """A copy of the frontier hashes, largest subtree first (persist with ``size``)."""
        return list(self._hashes)

    def frontier_ids(self) -> list[NodeID]:
        """The node IDs of ``frontier()``, in the same order."""
        return range_nodes(0, self._size)

    def append(self, leaf_hash: bytes) -> list[tuple[NodeID, bytes]]:
        """Add one leaf hash; return the perfect nodes it completed, the leaf first.

        A store that keeps every returned node can serve any proof that
        ``fedgate.crypto.merkle.proof`` plans.
        """
        _check_hash(self._hasher, leaf_hash)
        index = self._size
        h = bytes(leaf_hash)
        done = [(NodeID(0, index), h)]
        level = 0
        # Each trailing 1 bit of the old size is a left sibling now completed.
        while (index >> level) & 1:
            h = self._hasher.hash_children(self._hashes.pop(), h)
            level += 1
            done.append((NodeID(level, index >> level), h))
        self._hashes.append(h)
        self._size += 1
        return done

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, discarding the completed nodes."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """MTH of the leaves so far (RFC 9162 §2.1.1)."""
        return _fold(self._hasher, self._hashes)

    def copy(self) -> CompactRange:
        """An independent range with the same state."""
        return CompactRange.from_frontier(self._hasher, self._size, self._hashes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"


def root_from_leaf_hashes(hasher: LogHasher, leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH (RFC 9162 §2.1.1) of the leaf hashes, in O(log n) memory for an iterator."""
    # Same algorithm as CompactRange.append without building NodeIDs: this is
    # the hot loop of a full-log audit.
    stack: list[bytes] = []
    size = 0
    hash_children = hasher.hash_children
    for leaf in leaf_hashes:
        _check_hash(hasher, leaf)
        h = leaf
        n = size
        while n & 1:
            h = hash_children(stack.pop(), h)
            n >>= 1
        stack.append(h)
        size += 1
    return _fold(hasher, stack)


def _fold(hasher: LogHasher, hashes: Sequence[bytes]) -> bytes:
    # The ragged right edge joins right to left: MTH = H(f0, H(f1, ... f_last)).
    if not hashes:
        return hasher.empty_root()
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = hasher.hash_children(h, acc)
    return bytes(acc)


def _check_hash(hasher: LogHasher, h: bytes) -> None:
    if len(h) != hasher.size:
        raise LocalProtocolError(f"hash is {len(h)} bytes, want {hasher.size}")
