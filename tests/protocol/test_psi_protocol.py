"""Both PSI modes end to end with in-memory parties (STYLE 1.5): no network.

Two adapters ("left" and "right") and the gateway's intersect step run in one
process. Every stream is re-split at arbitrary token boundaries (every
boundary for the small fixed case) and the two sides' chunks interleave in any
order; the cardinality and matched positions must equal the plaintext answer.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedgate.crypto import ids, psi
from fedgate.crypto.intersect import IntersectionResult, Intersector
from fedgate.core.errors import RemoteProtocolError

PROTOCOL_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

QUERY = b"q-2024-0042"
DOMAIN = b"fedgate/v1/" + QUERY + b"/resident_id"
SEAL_CONTEXT = b"fedgate/v1/" + QUERY + b"/hrss->market"

# Normalised identifiers as the adapters would hold them: resident IDs and
# unified social credit codes with valid check characters.
POOL = [
    ids.make_resident_id("110105", datetime.date(1960, 1, 1) + datetime.timedelta(days=97 * i), i)
    for i in range(16)
] + [ids.make_uscc(f"913101{i:02d}MA1FL{i:04d}") for i in range(8)]
assert all(ids.normalise(ids.IdKind.RESIDENT_ID, x) == x for x in POOL[:16])
assert all(ids.normalise(ids.IdKind.USCC, x) == x for x in POOL[16:])


def cut(data: bytes, width: int, cuts: list[int]) -> list[bytes]:
    """Split ``data`` at the given token indices (duplicates give empty chunks)."""
    bounds = [0, *sorted(min(c, len(data) // width) for c in cuts), len(data) // width]
    return [data[a * width:b * width] for a, b in zip(bounds, bounds[1:])]


@dataclass
class Wire:
    """What crosses the gateway: per-direction lists of chunks, in order."""

    chunks: dict[str, list[bytes]] = field(default_factory=dict)

    def send(self, name: str, chunks: list[bytes]) -> Iterator[bytes]:
        self.chunks[name] = list(chunks)
        return iter(self.chunks[name])


@dataclass
class Splits:
    """How to re-split each stream, and how to interleave the two sides at the gateway."""

    left_cuts: list[int] = field(default_factory=list)
    right_cuts: list[int] = field(default_factory=list)
    seed: int = 0


class PsiPair:
    """Runs the left adapter, the right adapter and the gateway's intersect step in memory."""

    def __init__(self, left: list[str], right: list[str], splits: Splits) -> None:
        self.left = [x.encode() for x in left]
        self.right = [x.encode() for x in right]
        self.splits = splits
        self.wire = Wire()

    def ecdh(self) -> IntersectionResult:
        a, b = psi.new_scalar(), psi.new_scalar()
        w = psi.POINT_BYTES
        # Round 1: each side hashes and blinds its own identifiers and streams them.
        to_right = self.wire.send("left->right", cut(psi.hash_and_blind(a, DOMAIN, self.left), w,
                                                     self.splits.left_cuts))
        to_left = self.wire.send("right->left", cut(psi.hash_and_blind(b, DOMAIN, self.right), w,
                                                    self.splits.right_cuts))
        # Round 2: each side re-blinds the other's points chunk by chunk as they
        # arrive and truncates them to tokens for the gateway.
        left_tokens = [psi.truncate_tokens(psi.blind_points(b, c)) for c in to_right]
        right_tokens = [psi.truncate_tokens(psi.blind_points(a, c)) for c in to_left]
        return self._intersect(left_tokens, right_tokens)

    def keyed(self) -> IntersectionResult:
        right_static = X25519PrivateKey.generate()  # registered with the gateway
        key = psi.new_psi_key()
        sealed = psi.seal_key(right_static.public_key().public_bytes_raw(), key, SEAL_CONTEXT)
        # The gateway relays ``sealed``; without the right's private key it cannot open it.
        with pytest.raises(RemoteProtocolError):
            psi.open_sealed_key(X25519PrivateKey.generate(), sealed, SEAL_CONTEXT)
        right_key = psi.open_sealed_key(right_static, sealed, SEAL_CONTEXT)
        t = psi.TOKEN_BYTES
        left_tokens = cut(psi.hmac_tokens(key, DOMAIN, self.left), t, self.splits.left_cuts)
        right_tokens = cut(psi.hmac_tokens(right_key, DOMAIN, self.right), t, self.splits.right_cuts)
        return self._intersect(left_tokens, right_tokens)

    def _intersect(self, left: list[bytes], right: list[bytes]) -> IntersectionResult:
        box = Intersector(max_tokens_per_side=max(len(self.left), len(self.right), 1))
        picks = [True] * len(left) + [False] * len(right)
        random.Random(self.splits.seed).shuffle(picks)
        queues = {True: iter(left), False: iter(right)}
        for is_left in picks:
            box.add("left" if is_left else "right", next(queues[is_left]))
        return box.finish()


def expected(left: list[str], right: list[str]) -> tuple[list[int], list[int], int]:
    """The plaintext answer, computed directly."""
    return (
        [i for i, x in enumerate(left) if x in right],
        [j for j, y in enumerate(right) if y in left],
        len(set(left) & set(right)),
    )


def check(result: IntersectionResult, left: list[str], right: list[str]) -> None:
    want_left, want_right, distinct = expected(left, right)
    assert (result.left_size, result.right_size) == (len(left), len(right))
    assert result.cardinality == len(want_left)
    assert result.left_positions.tolist() == want_left
    assert result.right_positions.tolist() == want_right
    assert result.distinct_matches == distinct


@st.composite
def id_sets(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Two lists of normalised identifiers: random with duplicates, empty, disjoint or identical."""
    some = st.lists(st.sampled_from(POOL), max_size=14)
    kind = draw(st.sampled_from(["random", "empty-left", "empty-right", "disjoint", "identical"]))
    if kind == "disjoint":
        left = draw(st.lists(st.sampled_from(POOL[::2]), max_size=14))
        return left, draw(st.lists(st.sampled_from(POOL[1::2]), max_size=14))
    if kind == "identical":
        left = draw(some)
        return left, draw(st.permutations(left))
    left, right = draw(some), draw(some)
    if kind == "empty-left":
        return [], right
    if kind == "empty-right":
        return left, []
    return left, right


splits = st.builds(
    Splits,
    left_cuts=st.lists(st.integers(min_value=0, max_value=15), max_size=5),
    right_cuts=st.lists(st.integers(min_value=0, max_value=15), max_size=5),
    seed=st.integers(min_value=0, max_value=2**32),
)


@PROTOCOL_SETTINGS
@given(sets=id_sets(), how=splits)
def test_ecdh_psi_matches_the_plaintext_intersection(
    sets: tuple[list[str], list[str]], how: Splits
) -> None:
    left, right = sets
    check(PsiPair(left, right, how).ecdh(), left, right)


@PROTOCOL_SETTINGS
@given(sets=id_sets(), how=splits)
def test_keyed_hash_psi_matches_the_plaintext_intersection(
    sets: tuple[list[str], list[str]], how: Splits
) -> None:
    left, right = sets
    check(PsiPair(left, right, how).keyed(), left, right)


# A small fixed case with duplicates on both sides, re-split at every boundary.
SMALL_LEFT = [POOL[0], POOL[1], POOL[0], POOL[2], POOL[16], POOL[3]]
SMALL_RIGHT = [POOL[16], POOL[0], POOL[5], POOL[16], POOL[0]]


@pytest.mark.parametrize("mode", ["ecdh", "keyed"])
def test_every_chunk_boundary(mode: str) -> None:
    # Every single cut, every pair of cuts, and one token per chunk.
    n_left, n_right = len(SMALL_LEFT), len(SMALL_RIGHT)
    cut_sets = [[]] + [[i] for i in range(7)] + [[i, j] for i in range(7) for j in range(i, 7)]
    cut_sets.append(list(range(7)))
    for k, cuts in enumerate(cut_sets):
        how = Splits(left_cuts=[c for c in cuts if c <= n_left],
                     right_cuts=[c for c in cuts if c <= n_right], seed=k)
        pair = PsiPair(SMALL_LEFT, SMALL_RIGHT, how)
        result = pair.ecdh() if mode == "ecdh" else pair.keyed()
        check(result, SMALL_LEFT, SMALL_RIGHT)
    assert result.left_positions.tolist() == [0, 2, 4]
    assert (result.cardinality, result.distinct_matches) == (3, 2)
