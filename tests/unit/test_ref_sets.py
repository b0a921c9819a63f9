"""Row references as sorted arrays: the batched references against the row-by-row rule, and the early-leaving
symmetric difference against the plain one."""

from __future__ import annotations

import hashlib
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import BitMap64

from fedgate.adapters.ref_sets import RefSet, chunks_of, difference_below
from fedgate.adapters.row_history import RefBasis, RowRefs
from fedgate.core.errors import InvalidIdentifier
from fedgate.crypto.ids import normaliser

SECRET = bytes(range(32))


def row_by_row(secret: bytes, basis: RefBasis, rows: list[tuple[object, ...]]) -> set[int]:
    """The rule as first written (and as sets kept before were made): each row's keyed hash; a hash already
    taken, the hash of the material and its occurrence number (the n-th after the first, n)."""
    normalise = normaliser(basis.kind) if basis.kind else None

    def material(values: tuple[object, ...]) -> bytes:
        if normalise is None:
            return "\x1f".join("\x00" if v is None else repr(v) for v in values).encode()
        if values[0] is None or values[0] == "":
            return b"\x00missing"
        try:
            return b"k" + normalise(str(values[0])).encode()
        except InvalidIdentifier:
            return b"r" + str(values[0]).encode()

    def h(m: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(m, digest_size=8, key=secret).digest(), "big")

    refs: set[int] = set()
    seen: dict[bytes, int] = {}
    for values in rows:
        m = material(values)
        ref = h(m)
        if ref in refs:
            n = seen.get(m, 1)
            seen[m] = n + 1
            ref = h(m + b"\x1e" + str(n).encode())
        refs.add(ref)
    return refs


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "A ", "", None, "x y", "z"]) | st.text(max_size=4), max_size=60))
def test_batched_references_follow_the_row_by_row_rule(values: list[str | None]) -> None:
    rows = [(v,) for v in values]
    for basis in (RefBasis(("k",), "plain"), RefBasis(("k",), None)):
        refs = RowRefs(SECRET, basis)
        refs.add_rows(rows[: len(rows) // 2])
        for row in rows[len(rows) // 2:]:
            refs.add(row)  # one at a time or in bulk: the same
        assert set(refs.refs) == row_by_row(SECRET, basis, rows)
        assert refs.rows == len(rows) == len(refs.refs)  # every row a reference of its own


def test_references_in_row_order_are_each_rows() -> None:
    basis = RefBasis(("k",), "plain")
    refs = RowRefs(SECRET, basis)
    refs.add_rows([("x",), ("y",), ("x",), ("x",)])
    order = [int(v) for v in refs.in_row_order()]
    assert {order[1]} == row_by_row(SECRET, basis, [("y",)])
    assert {order[0], order[2], order[3]} == row_by_row(SECRET, basis, [("x",)] * 3)
    assert order[0] == min(row_by_row(SECRET, basis, [("x",)]))  # the first occurrence: the plain hash


def test_a_ref_set_reads_any_collection_and_compares_as_a_set() -> None:
    values = [5, 1, 2**64 - 1, 1, 0]
    one = RefSet.of(values)
    assert list(one) == [0, 1, 5, 2**64 - 1] and len(one) == 4
    assert one == RefSet.of(BitMap64(values)) == RefSet.of(np.array(values, dtype=np.uint64))
    assert one == RefSet.from_bytes(one.to_bytes()) and one != RefSet.of([0, 1, 5])
    assert 2**64 - 1 in one and 2 not in one and -1 not in one and 2**64 not in one


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_the_difference_is_exact_below_its_bound_and_leaves_early_above(data: st.DataObject) -> None:
    universe = data.draw(st.integers(1, 400))
    a = RefSet.of(data.draw(st.lists(st.integers(0, universe), max_size=300)))
    b = RefSet.of(data.draw(st.lists(st.integers(0, universe), max_size=300)))
    bound = data.draw(st.integers(1, 400))
    # b in consecutive chunks of any sizes, as a kept set is read from its file
    cuts = sorted(data.draw(st.lists(st.integers(0, len(b)), max_size=6)))
    chunks = [b.values[i:j] for i, j in zip([0, *cuts], [*cuts, len(b)])]
    truth = len(set(a) ^ set(b))
    got = difference_below(a.values, chunks, bound)
    assert got == truth if truth < bound else got >= bound


def test_a_far_set_is_left_after_its_first_chunk() -> None:
    rng = random.Random(7)
    a = RefSet.of(rng.getrandbits(64) for _ in range(100_000))
    b = RefSet.of(rng.getrandbits(64) for _ in range(100_000))
    taken = []

    def reading():
        for chunk in chunks_of(b.values):
            taken.append(len(chunk))
            yield chunk
    assert difference_below(a.values, reading(), 100) >= 100
    assert len(taken) == 1  # the rest of b was never read
    assert difference_below(a.values, chunks_of(b.values), 10**9) == len(set(a) ^ set(b))
