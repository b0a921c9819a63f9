"""Cross-check compact.py, proof.py and verify.py against RFC 9162 written out naively.

The reference below (``mth``, ``path``, ``subproof``) transcribes RFC 9162 §2.1.1,
§2.1.3.1 and §2.1.4.1 line by line, recursion included, and shares no code with
the package. It works on leaf hashes: MTH of a one-leaf list is that leaf's hash.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgate.crypto.merkle import (
    RFC6962_SHA256,
    CompactRange,
    NodeID,
    ProofPlan,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    range_nodes,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from fedgate.core.errors import LocalProtocolError, MalformedProof, RootMismatch

H = RFC6962_SHA256
EXHAUSTIVE = 70  # every (index, size) and (size1, size2) pair up to here
RANDOM_MAX = 3000  # hypothesis draws sizes up to here
LEAVES = [H.hash_leaf(f"entry {i}".encode()) for i in range(RANDOM_MAX)]


# --- the naive reference, straight from RFC 9162 -------------------------------


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@cache
def mth(lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi])."""
    n = hi - lo
    if n == 0:
        return H.empty_root()
    if n == 1:
        return LEAVES[lo]
    k = _k(n)
    return H.hash_children(mth(lo, lo + k), mth(lo + k, hi))


def path(m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]), m counted from lo."""
    n = hi - lo
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return path(m, lo, lo + k) + [mth(lo + k, hi)]
    return path(m - k, lo + k, hi) + [mth(lo, lo + k)]


def subproof(m: int, lo: int, hi: int, b: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b)."""
    n = hi - lo
    if m == n:
        return [] if b else [mth(lo, hi)]
    k = _k(n)
    if m <= k:
        return subproof(m, lo, lo + k, b) + [mth(lo + k, hi)]
    return subproof(m - k, lo + k, hi, False) + [mth(lo, lo + k)]


def naive_inclusion(index: int, size: int) -> list[bytes]:
    return path(index, 0, size)


def naive_consistency(size1: int, size2: int) -> list[bytes]:
    return subproof(size1, 0, size2, True)


def fetch(plan: ProofPlan, size: int) -> list[bytes]:
    """What a store does: read each planned node, which must lie inside the tree."""
    out = []
    for node in plan.ids:
        begin, end = node.coverage()
        assert end <= size, f"{node} is not a stored node of a tree of size {size}"
        out.append(mth(begin, end))
    return out


# --- the RFC 9162 §2.1.5 example tree, drawn ---------------------------------
#
#               hash                 Leaves d0..d6 (tree size 7).
#              /    \                Letters are the node hashes named in the RFC;
#             /      \               in NodeID(level, index) terms:
#            k        l                a..f = (0,0)..(0,5), j = (0,6)
#           / \      / \               g = (1,0), h = (1,1), i = (1,2)
#          g   h    i   j              k = (2,0)
#         / \ / \  / \  |              l = H(i, j) is ephemeral: it covers the
#         a b c d  e f  j              ragged range [4, 7), so no store holds it.
#         | | | |  | |  |
#        d0 d1 d2 d3 d4 d5 d6

LETTER = {
    "a": NodeID(0, 0), "b": NodeID(0, 1), "c": NodeID(0, 2), "d": NodeID(0, 3),
    "e": NodeID(0, 4), "f": NodeID(0, 5), "j": NodeID(0, 6),
    "g": NodeID(1, 0), "h": NodeID(1, 1), "i": NodeID(1, 2), "k": NodeID(2, 0),
}  # fmt: skip

# (RFC expression, planner call, proof letters, fetched node letters, ephemeral block)
EXAMPLES: list[tuple[str, ProofPlan, str, str, tuple[int, int]]] = [
    ("PATH(0, D[7]) = [b, h, l]", inclusion_nodes(0, 7), "bhl", "bhij", (2, 4)),
    ("PATH(3, D[7]) = [c, g, l]", inclusion_nodes(3, 7), "cgl", "cgij", (2, 4)),
    ("PATH(4, D[7]) = [f, j, k]", inclusion_nodes(4, 7), "fjk", "fjk", (0, 0)),
    ("PATH(6, D[7]) = [i, k]", inclusion_nodes(6, 7), "ik", "ik", (0, 0)),
    ("PROOF(3, D[7]) = [c, d, g, l]", consistency_nodes(3, 7), "cdgl", "cdgij", (3, 5)),
    ("PROOF(4, D[7]) = [l]", consistency_nodes(4, 7), "l", "ij", (0, 2)),
    ("PROOF(6, D[7]) = [i, j, k]", consistency_nodes(6, 7), "ijk", "ijk", (0, 0)),
]


def _letter_hash(letter: str) -> bytes:
    if letter == "l":
        return mth(4, 7)
    begin, end = LETTER[letter].coverage()
    return mth(begin, end)


@pytest.mark.parametrize(
    ("desc", "plan", "proof_letters", "node_letters", "block"),
    EXAMPLES,
    ids=[e[0] for e in EXAMPLES],
)
def test_rfc_example_tree(
    desc: str, plan: ProofPlan, proof_letters: str, node_letters: str, block: tuple[int, int]
) -> None:
    assert plan.ids == tuple(LETTER[c] for c in node_letters), desc
    assert (plan.ephemeral_start, plan.ephemeral_stop) == block
    assert plan.ephemeral == (NodeID(2, 1) if block != (0, 0) else None)
    assert plan.proof_length == len(proof_letters)
    assert plan.rehash(fetch(plan, 7)) == [_letter_hash(c) for c in proof_letters]


# --- exhaustive cross-checks for small trees -----------------------------------


def test_roots_agree_for_every_small_size() -> None:
    cr = CompactRange(H)
    assert cr.root() == H.empty_root() == root_from_leaf_hashes(H, [])
    for size in range(1, EXHAUSTIVE + 1):
        cr.append(LEAVES[size - 1])
        assert cr.size == size
        assert cr.root() == mth(0, size) == root_from_leaf_hashes(H, iter(LEAVES[:size]))


def test_appended_nodes_serve_every_plan() -> None:
    # The store's view: keep every node append() completes, then serve proofs
    # for every tree size seen so far from that table alone.
    store: dict[NodeID, bytes] = {}
    cr = CompactRange(H)
    for size in range(1, EXHAUSTIVE + 1):
        for node, h in cr.append(LEAVES[size - 1]):
            begin, end = node.coverage()
            assert h == mth(begin, end), node
            store[node] = h
        assert cr.frontier() == [store[n] for n in cr.frontier_ids()]
        for index in range(size):
            plan = inclusion_nodes(index, size)
            assert plan.rehash([store[n] for n in plan.ids]) == naive_inclusion(index, size)
        for size1 in range(1, size + 1):
            plan = consistency_nodes(size1, size)
            assert plan.rehash([store[n] for n in plan.ids]) == naive_consistency(size1, size)


def test_inclusion_every_index_and_size() -> None:
    for size in range(1, EXHAUSTIVE + 1):
        root = mth(0, size)
        for index in range(size):
            want = naive_inclusion(index, size)
            plan = inclusion_nodes(index, size)
            assert plan.proof_length == len(want)
            assert plan.rehash(fetch(plan, size)) == want, (index, size)
            assert inclusion_proof(LEAVES, index, size) == want, (index, size)
            assert verify_inclusion(H, index, size, LEAVES[index], want, root) is None  # type: ignore[func-returns-value]  # never a bool
            assert root_from_inclusion_proof(H, index, size, LEAVES[index], want) == root


def test_consistency_every_size_pair() -> None:
    for size2 in range(1, EXHAUSTIVE + 1):
        root2 = mth(0, size2)
        for size1 in range(1, size2 + 1):
            want = naive_consistency(size1, size2)
            plan = consistency_nodes(size1, size2)
            assert plan.proof_length == len(want)
            assert plan.rehash(fetch(plan, size2)) == want, (size1, size2)
            assert consistency_proof(LEAVES, size1, size2) == want, (size1, size2)
            assert verify_consistency(H, size1, size2, want, mth(0, size1), root2) is None  # type: ignore[func-returns-value]  # never a bool


def test_tampered_inclusion_proofs_fail_for_every_small_case() -> None:
    for size in range(1, EXHAUSTIVE + 1):
        root = mth(0, size)
        for index in range(size):
            proof = naive_inclusion(index, size)
            for i in range(len(proof)):
                bad = list(proof)
                bad[i] = _flip(bad[i])
                with pytest.raises(RootMismatch):
                    verify_inclusion(H, index, size, LEAVES[index], bad, root)
            with pytest.raises(RootMismatch):
                verify_inclusion(H, index, size, _flip(LEAVES[index]), proof, root)
            with pytest.raises(MalformedProof):
                verify_inclusion(H, index, size, LEAVES[index], [*proof, root], root)
            if proof:
                with pytest.raises(MalformedProof):
                    verify_inclusion(H, index, size, LEAVES[index], proof[:-1], root)


def test_tampered_consistency_proofs_fail_for_every_small_case() -> None:
    for size2 in range(2, EXHAUSTIVE + 1):
        root2 = mth(0, size2)
        for size1 in range(1, size2):
            root1 = mth(0, size1)
            proof = naive_consistency(size1, size2)
            for i in range(len(proof)):
                bad = list(proof)
                bad[i] = _flip(bad[i])
                with pytest.raises(RootMismatch):
                    verify_consistency(H, size1, size2, bad, root1, root2)
            with pytest.raises(RootMismatch):
                verify_consistency(H, size1, size2, proof, _flip(root1), root2)
            with pytest.raises(RootMismatch):
                verify_consistency(H, size1, size2, proof, root1, _flip(root2))
            with pytest.raises(MalformedProof):
                verify_consistency(H, size1, size2, proof[:-1], root1, root2)
            with pytest.raises(MalformedProof):
                verify_consistency(H, size1, size2, [*proof, root2], root1, root2)


# --- random larger trees ---------------------------------------------------------


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, RANDOM_MAX))
    return draw(st.integers(0, size - 1)), size


@settings(max_examples=60, deadline=None)
@given(index_and_size())
def test_random_inclusion(case: tuple[int, int]) -> None:
    index, size = case
    want = naive_inclusion(index, size)
    plan = inclusion_nodes(index, size)
    assert plan.rehash(fetch(plan, size)) == want
    assert inclusion_proof(LEAVES, index, size) == want
    verify_inclusion(H, index, size, LEAVES[index], want, mth(0, size))


@settings(max_examples=60, deadline=None)
@given(index_and_size())
def test_random_consistency(case: tuple[int, int]) -> None:
    size1, size2 = case[0] + 1, case[1]
    want = naive_consistency(size1, size2)
    plan = consistency_nodes(size1, size2)
    assert plan.rehash(fetch(plan, size2)) == want
    assert consistency_proof(LEAVES, size1, size2) == want
    verify_consistency(H, size1, size2, want, mth(0, size1), mth(0, size2))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, RANDOM_MAX), st.integers(0, RANDOM_MAX))
def test_random_compact_range_resumes_from_frontier(split: int, size: int) -> None:
    split = min(split, size)
    first = CompactRange(H)
    first.extend(LEAVES[:split])
    resumed = CompactRange.from_frontier(H, first.size, first.frontier())
    assert resumed == first
    resumed.extend(LEAVES[split:size])
    assert resumed.root() == mth(0, size) == root_from_leaf_hashes(H, LEAVES[:size])


def test_root_from_leaf_hashes_streams() -> None:
    # A generator has no len(); this also checks a size past 2**17 against a
    # different algorithm (level by level, carrying the odd node up).
    n = (1 << 17) + 5

    def leaves() -> Iterator[bytes]:
        for i in range(n):
            yield hashlib.sha256(i.to_bytes(4, "big")).digest()

    level = list(leaves())
    while len(level) > 1:
        nxt = [H.hash_children(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    assert root_from_leaf_hashes(H, leaves()) == level[0]


# --- NodeID and range decomposition ----------------------------------------------


def test_node_id_navigation() -> None:
    n = NodeID(2, 5)
    assert n.coverage() == (20, 24)
    assert n.parent() == NodeID(3, 2)
    assert n.sibling() == NodeID(2, 4)
    assert n.sibling().sibling() == n
    with pytest.raises(LocalProtocolError):
        NodeID(-1, 0)
    with pytest.raises(LocalProtocolError):
        NodeID(0, True)


def test_range_nodes_cover_exactly() -> None:
    for begin, end in itertools.combinations_with_replacement(range(0, 40), 2):
        nodes = range_nodes(begin, end)
        pos = begin
        for node in nodes:
            node_begin, node_end = node.coverage()
            assert node_begin == pos, (begin, end)
            pos = node_end
        assert pos == end, (begin, end)
        # Perfect and aligned, which coverage() guarantees, and never two
        # same-level siblings that should have been their parent.
        for a, b in itertools.pairwise(nodes):
            assert not (a.level == b.level and a.parent() == b.parent())


# --- preconditions ------------------------------------------------------------------


def test_planner_preconditions() -> None:
    with pytest.raises(LocalProtocolError):
        inclusion_nodes(5, 5)
    with pytest.raises(LocalProtocolError):
        inclusion_nodes(0, 0)
    with pytest.raises(LocalProtocolError):
        consistency_nodes(0, 5)
    with pytest.raises(LocalProtocolError):
        consistency_nodes(6, 5)
    assert consistency_nodes(0, 0) == ProofPlan(ids=())
    assert consistency_nodes(5, 5) == ProofPlan(ids=())
    with pytest.raises(LocalProtocolError):
        inclusion_proof(LEAVES[:3], 0, 4)
    with pytest.raises(LocalProtocolError):
        inclusion_nodes(2, 7).rehash([LEAVES[0]])


def test_verify_preconditions_are_malformed_not_mismatch() -> None:
    root = mth(0, 5)
    leaf = LEAVES[1]
    proof = naive_inclusion(1, 5)
    for args in [
        (5, 5, leaf, proof, root),  # index == size
        (-1, 5, leaf, proof, root),  # negative index
        (1, 5, leaf[:31], proof, root),  # short leaf hash
        (1, 5, leaf, proof, root + b"\x00"),  # long root
        (1, 5, leaf, [*proof[:-1], proof[-1][:16]], root),  # short proof hash
        (1, 5, leaf, [], root),  # wrong length
    ]:
        with pytest.raises(MalformedProof):
            verify_inclusion(H, *args)


def test_consistency_edge_cases() -> None:
    empty = H.empty_root()
    verify_consistency(H, 0, 0, [], empty, empty)
    verify_consistency(H, 3, 3, [], mth(0, 3), mth(0, 3))
    with pytest.raises(RootMismatch):
        verify_consistency(H, 3, 3, [], mth(0, 3), mth(0, 4))
    with pytest.raises(RootMismatch):
        # Size 0 has exactly one root: agreeing on another value proves nothing.
        verify_consistency(H, 0, 0, [], mth(0, 3), mth(0, 3))
    with pytest.raises(MalformedProof):
        verify_consistency(H, 0, 3, [], empty, mth(0, 3))
    with pytest.raises(MalformedProof):
        verify_consistency(H, 0, 3, naive_inclusion(0, 3), empty, mth(0, 3))
    with pytest.raises(MalformedProof):
        verify_consistency(H, 4, 3, [], mth(0, 4), mth(0, 3))
    with pytest.raises(MalformedProof):
        verify_consistency(H, 3, 3, [mth(0, 3)], mth(0, 3), mth(0, 3))


def test_root_mismatch_carries_both_roots() -> None:
    proof = naive_inclusion(2, 9)
    wrong_root = _flip(mth(0, 9))
    with pytest.raises(RootMismatch) as info:
        verify_inclusion(H, 2, 9, LEAVES[2], proof, wrong_root)
    assert info.value.expected == wrong_root
    assert info.value.calculated == mth(0, 9)


def test_compact_range_rejects_bad_state() -> None:
    with pytest.raises(LocalProtocolError):
        CompactRange.from_frontier(H, 5, [LEAVES[0]])  # 5 = 0b101 needs two hashes
    with pytest.raises(LocalProtocolError):
        CompactRange.from_frontier(H, 1, [b"short"])
    with pytest.raises(LocalProtocolError):
        CompactRange(H).append(b"short")


class _Blake2b16:
    """A toy 16-byte hasher: proves nothing is hard-wired to SHA-256."""

    size = 16

    def empty_root(self) -> bytes:
        return hashlib.blake2b(b"", digest_size=16).digest()

    def hash_leaf(self, data: bytes) -> bytes:
        return hashlib.blake2b(b"L" + data, digest_size=16).digest()

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        return hashlib.blake2b(b"N" + left + right, digest_size=16).digest()


def test_hasher_is_a_parameter() -> None:
    toy = _Blake2b16()
    leaves = [toy.hash_leaf(bytes([i])) for i in range(13)]
    cr = CompactRange(toy)
    cr.extend(leaves)
    root = cr.root()
    assert len(root) == 16 and root == root_from_leaf_hashes(toy, leaves)
    for i in range(13):
        verify_inclusion(toy, i, 13, leaves[i], inclusion_proof(leaves, i, 13, hasher=toy), root)
    verify_consistency(
        toy, 5, 13, consistency_proof(leaves, 5, 13, hasher=toy),
        root_from_leaf_hashes(toy, leaves[:5]), root,
    )
    with pytest.raises(MalformedProof):
        verify_inclusion(toy, 0, 13, LEAVES[0], [], root)  # a 32-byte leaf hash


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 0x01]) + h[1:]
