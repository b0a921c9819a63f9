"""Property tests of the whole intersection-sum and comparison pipeline minus transport.

Tokens, intersection, the gateway's ciphertext arithmetic (fedgate.gateway.homomorphic,
run in threads) and the supervisor's decryption (fedgate.core.supervisor_keys) are the
real code; the reference is the plaintext computation on the same rows.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fedgate.crypto import psi
from fedgate.crypto.compare import packing_for
from fedgate.crypto.intersect import Intersector
from fedgate.crypto.paillier import ciphertext_bytes
from fedgate.core.encryptors import VALUE_BOUND, encryptor_for
from fedgate.gateway.homomorphic import CipherColumns, encrypted_totals, packed_comparisons
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.server.worker_pool import WorkerPool

# Each example encrypts up to ~60 values (0.16 ms each) and decrypts a few (2.6 ms each).
PIPELINE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = [f"K{i}".encode() for i in range(12)]
VALUES = st.one_of(st.integers(-10**6, 10**6), st.sampled_from([0, 1, -1, VALUE_BOUND, -VALUE_BOUND]))
ROWS = st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=30)


@pytest.fixture(scope="module")
def key() -> SupervisorKey:
    return SupervisorKey.generate()


def _columns(key: SupervisorKey, rows: list[tuple[bytes, int]], name: str) -> tuple[bytes, CipherColumns]:
    enc = encryptor_for(key.public_bytes)
    width = ciphertext_bytes(enc.n)
    store = CipherColumns(name, 1, width)
    store.add(b"".join(c.to_bytes(width, "big") for c in enc.encrypt_many([v for _, v in rows])), len(rows))
    return psi.hmac_tokens(b"k" * 32, b"test", [k for k, _ in rows]), store


@PIPELINE
@given(left=ROWS, right=st.lists(st.sampled_from(KEYS), max_size=20))
@example(left=[], right=[])
@example(left=[(b"K1", 5)], right=[b"K2"])                       # empty intersection: total 0
@example(left=[(b"K1", VALUE_BOUND)] * 3, right=[b"K1"])         # large values do not wrap
@example(left=[(b"K1", -VALUE_BOUND), (b"K1", 0)], right=[b"K1"])
def test_sum_equals_the_plaintext_sum(key: SupervisorKey, left: list[tuple[bytes, int]], right: list[bytes]) -> None:
    tokens, store = _columns(key, left, "left")
    intersector = Intersector(max_tokens_per_side=1000)
    intersector.add("left", tokens)
    intersector.add("right", psi.hmac_tokens(b"k" * 32, b"test", right))
    result = intersector.finish()
    (total,) = asyncio.run(encrypted_totals(WorkerPool(0), key.public_bytes, store, result.left_positions))
    assert key.decrypt_total(total) == sum(v for k, v in left if k in set(right))
    assert result.cardinality == sum(1 for k, _ in left if k in set(right))


@PIPELINE
@given(left=ROWS, right=ROWS, a=st.integers(1, 7), b=st.integers(1, 7))
@example(left=[(b"K1", 5)], right=[(b"K1", 5)], a=1, b=1)       # tie: not flagged
@example(left=[(b"K1", 6)], right=[(b"K1", 5)], a=1, b=1)       # x = y + 1: flagged
@example(left=[(b"K1", 6)], right=[(b"K1", 5)], a=5, b=6)       # 30 > 30 is not
@example(left=[(b"K1", VALUE_BOUND)], right=[(b"K1", -VALUE_BOUND)], a=7, b=7)
@example(left=[(b"K1", 0)], right=[(b"K2", 0)], a=1, b=1)       # no pairs
def test_comparison_flags_equal_the_plaintext_comparison(key: SupervisorKey, left: list[tuple[bytes, int]],
                                                         right: list[tuple[bytes, int]], a: int, b: int) -> None:
    ltokens, lstore = _columns(key, left, "left")
    rtokens, rstore = _columns(key, right, "right")
    intersector = Intersector(max_tokens_per_side=1000)
    intersector.add("left", ltokens)
    intersector.add("right", rtokens)
    result = intersector.finish(pairs=True, max_pairs=10_000)
    expected_pairs = [(i, j) for i, (kl, _) in enumerate(left) for j, (kr, _) in enumerate(right) if kl == kr]
    assert list(zip(result.pair_left.tolist(), result.pair_right.tolist())) == expected_pairs
    packing = packing_for(a, b, VALUE_BOUND, VALUE_BOUND, key.public_key.n)

    async def run() -> bytes:
        chunks = [c async for c in packed_comparisons(WorkerPool(0), key.public_bytes, lstore, rstore,
                                                      result.pair_left, result.pair_right, a, b, VALUE_BOUND,
                                                      packing)]
        return b"".join(chunks)

    flags = key.decrypt_flags(asyncio.run(run()), len(expected_pairs), packing)
    assert flags == [a * left[i][1] > b * right[j][1] for i, j in expected_pairs]


def test_too_many_pairs_is_refused_before_they_are_built() -> None:
    from fedgate.crypto.intersect import TooManyPairs

    intersector = Intersector(max_tokens_per_side=1000)
    intersector.add("left", b"\x01" * 16 * 40)
    intersector.add("right", b"\x01" * 16 * 40)
    with pytest.raises(TooManyPairs, match="1,600"):
        intersector.finish(pairs=True, max_pairs=1000)


def test_cipher_columns_refuse_wrong_sizes() -> None:
    from fedgate.core.errors import RemoteProtocolError

    store = CipherColumns("hrss", 2, 512)
    with pytest.raises(RemoteProtocolError, match="department 'hrss'"):
        store.add(b"\x00" * 1000, 1)
    store.add(b"\x01" * 1024, 1)
    with pytest.raises(RemoteProtocolError, match="values for 1 rows but 2 tokens"):
        store.check_complete(2)
    assert store.take(np.array([0], np.int64), 1) == [b"\x01" * 512]


def test_a_malformed_ciphertext_from_an_adapter_is_refused(key: SupervisorKey) -> None:
    from fedgate.core.errors import RemoteProtocolError

    width = ciphertext_bytes(key.public_key.n)
    store = CipherColumns("hrss", 1, width)
    store.add(b"\x00" * width, 1)  # c = 0 is no ciphertext
    with pytest.raises(RemoteProtocolError, match="not in"):
        asyncio.run(encrypted_totals(WorkerPool(0), key.public_bytes, store, np.array([0], np.int64)))
