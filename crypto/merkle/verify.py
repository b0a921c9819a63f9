"""Verify RFC 9162 inclusion and consistency proofs.

Preconditions are checked before any hashing and fail with ``MalformedProof``;
only a well-formed proof that leads to a different root raises
``RootMismatch(expected, calculated)``, so "the log was rewritten" never looks
like "the request was garbage". Success returns None; every failure raises.

The chaining follows the verification algorithms of RFC 9162 §2.1.3.2 and
§2.1.4.2. Those loops tell a short proof from a long one only part-way through;
here the exact proof length is derived from the sizes first, so a proof with a
missing or extra element is reported as malformed, not as a mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedgate.crypto.merkle.hasher import LogHasher
from fedgate.core.errors import MalformedProof, RootMismatch

__all__ = ["root_from_inclusion_proof", "verify_consistency", "verify_inclusion"]


def verify_inclusion(
    hasher: LogHasher,
    index: int,
    size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    root: bytes,
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Requires ``0 <= index < size`` and every hash exactly ``hasher.size`` bytes.
    """
    _check_hash(hasher, "root", root)
    calculated = root_from_inclusion_proof(hasher, index, size, leaf_hash, proof)
    if calculated != root:
        raise RootMismatch(expected=root, calculated=calculated)


def root_from_inclusion_proof(
    hasher: LogHasher,
    index: int,
    size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
) -> bytes:
    """The root that an inclusion proof for leaf ``index`` in a tree of ``size`` leaves implies.

    Requires ``0 <= index < size``, ``len(proof)`` exactly as RFC 9162 dictates for
    ``(index, size)``, and every hash exactly ``hasher.size`` bytes.
    """
    _check_size("index", index)
    _check_size("size", size)
    if index >= size:
        raise MalformedProof(f"leaf index {index} is not below tree size {size}")
    _check_hash(hasher, "leaf hash", leaf_hash)
    _check_proof(hasher, proof)
    steps = _inclusion_steps(index, size)
    if len(proof) != len(steps):
        raise MalformedProof(f"inclusion proof has {len(proof)} hashes, want {len(steps)}")
    r = leaf_hash
    for p, from_left in zip(proof, steps):
        r = hasher.hash_children(p, r) if from_left else hasher.hash_children(r, p)
    return r


def verify_consistency(
    hasher: LogHasher,
    size1: int,
    size2: int,
    proof: Sequence[bytes],
    root1: bytes,
    root2: bytes,
) -> None:
    """Check that the tree of ``size2`` leaves with ``root2`` extends the one of ``size1`` with ``root1``.

    Requires ``0 < size1 <= size2`` (or ``size1 == size2 == 0``, whose roots must be
    the empty root), an empty proof when the sizes are equal, ``len(proof)`` exactly
    as RFC 9162 dictates otherwise, and every hash exactly ``hasher.size`` bytes.
    """
    _check_size("size1", size1)
    _check_size("size2", size2)
    _check_hash(hasher, "root1", root1)
    _check_hash(hasher, "root2", root2)
    _check_proof(hasher, proof)
    if size1 > size2:
        raise MalformedProof(f"size1 {size1} is greater than size2 {size2}")
    if size1 == size2:
        if proof:
            raise MalformedProof("sizes are equal but the consistency proof is not empty")
        # An empty tree has a known root, so a caller holding another "root"
        # for size 0 has been fed a bogus checkpoint.
        trusted = hasher.empty_root() if size1 == 0 else root1
        for expected in (root1, root2):
            if expected != trusted:
                raise RootMismatch(expected=expected, calculated=trusted)
        return
    if size1 == 0:
        # Anything is consistent with nothing: such a "proof" would prove nothing.
        raise MalformedProof("consistency proof from an empty tree (size1 = 0)")

    # RFC 9162 §2.1.4.2 step 2: when size1 is a power of two the old root is
    # itself a node of the new tree, and the proof leaves it out.
    seeded_by_root1 = size1 & (size1 - 1) == 0
    # Step 4: the trailing 1 bits of size1 - 1 are levels where the old tree's
    # last subtree is complete; chaining starts above them.
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    steps = _chain_steps(fn, sn)
    want = len(steps) + (0 if seeded_by_root1 else 1)
    if len(proof) != want:
        raise MalformedProof(f"consistency proof has {len(proof)} hashes, want {want}")
    path = [root1, *proof] if seeded_by_root1 else list(proof)

    fr = sr = path[0]
    for c, from_left in zip(path[1:], steps):
        if from_left:
            # A left sibling lies inside both trees.
            fr = hasher.hash_children(c, fr)
            sr = hasher.hash_children(c, sr)
        else:
            # A right sibling exists only in the newer tree.
            sr = hasher.hash_children(sr, c)
    if fr != root1:
        raise RootMismatch(expected=root1, calculated=fr)
    if sr != root2:
        raise RootMismatch(expected=root2, calculated=sr)


def _inclusion_steps(index: int, size: int) -> list[bool]:
    return _chain_steps(index, size - 1)


def _chain_steps(fn: int, sn: int) -> list[bool]:
    """For each proof hash, whether it is the left sibling, per the RFC 9162 loop.

    ``fn`` is the position of the node being proved and ``sn`` the last position on
    the same level; the proof ends when the walk reaches the root (``sn == 0``).
    Running the loop without hashes yields the exact proof length up front.
    """
    if fn < 0 or sn < fn:
        # Negative positions never reach 0 under >>; refuse rather than spin.
        raise MalformedProof("proof position out of range")
    steps: list[bool] = []
    while sn:
        if fn & 1 or fn == sn:
            steps.append(True)
            # On the right edge a node with no right sibling is promoted
            # unchanged, so skip those levels.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            steps.append(False)
        fn >>= 1
        sn >>= 1
    return steps


def _check_size(name: str, value: int) -> None:
    if type(value) is not int or value < 0:
        raise MalformedProof(f"{name} must be a non-negative integer")


def _check_hash(hasher: LogHasher, name: str, value: bytes) -> None:
    if not isinstance(value, (bytes, bytearray)):
        raise MalformedProof(f"{name} is not bytes")
    if len(value) != hasher.size:
        raise MalformedProof(f"{name} is {len(value)} bytes, want {hasher.size}")


def _check_proof(hasher: LogHasher, proof: Sequence[bytes]) -> None:
    for i, p in enumerate(proof):
        _check_hash(hasher, f"proof[{i}]", p)
