"""Bounded gateway memory: a large match's tokens and ciphertexts spilled to disk, intersected bucket by bucket.

Up to ``spill_above_rows`` a match keeps everything in memory (``fedgate.query.match.InMemory``). Past it,
each token goes with its arrival position to one of ``spill_buckets`` files per side, chosen by the
token's first two bytes (keyed hashes and blinded points are uniform), so equal tokens always share a
bucket: each bucket is intersected on its own with the in-memory algorithm
(``fedgate.crypto.intersect.match_rows``) and the positions are put back in arrival order, which gives
the same ``IntersectionResult`` as in memory. A value holder's ciphertexts go to one file in arrival
order (fixed width) and are read back by position, a batch at a time, only when the arithmetic takes them.

Files live in ``<data_dir>/spill/<query_id>/`` (0700) and hold only what the gateway receives anyway:
tokens, positions and ciphertexts, never an identifier. The pump removes the directory however the
query ends; a gateway starting removes what a crash left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from fedgate.core.errors import RemoteProtocolError
from fedgate.crypto.intersect import IntersectionResult, Intersector, Side, TooManyPairs, match_rows
from fedgate.query.ciphertexts import CipherColumns

SPILL_DIR = "spill"
DEFAULT_ABOVE_ROWS = 250_000
DEFAULT_BUCKETS = 64
log = logging.getLogger(__name__)
# A batch of ciphertext positions is read as one span when the span is at most this many times the batch.
_SPAN_SLACK = 4


@dataclass(frozen=True)
class SpillConfig:
    """Where and from what size a gateway spills (``spill_above_rows``, ``spill_buckets`` in gateway.toml)."""

    root: Path
    above_rows: int = DEFAULT_ABOVE_ROWS
    buckets: int = DEFAULT_BUCKETS

    def for_query(self, query_id: str) -> QuerySpill:
        """The query's own directory under root (a fresh name if the id is not one: never root itself)."""
        name = query_id if re.fullmatch(r"[0-9a-f]{8,64}", query_id) else secrets.token_hex(16)
        return QuerySpill(self.root / name, self.above_rows, self.buckets)


def remove_leftovers(root: Path) -> None:
    """Remove spill directories a crashed gateway left (called at start, holding the data_dir lock)."""
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class QuerySpill:
    """One query's spill directory and the stores that write to it (a ``fedgate.query.match.Stores``)."""

    directory: Path
    above_rows: int
    buckets: int
    _files: list[BinaryIO] = field(default_factory=list)
    _names: int = 0

    def intersector(self, max_tokens: int, width: int) -> Intersector:
        return SpillingIntersector(self, max_tokens_per_side=max_tokens, width=width)

    def ciphertexts(self, department: str, columns: int, width: int) -> CipherColumns:
        return SpilledCiphertexts(department, columns, width, spill=self)

    def open(self, stem: str) -> BinaryIO:
        """A new file of this query's (0600, in a 0700 directory made on first use), open for append and read."""
        if not self.directory.exists():
            self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.directory.mkdir(mode=0o700, exist_ok=True)
        self._names += 1
        path = self.directory / f"{stem}-{self._names}.bin"
        fh = open(path, "a+b", opener=lambda p, flags: os.open(p, flags, 0o600))  # closed in remove()
        self._files.append(fh)
        return fh

    def remove(self) -> None:
        """Close every file and remove the directory (a no-op when nothing spilled)."""
        for fh in self._files:
            with contextlib.suppress(OSError):
                fh.close()
        self._files.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


def _records(width: int) -> np.dtype[np.void]:
    return np.dtype([("token", f"V{width}"), ("pos", "<i8")])


class SpillingIntersector(Intersector):
    """An ``Intersector`` that moves its tokens to bucket files once both sides hold more than ``above_rows``."""

    def __init__(self, spill: QuerySpill, *, max_tokens_per_side: int, width: int) -> None:
        super().__init__(max_tokens_per_side=max_tokens_per_side, width=width)
        self._spill = spill
        self._dtype = _records(width)
        self._buckets: dict[Side, list[BinaryIO]] | None = None
        self._written: dict[Side, int] = {"left": 0, "right": 0}

    @property
    def spilled(self) -> bool:
        return self._buckets is not None

    def add(self, side: Side, chunk: bytes | bytearray | memoryview) -> None:
        super().add(side, chunk)
        if self._buckets is None and self.left_size + self.right_size > self._spill.above_rows:
            self._buckets = {s: [self._spill.open(f"{s}-bucket") for _ in range(self._spill.buckets)]
                             for s in ("left", "right")}
            log.info("match tokens past spill_above_rows (%d): spilled to %d buckets a side", self._spill.above_rows,
                     self._spill.buckets)
        if self._buckets is not None:
            self._flush()

    def _flush(self) -> None:
        assert self._buckets is not None
        for side in ("left", "right"):
            for chunk in self._chunks[side]:
                self._write(side, chunk)
            self._chunks[side] = []

    def _write(self, side: Side, chunk: npt.NDArray[np.uint8]) -> None:
        assert self._buckets is not None
        count = len(chunk) // self.width
        rows = chunk.reshape(count, self.width)
        records = np.empty(count, self._dtype)
        records["token"] = rows.view(f"V{self.width}").reshape(count)
        records["pos"] = np.arange(self._written[side], self._written[side] + count, dtype=np.int64)
        self._written[side] += count
        prefix = (rows[:, 0].astype(np.int64) << 8) | rows[:, 1]
        bucket = (prefix * self._spill.buckets) >> 16
        order = np.argsort(bucket, kind="stable")
        ends = np.cumsum(np.bincount(bucket, minlength=self._spill.buckets))
        ordered = records[order]
        start = 0
        for b, end in enumerate(ends.tolist()):
            if end > start:
                self._buckets[side][b].write(ordered[start:end].tobytes())
            start = end

    def finish(self, *, pairs: bool = False, max_pairs: int = 0) -> IntersectionResult:
        """As ``Intersector.finish``; once spilled, one bucket at a time."""
        if self._buckets is None:
            return super().finish(pairs=pairs, max_pairs=max_pairs)
        next_state = self._transition("finish")
        self._flush()
        self._state = next_state
        n_left, n_right = self.left_size, self.right_size
        matched = {"left": np.zeros(n_left, dtype=bool), "right": np.zeros(n_right, dtype=bool)}
        distinct, paired, found = 0, [], 0
        for b in range(self._spill.buckets):
            left, right = self._read(self._buckets["left"][b]), self._read(self._buckets["right"][b])
            tokens = np.concatenate([left["token"], right["token"]])
            words = np.ascontiguousarray(tokens).view(np.uint64).reshape(len(tokens), self.width // 8)
            budget = max_pairs - found if pairs else -1
            try:
                lpos, rpos, d, bucket_pairs = match_rows(words, len(left), budget)
            except TooManyPairs:
                raise TooManyPairs(f"the match has more than {max_pairs:,} (left, right) pairs, the limit (keys "
                                   "repeated on both sides)") from None
            distinct += d
            matched["left"][left["pos"][lpos]] = True
            matched["right"][right["pos"][rpos]] = True
            if bucket_pairs is not None:
                pl, pr = left["pos"][bucket_pairs[0]], right["pos"][bucket_pairs[1]]
                found += len(pl)
                paired.append((pl, pr))
        left_positions = _readonly(np.flatnonzero(matched["left"]).astype(np.int64, copy=False))
        right_positions = _readonly(np.flatnonzero(matched["right"]).astype(np.int64, copy=False))
        extra = {}
        if pairs:
            pl = np.concatenate([np.empty(0, np.int64), *(p[0] for p in paired)])
            pr = np.concatenate([np.empty(0, np.int64), *(p[1] for p in paired)])
            by_left = np.lexsort((pr, pl))
            extra = {"pair_left": _readonly(pl[by_left]), "pair_right": _readonly(pr[by_left])}
        return IntersectionResult(left_size=n_left, right_size=n_right, cardinality=len(left_positions),
                                  distinct_matches=distinct, left_positions=left_positions,
                                  right_positions=right_positions, **extra)

    def _read(self, fh: BinaryIO) -> npt.NDArray[np.void]:
        fh.flush()
        fh.seek(0)
        data = fh.read()
        # The bucket is read once: its file can go now.
        fh.truncate(0)
        return np.frombuffer(data, dtype=self._dtype)


@dataclass
class SpilledCiphertexts(CipherColumns):
    """``CipherColumns`` that move to one file, in arrival order, once they hold more than ``above_rows`` rows."""

    spill: QuerySpill | None = None
    _file: BinaryIO | None = None

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def add(self, data: bytes, rows: int) -> None:
        super().add(data, rows)
        assert self.spill is not None
        if self._file is None and self.rows > self.spill.above_rows:
            self._file = self.spill.open("values")
            log.info("ciphertexts past spill_above_rows (%d): spilled", self.spill.above_rows)
        if self._file is not None:
            for chunk in self.chunks:
                self._file.write(chunk)
            self.chunks.clear()

    def take(self, positions: npt.NDArray[np.int64], column: int) -> list[bytes]:
        """As ``CipherColumns.take``; once spilled, read from the file (a span at a time where positions are close)."""
        if self._file is None:
            return super().take(positions, column)
        if len(positions) and not (0 <= int(positions.min()) and int(positions.max()) < self.rows):
            raise RemoteProtocolError(f"a position lies outside department '{self.department}''s rows")
        self._file.flush()
        fd = self._file.fileno()
        stride, w, offset = self.columns * self.width, self.width, column * self.width
        wanted = positions.tolist()
        if not wanted:
            return []
        lo, hi = min(wanted), max(wanted)
        if hi - lo + 1 <= _SPAN_SLACK * len(wanted) + 64:
            span = os.pread(fd, (hi - lo + 1) * stride, lo * stride)
            return [span[(p - lo) * stride + offset:(p - lo) * stride + offset + w] for p in wanted]
        return [os.pread(fd, w, p * stride + offset) for p in wanted]


def _readonly(array: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    array.flags.writeable = False
    return array
