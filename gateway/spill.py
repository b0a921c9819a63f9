"""Bounded gateway memory: a large match's tokens and ciphertexts spilled to disk, intersected bucket by bucket.

Up to ``spill_above_rows`` a match keeps everything in memory (``fedgate.query.match.InMemory``). Past it,
each token goes with its arrival position to one of ``spill_buckets`` files per side, chosen by the
token's first two bytes (keyed hashes and blinded points are uniform), so equal tokens always share a
bucket: each bucket is intersected on its own with the in-memory algorithm
(``fedgate.crypto.intersect.match_rows``). A bucket of more than ``spill_bucket_rows`` records is split
into sub-bucket files by the tokens' next bits, recursively, so what is intersected at once does not grow
with the match. Matched rows are flagged, and their positions collected in arrival order, in files mapped
into memory (pages the kernel can drop, not anonymous memory); the result is the in-memory
``IntersectionResult``. A value holder's ciphertexts go to one file in arrival order (fixed width) and are
read back by position, a batch at a time, only when the arithmetic takes them.

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
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from fedgate.core.errors import RemoteProtocolError
from fedgate.crypto.intersect import IntersectionResult, Intersector, Side, TooManyPairs, match_rows
from fedgate.query.ciphertexts import CipherColumns

SPILL_DIR = "spill"
DEFAULT_ABOVE_ROWS = 250_000
DEFAULT_BUCKETS = 64
# Records (left plus right) a gateway intersects at once: a larger bucket is split by the tokens' next bits.
DEFAULT_BUCKET_ROWS = 1 << 20
log = logging.getLogger(__name__)
# A batch of ciphertext positions is read as one span when the span is at most this many times the batch.
_SPAN_SLACK = 4
# Rows of a file-backed array scanned at once when the matched flags become positions.
_SCAN_ROWS = 1 << 18


@dataclass(frozen=True)
class SpillConfig:
    """Where and from what size a gateway spills (``spill_above_rows``, ``spill_buckets``, ``spill_bucket_rows``
    in gateway.toml)."""

    root: Path
    above_rows: int = DEFAULT_ABOVE_ROWS
    buckets: int = DEFAULT_BUCKETS
    bucket_rows: int = DEFAULT_BUCKET_ROWS

    def for_query(self, query_id: str) -> QuerySpill:
        """The query's own directory under root (a fresh name if the id is not one: never root itself)."""
        name = query_id if re.fullmatch(r"[0-9a-f]{8,64}", query_id) else secrets.token_hex(16)
        return QuerySpill(self.root / name, self.above_rows, self.buckets, self.bucket_rows)


def remove_leftovers(root: Path) -> None:
    """Remove spill directories a crashed gateway left (called at start, holding the data_dir lock)."""
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class QuerySpill:
    """One query's spill directory and the stores that write to it (a ``fedgate.query.match.Stores``)."""

    directory: Path
    above_rows: int
    buckets: int
    bucket_rows: int = DEFAULT_BUCKET_ROWS
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

    def discard(self, fh: BinaryIO) -> None:
        """Close and delete one file of this query's before the query ends (a bucket already intersected)."""
        with contextlib.suppress(ValueError):
            self._files.remove(fh)
        with contextlib.suppress(OSError):
            fh.close()
        with contextlib.suppress(OSError):
            os.unlink(fh.name)

    def array(self, stem: str, dtype: npt.DTypeLike, count: int) -> tuple[npt.NDArray[Any], BinaryIO | None]:
        """A zeroed array of ``count`` items in a file of this query's, and the file: its pages are the file's,
        which the kernel may write back and drop, not the gateway's anonymous memory."""
        if count == 0:
            return np.zeros(0, dtype), None
        fh = self.open(stem)
        fh.truncate(count * np.dtype(dtype).itemsize)
        # The mapping outlives the file: remove() closes and unlinks it, the pages go with the last reference.
        return np.memmap(fh, dtype=dtype, mode="r+", shape=(count,)), fh

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
        """As ``Intersector.finish``; once spilled, a bucket at a time, none past ``bucket_rows`` but one token repeated."""
        if self._buckets is None:
            return super().finish(pairs=pairs, max_pairs=max_pairs)
        next_state = self._transition("finish")
        self._flush()
        self._state = next_state
        n_left, n_right = self.left_size, self.right_size
        done = _Matched(self._spill, n_left, n_right, max_pairs if pairs else -1)
        for b in range(self._spill.buckets):
            self._bucket(self._buckets["left"][b], self._buckets["right"][b], 0, done)
        left_positions, right_positions = done.positions()
        extra = {}
        if pairs:
            pl = np.concatenate([np.empty(0, np.int64), *(p[0] for p in done.paired)])
            pr = np.concatenate([np.empty(0, np.int64), *(p[1] for p in done.paired)])
            by_left = np.lexsort((pr, pl))
            extra = {"pair_left": _readonly(pl[by_left]), "pair_right": _readonly(pr[by_left])}
        return IntersectionResult(left_size=n_left, right_size=n_right, cardinality=len(left_positions),
                                  distinct_matches=done.distinct, left_positions=left_positions,
                                  right_positions=right_positions, **extra)

    def _bucket(self, left_fh: BinaryIO, right_fh: BinaryIO, used: int, done: _Matched) -> None:
        """Intersect one bucket, or, past ``bucket_rows`` records, split it by the tokens' next bits (equal
        tokens stay together) and intersect each part in turn; ``used`` bits were split on so far."""
        total = (_size(left_fh) + _size(right_fh)) // self._dtype.itemsize
        # Bits 16, 17, ... to the end, then 0 to 15, which the top-level bucket fixed only in part: a part
        # split on every bit holds one token, however often repeated (equal tokens are intersected together).
        if total > self._spill.bucket_rows and used < 8 * self.width:
            bits = min(8, 8 * self.width - used, max(1, (2 * total - 1) // self._spill.bucket_rows).bit_length())
            parts = {s: [self._spill.open(f"{s}-sub") for _ in range(1 << bits)] for s in ("left", "right")}
            alone = []
            for side, fh in (("left", left_fh), ("right", right_fh)):
                alone.append(self._split(fh, (16 + used) % (8 * self.width), bits, parts[side]))
                self._spill.discard(fh)
            # One token repeated on both sides: no further split divides it, so it is intersected now rather
            # than copied once per remaining bit.
            then = 8 * self.width if alone[0] is not None and alone[0] == alone[1] else used + bits
            for left_part, right_part in zip(parts["left"], parts["right"]):
                if _size(left_part) and _size(right_part):
                    continue
                # Nothing to match with on the other side: gone before the other parts are intersected.
                self._spill.discard(left_part)
                self._spill.discard(right_part)
            for left_part, right_part in zip(parts["left"], parts["right"]):
                if not left_part.closed:
                    self._bucket(left_part, right_part, then, done)
            return
        left, right = self._read(left_fh), self._read(right_fh)
        if used:
            self._spill.discard(left_fh)
            self._spill.discard(right_fh)
        tokens = np.concatenate([left["token"], right["token"]])
        words = np.ascontiguousarray(tokens).view(np.uint64).reshape(len(tokens), self.width // 8)
        del tokens
        try:
            lpos, rpos, distinct, bucket_pairs = match_rows(words, len(left), done.budget())
        except TooManyPairs:
            raise TooManyPairs(f"the match has more than {done.max_pairs:,} (left, right) pairs, the limit (keys "
                               "repeated on both sides)") from None
        done.add(left["pos"][lpos], right["pos"][rpos], distinct,
                 None if bucket_pairs is None else (left["pos"][bucket_pairs[0]], right["pos"][bucket_pairs[1]]))

    def _split(self, fh: BinaryIO, offset: int, bits: int, parts: list[BinaryIO]) -> bytes | None:
        """Copy a bucket's records to ``parts`` by ``bits`` bits of their token from bit ``offset`` (wrapping
        round to the first byte), ``bucket_rows`` records at a time; the token if all records hold one."""
        fh.flush()
        step = self._spill.bucket_rows * self._dtype.itemsize
        at, byte, shift = 0, offset // 8, 16 - offset % 8 - bits
        first: npt.NDArray[np.uint8] | None = None
        alone = True
        while data := os.pread(fh.fileno(), step, at):
            at += len(data)
            records = np.frombuffer(data, dtype=self._dtype)
            tokens = np.frombuffer(records["token"].tobytes(), np.uint8).reshape(len(records), self.width)
            first = tokens[0].copy() if first is None else first
            alone = alone and bool((tokens == first).all())
            pair = (tokens[:, byte].astype(np.int64) << 8) | tokens[:, (byte + 1) % self.width]
            part = (pair >> shift) & ((1 << bits) - 1)
            order = np.argsort(part, kind="stable")
            ends = np.cumsum(np.bincount(part, minlength=len(parts)))
            ordered = records[order]
            start = 0
            for p, end in enumerate(ends.tolist()):
                if end > start:
                    parts[p].write(ordered[start:end].tobytes())
                start = end
        return first.tobytes() if first is not None and alone else None

    def _read(self, fh: BinaryIO) -> npt.NDArray[np.void]:
        fh.flush()
        fh.seek(0)
        data = fh.read()
        # The bucket is read once: its file can go now.
        fh.truncate(0)
        return np.frombuffer(data, dtype=self._dtype)


class _Matched:
    """What a spilled intersection found so far, bucket by bucket: matched rows flagged in file-backed arrays."""

    def __init__(self, spill: QuerySpill, n_left: int, n_right: int, max_pairs: int) -> None:
        self.spill, self.max_pairs = spill, max_pairs
        self.flags = {side: spill.array(f"{side}-matched", np.bool_, n)
                      for side, n in (("left", n_left), ("right", n_right))}
        self.counts = {"left": 0, "right": 0}
        self.distinct, self.found = 0, 0
        self.paired: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []

    def budget(self) -> int:
        return self.max_pairs - self.found if self.max_pairs >= 0 else -1

    def add(self, left: npt.NDArray[np.int64], right: npt.NDArray[np.int64], distinct: int,
            paired: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None) -> None:
        # A row lies in exactly one bucket: its positions are counted once.
        self.flags["left"][0][left] = True
        self.flags["right"][0][right] = True
        self.counts["left"] += len(left)
        self.counts["right"] += len(right)
        self.distinct += distinct
        if paired is not None:
            self.found += len(paired[0])
            self.paired.append(paired)

    def positions(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Each side's matched positions, ascending, in a file-backed array (the flags' files go)."""
        out = []
        for side in ("left", "right"):
            flags, flags_file = self.flags[side]
            positions, _ = self.spill.array(f"{side}-positions", np.int64, self.counts[side])
            at = 0
            for start in range(0, len(flags), _SCAN_ROWS):
                found = np.flatnonzero(flags[start:start + _SCAN_ROWS]) + start
                positions[at:at + len(found)] = found
                at += len(found)
            assert at == len(positions)
            if flags_file is not None:
                self.spill.discard(flags_file)
            out.append(_readonly(positions))
        self.flags = {}
        return out[0], out[1]


def _size(fh: BinaryIO) -> int:
    fh.flush()
    return os.fstat(fh.fileno()).st_size


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
