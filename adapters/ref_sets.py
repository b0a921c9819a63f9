"""Sets of 64-bit row references as the difference check keeps and compares them: sorted arrays.

A reference is a keyed 64-bit hash, so a set's references are spread evenly
over the whole 64-bit range. Compressed bitmaps gain nothing on such sets
(pyroaring's BitMap64 gives nearly every reference a container of its own:
about 22 bytes a reference, serialised); a sorted array takes 8, is read back
without being rebuilt (`numpy.frombuffer`), and two of them are compared by a
merge. The comparison goes range by range in increasing order and stops as soon
as the difference reaches the bound that matters: each range's difference only
adds to the total, so the answer is exact below the bound. A kept set far from
the new one is left after its first few thousand references, and so is read no
further from its file (`chunks_of_blob`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap64

Refs = npt.NDArray[np.uint64]
_STORED = np.dtype("<u8")  # the stored byte order, whatever the machine's
FIRST_CHUNK = 4096         # references compared first: enough to leave a far set there
MAX_CHUNK = 1 << 16        # and then up to this many at a time (512 KiB read from a kept set)


def sorted_unique(values: Refs) -> Refs:
    """The distinct values, ascending (a sort and a mask: np.unique is several times slower on 1M values)."""
    out = np.sort(values.astype(np.uint64, copy=False))
    if len(out) > 1:
        keep = np.empty(len(out), dtype=bool)
        keep[0] = True
        np.not_equal(out[1:], out[:-1], out=keep[1:])
        out = out[keep]
    return out


class RefSet:
    """A set of row references: a sorted array of distinct 64-bit values."""

    __slots__ = ("values",)

    def __init__(self, values: Refs) -> None:
        self.values = values  # trusted: sorted, distinct, uint64 (use `of` for anything else)

    @classmethod
    def of(cls, refs: Iterable[int]) -> RefSet:
        """Any collection of references: a RefSet, a BitMap64 (sets kept before this format), ints."""
        if isinstance(refs, RefSet):
            return refs
        if isinstance(refs, BitMap64):
            return cls(np.frombuffer(refs.to_array(), dtype=np.uint64).copy())  # already sorted and distinct
        if isinstance(refs, np.ndarray):
            return cls(sorted_unique(refs))
        return cls(sorted_unique(np.fromiter(refs, dtype=np.uint64)))

    @classmethod
    def from_bytes(cls, blob: bytes) -> RefSet:
        return cls(np.frombuffer(blob, dtype=_STORED).astype(np.uint64, copy=False))

    def to_bytes(self) -> bytes:
        return self.values.astype(_STORED, copy=False).tobytes()

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[int]:
        return (int(v) for v in self.values)

    def __contains__(self, ref: object) -> bool:
        if not isinstance(ref, int) or not 0 <= ref < 1 << 64:
            return False
        at = int(np.searchsorted(self.values, np.uint64(ref)))
        return at < len(self.values) and int(self.values[at]) == ref

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RefSet) and np.array_equal(self.values, other.values)

    __hash__ = None  # type: ignore[assignment]  # mutable contents: not a dict key

    def __repr__(self) -> str:
        return f"RefSet({len(self)} references)"


def difference_below(refs: Refs, kept: Iterable[Refs], bound: int) -> int:
    """|refs Δ kept| when it is below `bound`; otherwise some number at least `bound`, found as soon as it is
    certain. `kept` comes as consecutive ascending chunks (a kept set as it is read from its file)."""
    difference, start = 0, 0
    for chunk in kept:
        if not len(chunk):
            continue
        # The new set's references up to this chunk's last: the two cover the same range of values.
        end = int(np.searchsorted(refs, chunk[-1], side="right"))
        part = refs[start:end]
        at = np.minimum(np.searchsorted(chunk, part), len(chunk) - 1)
        common = int(np.count_nonzero(chunk[at] == part))
        difference += len(part) + len(chunk) - 2 * common
        start = end
        if difference >= bound:
            return difference
    return difference + len(refs) - start


def chunks_of(values: Refs) -> Iterator[Refs]:
    """An array in the chunks `difference_below` takes: small first, so a far set is left early."""
    start, size = 0, FIRST_CHUNK
    while start < len(values):
        yield values[start:start + size]
        start, size = start + size, min(size * 4, MAX_CHUNK)


def chunks_of_blob(blob: sqlite3.Blob) -> Iterator[Refs]:
    """A kept set read from its file chunk by chunk: what is not compared is not read."""
    size = FIRST_CHUNK
    while data := blob.read(size * _STORED.itemsize):
        yield np.frombuffer(data, dtype=_STORED).astype(np.uint64, copy=False)
        size = min(size * 4, MAX_CHUNK)
