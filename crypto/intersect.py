"""Intersect two streams of fixed-width tokens (sans-I/O state machine).

The gateway feeds each side's token chunks to an ``Intersector`` as they
arrive, in any interleaving, then calls ``finish``. Tokens are kept as the
caller's ``bytes`` plus a small NumPy view per chunk (no Python object per
token); ``finish`` concatenates each side once, sorts all tokens together
(``numpy.lexsort`` over 64-bit words) and marks groups of equal tokens.

Duplicates are allowed on both sides (one company with several subsidies):
``cardinality`` counts matching LEFT rows, i.e. left rows whose token occurs at
least once on the right; ``distinct_matches`` counts distinct matching values.

States (rules in ``_TRANSITIONS``; a local misuse raises and changes nothing,
a peer error moves to ERROR for good and drops the buffers)::

    OPEN --add--> OPEN --finish--> FINISHED
    OPEN --peer sends bad chunk / too many tokens--> ERROR

Measured with ``python bench/psi_primitives.py --intersect`` (AMD EPYC, one
core, NumPy 2.4; 16-byte random tokens, 1,000,000 left x 1,000,000 right,
500,000 common, chunks of 65,536 tokens): adding all chunks ~11 ms; ``finish``
~0.9 s (up to 2.2 s while other jobs shared the machine); NumPy peak during
``finish`` 46 MiB on top of the 32 MB of chunk bytes held until then
(tracemalloc, which NumPy reports its buffers to).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, NoReturn

import numpy as np
import numpy.typing as npt

from fedgate.core.errors import FailedPrecondition, LocalProtocolError, RemoteProtocolError

from .psi import MAX_CHUNK_TOKENS, POINT_BYTES, TOKEN_BYTES

__all__ = ["IntersectionResult", "Intersector", "IntersectorState", "Side", "TooManyPairs", "TooManyTokens",
           "match_rows"]

Side = Literal["left", "right"]
_SIDES: tuple[Side, Side] = ("left", "right")


class TooManyPairs(FailedPrecondition):
    """Keys repeated on both sides would make more pairs than the caller accepts."""


class TooManyTokens(RemoteProtocolError):
    """A side sent more tokens than ``max_tokens_per_side``."""


class IntersectorState(enum.Enum):
    """Where an ``Intersector`` is in its life."""

    OPEN = "open"
    FINISHED = "finished"
    ERROR = "error"


# (state, event) -> next state. A pair not listed is a local misuse. A peer
# error is not an event: it moves any OPEN intersector to ERROR.
_TRANSITIONS: dict[tuple[IntersectorState, str], IntersectorState] = {
    (IntersectorState.OPEN, "add"): IntersectorState.OPEN,
    (IntersectorState.OPEN, "finish"): IntersectorState.FINISHED,
}


@dataclass(frozen=True, slots=True, eq=False)
class IntersectionResult:
    """What the gateway learns: sizes, cardinality and which rows matched (positions, no tokens)."""

    left_size: int
    right_size: int
    # Number of left rows whose token also occurs on the right (duplicates count).
    cardinality: int
    # Number of distinct token values present on both sides.
    distinct_matches: int
    # Arrival-order positions of the matching rows, ascending, read-only.
    left_positions: npt.NDArray[np.int64]
    right_positions: npt.NDArray[np.int64]
    # With ``finish(pairs=True)``: every (left, right) pair of rows with equal
    # tokens, ordered by left then right position; empty otherwise.
    pair_left: npt.NDArray[np.int64] = field(default_factory=lambda: _readonly(np.empty(0, np.int64)))
    pair_right: npt.NDArray[np.int64] = field(default_factory=lambda: _readonly(np.empty(0, np.int64)))


class Intersector:
    """Accumulate two sides' tokens within limits, then intersect them once."""

    def __init__(
        self,
        *,
        max_tokens_per_side: int,
        width: int = TOKEN_BYTES,
        max_chunk_tokens: int = MAX_CHUNK_TOKENS,
    ) -> None:
        if width not in (TOKEN_BYTES, POINT_BYTES):
            raise LocalProtocolError(f"width must be {TOKEN_BYTES} or {POINT_BYTES}, got {width}")
        for name, value in (("max_tokens_per_side", max_tokens_per_side),
                            ("max_chunk_tokens", max_chunk_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LocalProtocolError(f"{name} must be a non-negative int")
        self.width = width
        self.max_tokens_per_side = max_tokens_per_side
        self.max_chunk_tokens = max_chunk_tokens
        self._state = IntersectorState.OPEN
        self._chunks: dict[Side, list[npt.NDArray[np.uint8]]] = {"left": [], "right": []}
        self._sizes: dict[Side, int] = {"left": 0, "right": 0}

    @property
    def state(self) -> IntersectorState:
        """Current state."""
        return self._state

    @property
    def left_size(self) -> int:
        """Left tokens received so far (check minimum set sizes before ``finish``)."""
        return self._sizes["left"]

    @property
    def right_size(self) -> int:
        """Right tokens received so far."""
        return self._sizes["right"]

    def add(self, side: Side, chunk: bytes | bytearray | memoryview) -> None:
        """Append one chunk of ``width``-byte tokens from ``side``."""
        next_state = self._transition("add")
        if side not in _SIDES:
            raise LocalProtocolError("side must be 'left' or 'right'")
        size = _byte_size(chunk)
        count, rest = divmod(size, self.width)
        if rest:
            self._fail(f"{side} chunk length {size} is not a multiple of {self.width}")
        if count > self.max_chunk_tokens:
            self._fail(f"{side} chunk has {count} tokens, limit is {self.max_chunk_tokens}")
        if self._sizes[side] + count > self.max_tokens_per_side:
            self._fail(f"{side} side exceeds the limit of {self.max_tokens_per_side} tokens", TooManyTokens)
        if count:
            # frombuffer shares an immutable bytes object; anything mutable is
            # copied so the caller cannot change tokens after the fact.
            data = chunk if isinstance(chunk, bytes) else bytes(chunk)
            self._chunks[side].append(np.frombuffer(data, dtype=np.uint8))
            self._sizes[side] += count
        self._state = next_state

    def finish(self, *, pairs: bool = False, max_pairs: int = 0) -> IntersectionResult:
        """Intersect everything received; the intersector accepts nothing afterwards.

        ``pairs`` also lists every matching (left, right) pair, refusing with
        ``TooManyPairs`` when duplicates on both sides make more than ``max_pairs``.
        """
        next_state = self._transition("finish")
        n_left, n_right = self._sizes["left"], self._sizes["right"]
        self._state = next_state
        left_positions, right_positions, distinct, paired = _match(
            self._take_rows(), n_left, max_pairs if pairs else -1)
        return IntersectionResult(
            left_size=n_left,
            right_size=n_right,
            cardinality=len(left_positions),
            distinct_matches=distinct,
            left_positions=left_positions,
            right_positions=right_positions,
            **({"pair_left": paired[0], "pair_right": paired[1]} if paired else {}),
        )

    def _take_rows(self) -> npt.NDArray[np.uint64]:
        # One copy of all tokens, left then right, as rows of 64-bit words;
        # the per-chunk views (and the caller's bytes, if unshared) go away.
        chunks = [np.empty(0, np.uint8), *self._chunks["left"], *self._chunks["right"]]
        self._chunks = {"left": [], "right": []}
        words: npt.NDArray[np.uint64] = np.concatenate(chunks).view(np.uint64)
        return words.reshape(len(words) * 8 // self.width, self.width // 8)

    def _transition(self, event: str) -> IntersectorState:
        try:
            return _TRANSITIONS[(self._state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"cannot {event} when the intersector is {self._state.value}"
            ) from None

    def _fail(self, message: str, error: type[RemoteProtocolError] = RemoteProtocolError) -> NoReturn:
        self._state = IntersectorState.ERROR
        self._chunks = {"left": [], "right": []}
        raise error(message)


def _byte_size(chunk: object) -> int:
    if isinstance(chunk, (bytes, bytearray)):
        return len(chunk)
    if isinstance(chunk, memoryview):
        return chunk.nbytes
    raise LocalProtocolError(f"chunk must be bytes, got {type(chunk).__name__}")


def match_rows(
    rows: npt.NDArray[np.uint64], n_left: int, max_pairs: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int,
           tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None]:
    """Intersect token rows (left rows first, then right) as ``finish`` does: for a caller that feeds one
    hash bucket at a time (the gateway's spilled intersection); ``max_pairs < 0`` lists no pairs."""
    return _match(rows, n_left, max_pairs)


def _match(
    rows: npt.NDArray[np.uint64], n_left: int, max_pairs: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int,
           tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None]:
    """Positions of left and right rows whose value occurs on the other side, the distinct count,
    and (when ``max_pairs >= 0``) the matching pairs."""
    total = rows.shape[0]
    if n_left == 0 or n_left == total:
        empty = _readonly(np.empty(0, np.int64))
        return empty, empty, 0, ((empty, empty) if max_pairs >= 0 else None)
    # lexsort's last key is the primary one; any total order works for grouping.
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    del rows
    starts = np.empty(total, dtype=bool)
    starts[0] = True
    np.any(ordered[1:] != ordered[:-1], axis=1, out=starts[1:])
    del ordered
    group = np.cumsum(starts) - 1
    del starts
    groups = int(group[-1]) + 1
    is_left = order < n_left
    has_left = np.zeros(groups, dtype=bool)
    has_left[group[is_left]] = True
    has_right = np.zeros(groups, dtype=bool)
    has_right[group[~is_left]] = True
    left = np.sort(order[is_left & has_right[group]]).astype(np.int64)
    right = (np.sort(order[~is_left & has_left[group]]) - n_left).astype(np.int64)
    distinct = int(np.count_nonzero(has_left & has_right))
    paired = _pairs(order, group, is_left, has_right, n_left, groups, max_pairs) if max_pairs >= 0 else None
    return _readonly(left), _readonly(right), distinct, paired


def _pairs(order: npt.NDArray[np.intp], group: npt.NDArray[np.intp], is_left: npt.NDArray[np.bool_],
           has_right: npt.NDArray[np.bool_], n_left: int, groups: int,
           max_pairs: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Every (left, right) pair with equal tokens: each matching left row repeated once per right row."""
    # Right rows in sorted order are contiguous per group: group g's run starts at start[g].
    right_group = group[~is_left]
    right_rows = (order[~is_left] - n_left).astype(np.int64)
    per_group = np.bincount(right_group, minlength=groups)
    start = np.cumsum(per_group) - per_group
    matched = is_left & has_right[group]
    left_rows = order[matched].astype(np.int64)
    left_groups = group[matched]
    counts = per_group[left_groups]
    total = int(counts.sum())
    if total > max_pairs:
        raise TooManyPairs(f"the match has {total:,} (left, right) pairs, more than the limit of {max_pairs:,} "
                           "(keys repeated on both sides)")
    first = np.repeat(start[left_groups], counts)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_left = np.repeat(left_rows, counts)
    pair_right = right_rows[first + within]
    by_left = np.lexsort((pair_right, pair_left))
    return _readonly(pair_left[by_left]), _readonly(pair_right[by_left])


def _readonly(array: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    array.flags.writeable = False
    return array
