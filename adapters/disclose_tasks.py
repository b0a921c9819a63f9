"""A match's disclosure step: find the matched rows again by their local hashes and mask them.

One function (`disclosed`) does it row by row, for the adapter reading its source and for a Spark source's
executors alike (`disclose_chunk`, broadcast with a `DiscloseJob`): top-level, so both pickle.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fedgate.adapters.disclosure import render
from fedgate.adapters.pool_tasks import local_hash
from fedgate.adapters.subject_refs import digest, new_hasher
from fedgate.core.classification import Levels
from fedgate.core.datasets import DatasetDecl, FieldGrant
from fedgate.core.errors import InvalidIdentifier
from fedgate.crypto.ids import normaliser


@dataclass(frozen=True)
class DiscloseJob:
    """What finds and masks a side's matched rows: sent to Spark's executors with each chunk, never stored.

    Rows are read as (key, the `value_fields` integer values, then one column per grant).
    """

    wanted: frozenset[bytes]  # the matched rows' local hashes (`pool_tasks.local_hash`)
    kind: str
    value_fields: int
    grants: tuple[FieldGrant, ...]
    decl: DatasetDecl
    levels: Levels
    limit: int
    subject_key: bytes = b""  # b"": the disclosed rows' subject references are not made

    def __repr__(self) -> str:  # a local hash is an unkeyed hash of an identifier: never in a log or traceback
        return (f"DiscloseJob(kind={self.kind!r}, fields={[g.name for g in self.grants]!r}, "
                f"limit={self.limit})")


@dataclass(frozen=True)  # not a NamedTuple: PySpark rewrites how namedtuples pickle
class FoundRow:
    """One disclosed row, masked: its texts, which of them are null, and its subject reference (or b"")."""

    values: list[str]
    nulls: list[bool]
    subject_ref: bytes


def disclosed(job: DiscloseJob, rows: Iterable[Sequence[Any]]) -> Iterator[FoundRow]:
    """The rows whose local hash `job` wants, masked, in the order read; an invalid key or a non-integer value
    skips its row (such a row made no token, so no position names it)."""
    normalise_one = normaliser(job.kind)
    hasher = new_hasher(job.subject_key) if job.subject_key else None
    n = job.value_fields
    for row in rows:
        if row[0] is None:
            continue
        try:
            ident = normalise_one(str(row[0])).encode()
        except InvalidIdentifier:
            continue
        values = row[1:1 + n]
        if any(not isinstance(v, int) for v in values):
            continue
        if local_hash(ident, values) in job.wanted:
            texts, nulls = render(row[1 + n:], job.grants, job.decl, job.levels)
            yield FoundRow(texts, nulls, b"" if hasher is None else digest(hasher, job.kind, ident))


def disclose_chunk(job: DiscloseJob, chunk: list[tuple[Any, ...]]) -> list[FoundRow]:
    """`disclosed` over one chunk, at most `job.limit` rows (the shape a source's `map_chunks` runs)."""
    return list(itertools.islice(disclosed(job, chunk), job.limit))
