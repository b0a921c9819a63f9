"""Leaf and node hashing for an RFC 6962 / RFC 9162 Merkle tree."""

from __future__ import annotations

import hashlib
from typing import Final, Protocol

__all__ = ["LogHasher", "RFC6962_SHA256"]

# Domain separation (RFC 9162 §2.1.1): without distinct prefixes an interior
# node could be passed off as a leaf, giving second-preimage attacks.
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"


class LogHasher(Protocol):
    """The hash functions of an append-only log tree; tests may swap in a toy one."""

    @property
    def size(self) -> int:
        """Length in bytes of every hash this hasher returns."""
        ...

    def empty_root(self) -> bytes:
        """Root of the tree with no leaves."""
        ...

    def hash_leaf(self, data: bytes) -> bytes:
        """Hash of one leaf entry."""
        ...

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        """Hash of an interior node from its two children, in order."""
        ...


class _RFC6962Hasher:
    """SHA-256 with the 0x00 leaf and 0x01 node prefixes of RFC 6962 / 9162."""

    __slots__ = ()

    @property
    def size(self) -> int:
        """Always 32 (SHA-256)."""
        return hashlib.sha256().digest_size

    def empty_root(self) -> bytes:
        """SHA-256 of the empty string (RFC 9162 §2.1.1: MTH({}) = HASH())."""
        return hashlib.sha256(b"").digest()

    def hash_leaf(self, data: bytes) -> bytes:
        """SHA-256(0x00 || data)."""
        return hashlib.sha256(_LEAF_PREFIX + data).digest()

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        """SHA-256(0x01 || left || right)."""
        return hashlib.sha256(_NODE_PREFIX + left + right).digest()

    def __repr__(self) -> str:
        return "RFC6962_SHA256"


RFC6962_SHA256: Final[LogHasher] = _RFC6962Hasher()
"""The only hasher fedgate's audit log uses."""
