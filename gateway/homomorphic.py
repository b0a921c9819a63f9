"""The gateway's part of intersection-sum and comparison: arithmetic on ciphertexts it cannot read.

Adapters send each row's values encrypted under the supervisor's Paillier
key, in token order; the gateway keeps them as the packed bytes that arrived
(``CipherColumns``) and, once the intersection is known, multiplies the
matched ones into totals or blinds matched pairs into packed comparison
results. The heavy arithmetic runs in the gateway's worker pool, so the event
loop keeps serving other calls. Nothing here holds a private key or a
plaintext value; the gateway learns only sizes.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from fedgate.crypto.compare import Packing, blind_comparison, pack_comparisons
from fedgate.crypto.paillier import (
    MAX_CHUNK_CIPHERTEXTS,
    ciphertext_from_bytes,
    ciphertexts_from_bytes,
    ciphertext_to_bytes,
    ciphertexts_to_bytes,
    public_key_from_bytes,
)
from fedgate.core.encryptors import encryptor_for
from fedgate.query.ciphertexts import CipherColumns
from fedgate.server.worker_pool import WorkerPool

# Matched ciphertexts per worker task: large enough that pickling is small
# against the arithmetic, small enough that both workers stay busy.
SUM_BATCH = MAX_CHUNK_CIPHERTEXTS
COMPARE_BATCH_PACKS = 16
# Batches handed to the pool ahead of the one awaited: enough to keep every worker busy, and what bounds the
# ciphertexts held at once.
IN_FLIGHT = 8

__all__ = ["CipherColumns", "checked_key", "encrypted_totals", "packed_comparisons"]


def checked_key(public_key: bytes) -> int:
    """The modulus of a supervisor's public key in wire form (``RemoteProtocolError`` if malformed or small)."""
    return int(public_key_from_bytes(public_key).n)


# --- worker-pool tasks (top-level so they pickle) ---


def partial_product(public_key: bytes, ciphertexts: list[bytes]) -> bytes:
    """The product of a batch of ciphertexts: an encryption of the sum of their plaintexts."""
    enc = encryptor_for(public_key)
    # One packed parse: the key's width and n² are worked out once per batch, not once per ciphertext.
    parsed = ciphertexts_from_bytes(b"".join(ciphertexts), enc.public_key)
    return ciphertext_to_bytes(enc.sum_ciphertexts(parsed), enc.public_key)


def final_total(public_key: bytes, partials: list[bytes]) -> bytes:
    """Combine partial products and re-randomise fully, so the total reveals nothing of how it was made."""
    enc = encryptor_for(public_key)
    total = enc.sum_ciphertexts(ciphertext_from_bytes(c, enc.public_key) for c in partials)
    return ciphertext_to_bytes(enc.rerandomise_full(total), enc.public_key)


def blind_and_pack(public_key: bytes, xs: list[bytes], ys: list[bytes], a: int, b: int, bound: int,
                   packing: Packing) -> bytes:
    """Blind each pair's comparison ``a·x > b·y`` and pack ``packing.slots`` results per ciphertext."""
    enc = encryptor_for(public_key)
    pk = enc.public_key
    left, right = ciphertexts_from_bytes(b"".join(xs), pk), ciphertexts_from_bytes(b"".join(ys), pk)
    blinded = [blind_comparison(enc, x, y, a, b, x_bound=bound, y_bound=bound)
               for x, y in zip(left, right, strict=True)]
    packed = [pack_comparisons(enc, blinded[i:i + packing.slots], packing)
              for i in range(0, len(blinded), packing.slots)]
    return ciphertexts_to_bytes(packed, pk)


# --- orchestration ---


async def encrypted_totals(pool: WorkerPool, public_key: bytes, store: CipherColumns,
                           positions: npt.NDArray[np.int64], noise: Sequence[bytes] = ()) -> list[bytes]:
    """One encrypted total per value column over the rows at ``positions``; a noisy sum's ``noise`` (one
    ciphertext per column, from the value department) is multiplied in before the total is re-randomised."""
    totals = []
    for column in range(store.columns):
        # A window of batches in flight: the matched ciphertexts are taken a batch at a time (from disk, when
        # the store spilled), never all at once.
        batches = (store.take(positions[i:i + SUM_BATCH], column) for i in range(0, len(positions), SUM_BATCH))
        partials = [p async for p in _windowed(pool, partial_product, public_key, batches)] or [
            await pool.run(partial_product, public_key, [])]
        if noise:
            partials.append(noise[column])
        totals.append(await pool.run(final_total, public_key, partials))
    return totals


async def _windowed(pool: WorkerPool, task: Callable[..., bytes], public_key: bytes,
                    batches: Iterable[list[bytes]], *more: Iterable[list[bytes]]) -> AsyncIterator[bytes]:
    """``task(public_key, batch, ...)`` for each batch in the pool, at most IN_FLIGHT at a time, results in order."""
    pending: deque[asyncio.Future[bytes]] = deque()
    try:
        for args in zip(batches, *more):
            pending.append(pool.submit(task, public_key, *args))
            if len(pending) >= IN_FLIGHT:
                yield await pending.popleft()
        while pending:
            yield await pending.popleft()
    finally:
        for future in pending:  # a query that failed or was cancelled stops its queued work
            future.cancel()


async def packed_comparisons(pool: WorkerPool, public_key: bytes, left: CipherColumns, right: CipherColumns,
                             pair_left: npt.NDArray[np.int64], pair_right: npt.NDArray[np.int64],
                             a: int, b: int, bound: int, packing: Packing) -> AsyncIterator[bytes]:
    """Packed blinded comparison results for every pair, in pair order, a batch at a time."""
    step = packing.slots * COMPARE_BATCH_PACKS
    starts = range(0, len(pair_left), step)
    xs = (left.take(pair_left[i:i + step], 0) for i in starts)
    ys = (right.take(pair_right[i:i + step], 0) for i in starts)
    bound_task = functools.partial(_blind_and_pack_args, a=a, b=b, bound=bound, packing=packing)
    async for packed in _windowed(pool, bound_task, public_key, xs, ys):
        yield packed


def _blind_and_pack_args(public_key: bytes, xs: list[bytes], ys: list[bytes], *, a: int, b: int, bound: int,
                         packing: Packing) -> bytes:
    return blind_and_pack(public_key, xs, ys, a, b, bound, packing)
