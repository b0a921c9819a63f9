"""Plan inclusion and consistency proofs as node IDs; the caller fetches the hashes.

Nodes are addressed like transparency-dev/merkle: ``NodeID(level, index)`` is the
root of the perfect subtree over leaves ``[index << level, (index + 1) << level)``.
Only perfect subtrees are ever stored. A proof element that covers a ragged right
edge (an *ephemeral* node) is rebuilt from the perfect subtrees under it by
``ProofPlan.rehash``; at most one element of an inclusion or consistency proof is
ephemeral, because once a path leaves the right edge of the tree every subtree
below it is perfect.

The full-list helpers ``inclusion_proof`` and ``consistency_proof`` implement
PATH and PROOF/SUBPROOF of RFC 9162 §2.1.3.1 and §2.1.4.1 on top of the plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedgate.crypto.merkle.hasher import RFC6962_SHA256, LogHasher
from fedgate.core.errors import LocalProtocolError

__all__ = [
    "NodeID",
    "ProofPlan",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "range_nodes",
]


@dataclass(frozen=True, slots=True, order=True)
class NodeID:
    """Root of the perfect subtree of height ``level`` that is ``index``-th from the left."""

    level: int
    index: int

    def __post_init__(self) -> None:
        # bool is an int subclass; NodeID(True, 0) is certainly a caller bug.
        for name, value in (("level", self.level), ("index", self.index)):
            if type(value) is not int or value < 0:
                raise LocalProtocolError(f"NodeID {name} must be a non-negative int")

    def coverage(self) -> tuple[int, int]:
        """The half-open leaf range ``[begin, end)`` under this node."""
        return self.index << self.level, (self.index + 1) << self.level

    def parent(self) -> NodeID:
        """The node one level up that has this node as a child."""
        return NodeID(self.level + 1, self.index >> 1)

    def sibling(self) -> NodeID:
        """The other child of this node's parent."""
        return NodeID(self.level, self.index ^ 1)


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """Which stored nodes make up a proof, and which of them fold into one ephemeral node.

    ``ids`` is in proof order (bottom-up). ``ids[ephemeral_start:ephemeral_stop]``,
    when non-empty, lists left to right the perfect subtrees under the single
    ephemeral proof element; ``ephemeral`` is where that element would sit if the
    tree were perfect (a cache key, never a stored node).
    """

    ids: tuple[NodeID, ...]
    ephemeral_start: int = 0
    ephemeral_stop: int = 0
    ephemeral: NodeID | None = None

    def __post_init__(self) -> None:
        start, stop = self.ephemeral_start, self.ephemeral_stop
        if start == stop:
            if self.ephemeral is not None:
                raise LocalProtocolError("ephemeral node without children")
            return
        # A one-node block needs no rehashing, so a real block has at least two.
        if not (0 <= start and start + 2 <= stop <= len(self.ids)) or self.ephemeral is None:
            raise LocalProtocolError("ephemeral block out of range")

    @property
    def proof_length(self) -> int:
        """Number of hashes in the finished proof."""
        block = self.ephemeral_stop - self.ephemeral_start
        return len(self.ids) - block + (1 if block else 0)

    def rehash(self, hashes: Sequence[bytes], hasher: LogHasher = RFC6962_SHA256) -> list[bytes]:
        """Turn the fetched hashes of ``ids`` (same order) into the proof."""
        if len(hashes) != len(self.ids):
            raise LocalProtocolError(f"got {len(hashes)} hashes for {len(self.ids)} nodes")
        for h in hashes:
            if len(h) != hasher.size:
                raise LocalProtocolError(f"stored node hash is {len(h)} bytes, want {hasher.size}")
        start, stop = self.ephemeral_start, self.ephemeral_stop
        if start == stop:
            return list(hashes)
        return [*hashes[:start], _fold_right(hasher, hashes[start:stop]), *hashes[stop:]]


def inclusion_nodes(index: int, size: int) -> ProofPlan:
    """Plan the inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

    Requires ``0 <= index < size``.
    """
    _check_int("index", index)
    _check_int("size", size)
    if index >= size:
        raise LocalProtocolError(f"index {index} out of range for tree size {size}")
    # Walk PATH(m, D[n]) top-down: at every split the proof gets the subtree on
    # the side away from the leaf.
    siblings: list[tuple[int, int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        level = _split_level(hi - lo)
        mid = lo + (1 << level)
        if index < mid:
            siblings.append((mid, hi, level))
            hi = mid
        else:
            siblings.append((lo, mid, level))
            lo = mid
    siblings.reverse()
    return _plan(siblings)


def consistency_nodes(size1: int, size2: int) -> ProofPlan:
    """Plan the consistency proof from tree size ``size1`` to ``size2``.

    Requires ``0 < size1 <= size2``, or ``size1 == size2 == 0`` (empty plan).
    """
    _check_int("size1", size1)
    _check_int("size2", size2)
    if size1 > size2:
        raise LocalProtocolError(f"size1 {size1} > size2 {size2}")
    if size1 == size2:
        return ProofPlan(ids=())
    if size1 == 0:
        raise LocalProtocolError("a consistency proof from the empty tree proves nothing")
    # SUBPROOF(m, D[n], b) unrolled: the elements appended after each recursive
    # call come out top-down, so collect and reverse.
    parts: list[tuple[int, int, int]] = []
    lo, hi, m, whole = 0, size2, size1, True
    while hi - lo != m:
        level = _split_level(hi - lo)
        k = 1 << level
        if m <= k:
            parts.append((lo + k, hi, level))
            hi = lo + k
        else:
            parts.append((lo, lo + k, level))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        # The old tree's last subtree is a perfect node only the proof supplies;
        # when size1 is a left subtree of size2 the verifier already has it (root1).
        parts.append((lo, hi, (hi - lo).bit_length() - 1))
    parts.reverse()
    return _plan(parts)


def inclusion_proof(
    leaf_hashes: Sequence[bytes],
    index: int,
    size: int,
    *,
    hasher: LogHasher = RFC6962_SHA256,
) -> list[bytes]:
    """PATH(index, D[size]) from the first ``size`` leaf hashes. Requires ``0 <= index < size <= len(leaf_hashes)``."""
    plan = inclusion_nodes(index, size)
    return plan.rehash(_node_hashes(hasher, leaf_hashes, size, plan), hasher)


def consistency_proof(
    leaf_hashes: Sequence[bytes],
    size1: int,
    size2: int,
    *,
    hasher: LogHasher = RFC6962_SHA256,
) -> list[bytes]:
    """PROOF(size1, D[size2]) from the first ``size2`` leaf hashes. Requires ``0 < size1 <= size2 <= len(leaf_hashes)``."""
    plan = consistency_nodes(size1, size2)
    return plan.rehash(_node_hashes(hasher, leaf_hashes, size2, plan), hasher)


def range_nodes(begin: int, end: int) -> list[NodeID]:
    """The fewest perfect subtrees that exactly cover leaves ``[begin, end)``, left to right."""
    _check_int("begin", begin)
    _check_int("end", end)
    if begin > end:
        raise LocalProtocolError(f"range begin {begin} > end {end}")
    nodes: list[NodeID] = []
    while begin < end:
        # The biggest subtree that starts at `begin` is limited both by the
        # alignment of `begin` and by how many leaves remain.
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        nodes.append(NodeID(level, begin >> level))
        begin += 1 << level
    return nodes


def _plan(parts: Sequence[tuple[int, int, int]]) -> ProofPlan:
    ids: list[NodeID] = []
    start = stop = 0
    ephemeral: NodeID | None = None
    for begin, end, nominal_level in parts:
        nodes = range_nodes(begin, end)
        if len(nodes) > 1:
            if ephemeral is not None:
                raise AssertionError("a proof with two ephemeral nodes")  # pragma: no cover
            start, stop = len(ids), len(ids) + len(nodes)
            ephemeral = NodeID(nominal_level, begin >> nominal_level)
        ids.extend(nodes)
    return ProofPlan(tuple(ids), start, stop, ephemeral)


def _node_hashes(
    hasher: LogHasher, leaf_hashes: Sequence[bytes], size: int, plan: ProofPlan
) -> list[bytes]:
    if size > len(leaf_hashes):
        raise LocalProtocolError(f"tree size {size} but only {len(leaf_hashes)} leaf hashes")
    out = []
    for node in plan.ids:
        begin, end = node.coverage()
        out.append(_perfect_root(hasher, leaf_hashes[begin:end]))
    return out


def _perfect_root(hasher: LogHasher, hashes: Sequence[bytes]) -> bytes:
    level = list(hashes)
    while len(level) > 1:
        level = [hasher.hash_children(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def _fold_right(hasher: LogHasher, hashes: Sequence[bytes]) -> bytes:
    # Subtrees on a ragged right edge join from the right: MTH(a, b, c) = H(a, H(b, c)).
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = hasher.hash_children(h, acc)
    return acc


def _split_level(n: int) -> int:
    """log2 of the largest power of two strictly less than ``n`` (RFC 9162's k); needs n > 1."""
    return (n - 1).bit_length() - 1


def _check_int(name: str, value: int) -> None:
    if type(value) is not int or value < 0:
        raise LocalProtocolError(f"{name} must be a non-negative int")
