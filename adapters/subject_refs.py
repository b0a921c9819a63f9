"""Subject references: keyed hashes of the identifiers a department's answers covered, never the identifiers.

A subject reference is BLAKE2b-64, keyed with a secret only the department
holds (`subject_refs.key` in its data dir, 0600), of an identifier's kind and
its value normalised as matching does. The key is not the row-reference key
(`row_refs.key`) of the difference check: the report tool a data office runs
needs this one only, and either can be destroyed without the other (deleting
this key makes the recorded uses unreadable by identifier).

Only resident IDs and USCCs are referenced: they are what a subject asks about,
and what `fedgate department subject-report` accepts. Sans-I/O apart from the
key file, and top-level so the worker pool can hash while it makes tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from fedgate.adapters.ref_sets import RefSet, sorted_unique
from fedgate.core.datasets import DatasetDecl
from fedgate.core.errors import InvalidIdentifier, InvalidInput
from fedgate.crypto.ids import IdKind, normaliser

KEY_FILE = "subject_refs.key"
SUBJECT_KINDS = (IdKind.RESIDENT_ID.value, IdKind.USCC.value)
REF_BYTES = 8


def new_hasher(secret: bytes) -> hashlib.blake2b:
    """A keyed hasher to copy per value (the key is absorbed once)."""
    return hashlib.blake2b(digest_size=REF_BYTES, key=secret)


def digest(hasher: hashlib.blake2b, kind: str, normalised: str | bytes) -> bytes:
    """The subject reference of one normalised identifier of `kind`, as 8 bytes (big-endian)."""
    h = hasher.copy()
    h.update(kind.encode() + b"\x00" + (normalised if isinstance(normalised, bytes) else normalised.encode()))
    return h.digest()


def subject_columns(decl: DatasetDecl) -> list[tuple[str, str]]:
    """The dataset's key fields that hold a resident ID or USCC, with their kinds, in declared order."""
    return [(f.name, f.key.value) for f in decl.fields if f.key is not None and f.key.value in SUBJECT_KINDS]


def refs_of_id(secret: bytes, raw: str) -> list[tuple[str, int]]:
    """(kind, reference) for each kind `raw` is a valid identifier of; InvalidInput (naming no value) if none."""
    hasher, out = new_hasher(secret), []
    for kind in SUBJECT_KINDS:
        try:
            value = normaliser(kind)(raw)
        except InvalidIdentifier:
            continue
        out.append((kind, int.from_bytes(digest(hasher, kind, value), "big")))
    if not out:
        raise InvalidInput("the identifier given is neither a valid resident ID nor a valid USCC "
                           "(its check character or length is wrong)")
    return out


class SubjectRefs:
    """One answer's subject references, built row by row (or from digests the workers made)."""

    def __init__(self, secret: bytes, kinds: Sequence[str]) -> None:
        self._hasher = new_hasher(secret)
        self._normalisers = [normaliser(k) for k in kinds]
        self._kinds = list(kinds)
        self._digests = bytearray()

    def add_rows(self, rows: Iterable[Sequence[object]]) -> None:
        """Add rows given as their subject columns' values (an invalid or missing value names nobody)."""
        kinds, normalisers, hasher, out = self._kinds, self._normalisers, self._hasher, self._digests
        for row in rows:
            for kind, normalise, value in zip(kinds, normalisers, row):
                if value is None or value == "":
                    continue
                try:
                    out += digest(hasher, kind, normalise(str(value)))
                except InvalidIdentifier:
                    continue

    def add_digests(self, data: bytes) -> None:
        """Add references already hashed (by `digest`, e.g. in a worker), 8 bytes each."""
        self._digests += data

    def refs(self) -> RefSet:
        values = np.frombuffer(bytes(self._digests), dtype=">u8").astype(np.uint64)
        return RefSet(sorted_unique(values))
