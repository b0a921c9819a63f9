"""Tests for fedgate.crypto.psi and fedgate.crypto.intersect: properties, then error cases.

There are no published known answers for this exact construction, so the
properties are checked against independent reference computations (Euler's
criterion for curve membership, the stdlib ``hmac`` for tokens, a brute-force
multiset intersection for the ``Intersector``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedgate.crypto import psi
from fedgate.crypto.intersect import Intersector, IntersectorState
from fedgate.core.errors import FedgateError, LocalProtocolError, RemoteProtocolError

PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

P = 2**255 - 19
A = 486662
DOMAIN = b"fedgate/test/q-1/resident_id"

idents = st.binary(max_size=40)
scalars = st.binary(min_size=32, max_size=32)


def on_curve(u: int) -> bool:
    """Euler's criterion: u is the u-coordinate of a curve point (not a twist point)."""
    return pow((u * u * u + A * u * u + u) % P, (P - 1) // 2, P) == 1


def u_bytes(u: int) -> bytes:
    return u.to_bytes(32, "little")


def points_of(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 32], "little") for i in range(0, len(data), 32)]


# Low-order u-coordinates (cr.yp.to/ecdh.html; libsodium blocks the same list):
# every clamped scalar is a multiple of 8, so X25519 maps them all to zero.
LOW_ORDER = [
    ("u=0 (order 2)", 0),
    ("u=1 (order 4, curve)", 1),
    ("u=p-1 (order 4, twist)", P - 1),
    ("order 8 (a)", 325606250916557431795983626356110631294008115727848805560023387167927233504),
    ("order 8 (b)", 39382357235489614581723060781553021112529911719440698176882885853963445705823),
]

# ---------------------------------------------------------------------------
# Hash to the curve
# ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(ident=idents)
def test_hash_to_point_is_a_canonical_curve_point(ident: bytes) -> None:
    point = psi.hash_to_point(DOMAIN, ident)
    u = int.from_bytes(point, "little")
    assert len(point) == psi.POINT_BYTES
    assert point[31] & 0x80 == 0
    assert u < P
    assert on_curve(u)
    assert u not in dict(LOW_ORDER).values()
    assert psi.hash_to_point(DOMAIN, ident) == point


@PROPERTY_SETTINGS
@given(a=st.integers(min_value=0, max_value=P - 1))
def test_jacobi_matches_eulers_criterion(a: int) -> None:
    euler = pow(a, (P - 1) // 2, P)
    assert psi._jacobi(a) == (0 if a == 0 else 1 if euler == 1 else -1)


def test_hash_to_point_is_try_and_increment_over_sha256() -> None:
    # Reference written from the docstring: label, 1-byte domain length,
    # domain, identifier, 1-byte counter; first curve point wins.
    ident = b"11010519491231002X"
    for counter in range(256):
        digest = bytearray(
            hashlib.sha256(b"fedgate-psi-h2c/v1" + bytes([len(DOMAIN)]) + DOMAIN + ident
                           + bytes([counter])).digest()
        )
        digest[31] &= 0x7F
        if int.from_bytes(digest, "little") < P and on_curve(int.from_bytes(digest, "little")):
            break
    assert psi.hash_to_point(DOMAIN, ident) == bytes(digest)


@PROPERTY_SETTINGS
@given(ident=idents)
def test_domain_separation(ident: bytes) -> None:
    assert psi.hash_to_point(b"fedgate/q-1/uscc", ident) != psi.hash_to_point(b"fedgate/q-2/uscc", ident)
    # The length prefix keeps (domain, identifier) pairs apart when their
    # concatenations are equal.
    assert psi.hash_to_point(b"ab", b"c" + ident) != psi.hash_to_point(b"abc", ident)
    key = bytes(32)
    assert psi.hmac_tokens(key, b"ab", [b"c" + ident]) != psi.hmac_tokens(key, b"abc", [ident])
    assert psi.hmac_tokens(key, b"d1", [ident]) != psi.hmac_tokens(key, b"d2", [ident])


# ---------------------------------------------------------------------------
# Blinding
# ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(ids=st.lists(idents, max_size=8), a=scalars, b=scalars)
def test_blinding_commutes(ids: list[bytes], a: bytes, b: bytes) -> None:
    hashed = b"".join(psi.hash_to_point(DOMAIN, i) for i in ids)
    assert psi.blind_points(b, psi.blind_points(a, hashed)) == psi.blind_points(
        a, psi.blind_points(b, hashed)
    )
    assert psi.hash_and_blind(a, DOMAIN, ids) == psi.blind_points(a, hashed)


@PROPERTY_SETTINGS
@given(ids=st.lists(idents, min_size=1, max_size=8), a=scalars, data=st.data())
def test_blinding_is_pointwise(ids: list[bytes], a: bytes, data: st.DataObject) -> None:
    points = psi.hash_and_blind(psi.new_scalar(), DOMAIN, ids)
    per_chunk = data.draw(st.integers(min_value=1, max_value=len(ids)))
    pieces = [psi.blind_points(a, c) for c in psi.split(points, psi.POINT_BYTES, per_chunk)]
    assert b"".join(pieces) == psi.blind_points(a, points)


@PROPERTY_SETTINGS
@given(ids=st.lists(idents, min_size=1, max_size=6), a=scalars, b=scalars)
def test_blinded_points_stay_on_the_curve(ids: list[bytes], a: bytes, b: bytes) -> None:
    # Multiplication keeps curve points on the curve and twist points on the
    # twist; hashing onto the curve only means no point reveals that bit.
    once = psi.hash_and_blind(a, DOMAIN, ids)
    twice = psi.blind_points(b, once)
    assert all(u < P and on_curve(u) for u in points_of(once) + points_of(twice))


@PROPERTY_SETTINGS
@given(raw=st.binary(min_size=32, max_size=32), a=scalars)
def test_multiplication_keeps_the_curve_or_twist_side(raw: bytes, a: bytes) -> None:
    # Why hash_to_point avoids the twist: this bit survives blinding, so a
    # hash onto curve-or-twist would show one bit of H(domain, id) per row.
    u = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if u >= P or u in dict(LOW_ORDER).values():
        return
    (v,) = points_of(psi.blind_points(a, u_bytes(u)))
    assert on_curve(v) == on_curve(u)


def test_tokens_are_unlinkable_across_queries() -> None:
    ids = [b"11010519491231002X", b"91350100M000100Y43"]
    b = psi.new_scalar()
    first = psi.truncate_tokens(psi.blind_points(b, psi.hash_and_blind(psi.new_scalar(), DOMAIN, ids)))
    second = psi.truncate_tokens(psi.blind_points(b, psi.hash_and_blind(psi.new_scalar(), DOMAIN, ids)))
    assert {first[:16], first[16:]}.isdisjoint({second[:16], second[16:]})
    assert psi.hmac_tokens(psi.new_psi_key(), DOMAIN, ids[:1]) != psi.hmac_tokens(
        psi.new_psi_key(), DOMAIN, ids[:1]
    )
    assert psi.new_scalar() != psi.new_scalar()


def test_truncate_tokens_keeps_the_first_16_bytes() -> None:
    points = bytes(range(32)) + bytes(range(100, 132))
    assert psi.truncate_tokens(points) == bytes(range(16)) + bytes(range(100, 116))
    assert psi.truncate_tokens(b"") == b""


def test_empty_inputs() -> None:
    scalar = psi.new_scalar()
    assert psi.blind_points(scalar, b"") == b""
    assert psi.hash_and_blind(scalar, DOMAIN, []) == b""
    assert psi.hmac_tokens(psi.new_psi_key(), DOMAIN, []) == b""
    assert list(psi.split(b"", 16, 3)) == []


# ---------------------------------------------------------------------------
# Keyed-hash tokens and sealed keys
# ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(key=st.binary(min_size=32, max_size=32), ids=st.lists(idents, max_size=8))
def test_hmac_tokens_match_the_stdlib(key: bytes, ids: list[bytes]) -> None:
    want = b"".join(
        hmac.new(key, bytes([len(DOMAIN)]) + DOMAIN + i, hashlib.sha256).digest()[:16] for i in ids
    )
    assert psi.hmac_tokens(key, DOMAIN, ids) == want


def test_sealed_key_round_trip() -> None:
    recipient = X25519PrivateKey.generate()
    public = recipient.public_key().public_bytes_raw()
    key = psi.new_psi_key()
    sealed = psi.seal_key(public, key, b"q-1")
    assert len(sealed) == psi.SEALED_KEY_BYTES == 92
    assert psi.open_sealed_key(recipient, sealed, b"q-1") == key
    # A fresh ephemeral key and nonce every time: two seals never repeat.
    assert psi.seal_key(public, key, b"q-1") != sealed
    assert psi.open_sealed_key(recipient, psi.seal_key(public, key, b""), b"") == key


def test_every_tampered_byte_of_a_sealed_key_is_refused() -> None:
    recipient = X25519PrivateKey.generate()
    sealed = psi.seal_key(recipient.public_key().public_bytes_raw(), psi.new_psi_key(), b"q-1")
    for i in range(len(sealed)):
        for bit in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[i] ^= bit
            with pytest.raises(RemoteProtocolError):
                psi.open_sealed_key(recipient, bytes(tampered), b"q-1")


# ---------------------------------------------------------------------------
# Token chunks
# ---------------------------------------------------------------------------


def test_token_chunk() -> None:
    chunk = psi.TokenChunk(16, bytearray(48))
    assert chunk.count == 3
    assert type(chunk.data) is bytes
    assert repr(chunk) == "TokenChunk(width=16, count=3)"
    assert psi.TokenChunk(32, b"").count == 0
    assert psi.TokenChunk(16, bytes(16 * psi.MAX_CHUNK_TOKENS)).count == psi.MAX_CHUNK_TOKENS


@PROPERTY_SETTINGS
@given(n=st.integers(min_value=0, max_value=40), per_chunk=st.integers(min_value=1, max_value=45),
       width=st.sampled_from([16, 32]))
def test_split_rejoins(n: int, per_chunk: int, width: int) -> None:
    data = bytes(i % 251 for i in range(n * width))
    pieces = list(psi.split(data, width, per_chunk))
    assert b"".join(pieces) == data
    assert all(0 < len(p) <= per_chunk * width and len(p) % width == 0 for p in pieces)
    assert len(pieces) == -(-n // per_chunk)


# ---------------------------------------------------------------------------
# Intersector
# ---------------------------------------------------------------------------

# Tokens from a small alphabet so duplicates and matches are common. Some
# share their first 8 bytes and differ only in the last 8, so grouping must
# compare whole tokens, not a 64-bit prefix.
TOKENS = [bytes([i]) * 16 for i in range(6)] + [bytes(8) + bytes([i]) * 8 for i in range(1, 4)]


def reference(left: list[bytes], right: list[bytes]) -> tuple[list[int], list[int], int]:
    return (
        [i for i, t in enumerate(left) if t in right],
        [j for j, t in enumerate(right) if t in left],
        len(set(left) & set(right)),
    )


@PROPERTY_SETTINGS
@given(left=st.lists(st.sampled_from(TOKENS), max_size=20),
       right=st.lists(st.sampled_from(TOKENS), max_size=20), data=st.data())
def test_intersector_matches_brute_force(left: list[bytes], right: list[bytes], data: st.DataObject) -> None:
    box = Intersector(max_tokens_per_side=20)
    lefts = list(psi.split(b"".join(left), 16, data.draw(st.integers(1, 5))))
    rights = list(psi.split(b"".join(right), 16, data.draw(st.integers(1, 5))))
    # Any interleaving of the two sides, each side in its own order.
    picks = data.draw(st.permutations([True] * len(lefts) + [False] * len(rights)))
    queues = {True: iter(lefts), False: iter(rights)}
    for is_left in picks:
        box.add("left" if is_left else "right", next(queues[is_left]))
    result = box.finish()
    want_left, want_right, distinct = reference(left, right)
    assert (result.left_size, result.right_size) == (len(left), len(right))
    assert result.left_positions.tolist() == want_left
    assert result.right_positions.tolist() == want_right
    assert result.cardinality == len(want_left)
    assert result.distinct_matches == distinct
    assert box.state is IntersectorState.FINISHED


def test_intersector_result_arrays() -> None:
    box = Intersector(max_tokens_per_side=4, width=32)
    box.add("left", bytes(32) + bytes([1]) * 32 + bytes(32))
    box.add("right", bytes(32))
    result = box.finish()
    assert result.left_positions.dtype == np.int64
    assert result.left_positions.tolist() == [0, 2]
    assert (result.cardinality, result.distinct_matches) == (2, 1)
    assert not result.left_positions.flags.writeable
    empty = Intersector(max_tokens_per_side=0).finish()
    assert (empty.left_size, empty.right_size, empty.cardinality) == (0, 0, 0)
    assert empty.left_positions.dtype == np.int64


def test_intersector_copies_mutable_chunks() -> None:
    box = Intersector(max_tokens_per_side=1)
    chunk = bytearray(16)
    box.add("left", chunk)
    box.add("right", bytes(16))
    chunk[0] = 1
    assert box.finish().cardinality == 1
    # A memoryview over 8-byte items still counts bytes, not items.
    box = Intersector(max_tokens_per_side=2)
    box.add("left", memoryview(np.zeros(4, np.uint64)))
    assert box.left_size == 2


def test_intersector_refuses_adds_after_finish() -> None:
    box = Intersector(max_tokens_per_side=1)
    box.finish()
    with pytest.raises(LocalProtocolError):
        box.add("left", bytes(16))
    with pytest.raises(LocalProtocolError):
        box.finish()
    assert box.state is IntersectorState.FINISHED


def test_intersector_stays_in_error_after_a_peer_error() -> None:
    box = Intersector(max_tokens_per_side=2)
    box.add("left", bytes(32))
    with pytest.raises(RemoteProtocolError):
        box.add("left", bytes(16))
    assert box.state is IntersectorState.ERROR
    with pytest.raises(LocalProtocolError):
        box.add("right", bytes(16))
    with pytest.raises(LocalProtocolError):
        box.finish()
    assert box.state is IntersectorState.ERROR


def test_intersector_local_misuse_leaves_state_unchanged() -> None:
    box = Intersector(max_tokens_per_side=2)
    with pytest.raises(LocalProtocolError):
        box.add("middle", bytes(16))  # type: ignore[arg-type]  # the point of the test
    with pytest.raises(LocalProtocolError):
        box.add("left", "not bytes")  # type: ignore[arg-type]  # the point of the test
    assert box.state is IntersectorState.OPEN
    box.add("left", bytes(16))
    assert box.left_size == 1


# ---------------------------------------------------------------------------
# Errors: the right class, and no input bytes in any message
# ---------------------------------------------------------------------------

SCALAR = bytes(range(1, 33))
SECRET_ID = b"11010519491231002X"
SECRET_KEY = bytes(range(200, 232))
RECIPIENT = X25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
VALID_POINT = psi.hash_to_point(DOMAIN, SECRET_ID)
SEALED = psi.seal_key(RECIPIENT.public_key().public_bytes_raw(), SECRET_KEY, b"q-1")


def _over_limit() -> None:
    box = Intersector(max_tokens_per_side=1)
    box.add("right", VALID_POINT[:16])
    box.add("right", VALID_POINT[16:])


# (description, call, expected error class, the secret bytes that must not leak)
ERROR_CASES: list[tuple[str, Callable[[], object], type[FedgateError], list[bytes]]] = [
    ("points-length-31", lambda: psi.blind_points(SCALAR, VALID_POINT[:31]), RemoteProtocolError, [VALID_POINT]),
    ("points-length-33", lambda: psi.blind_points(SCALAR, VALID_POINT + b"\x01"), RemoteProtocolError,
     [VALID_POINT]),
    *[
        (f"low-order-{desc}", (lambda u=u: psi.blind_points(SCALAR, VALID_POINT * 2 + u_bytes(u))),
         RemoteProtocolError, [VALID_POINT])
        for desc, u in LOW_ORDER
    ],
    ("bit-255-set", lambda: psi.blind_points(SCALAR, VALID_POINT[:31] + bytes([VALID_POINT[31] | 0x80])),
     RemoteProtocolError, [VALID_POINT]),
    ("u-equals-p", lambda: psi.blind_points(SCALAR, u_bytes(P)), RemoteProtocolError, []),
    ("u-equals-p-plus-9", lambda: psi.blind_points(SCALAR, u_bytes(P + 9)), RemoteProtocolError, []),
    ("scalar-length", lambda: psi.blind_points(SCALAR[:31], VALID_POINT), LocalProtocolError, [SCALAR[:31]]),
    ("scalar-not-bytes", lambda: psi.hash_and_blind("x" * 32, DOMAIN, []),  # type: ignore[arg-type]
     LocalProtocolError, []),
    ("identifier-not-bytes", lambda: psi.hash_and_blind(SCALAR, DOMAIN, ["11010519491231002X"]),  # type: ignore[list-item]
     LocalProtocolError, [SECRET_ID]),
    ("domain-empty", lambda: psi.hash_to_point(b"", SECRET_ID), LocalProtocolError, [SECRET_ID]),
    ("domain-too-long", lambda: psi.hash_to_point(b"d" * 256, SECRET_ID), LocalProtocolError, [SECRET_ID]),
    ("truncate-length", lambda: psi.truncate_tokens(VALID_POINT[:20]), RemoteProtocolError, [VALID_POINT[:20]]),
    ("hmac-key-length", lambda: psi.hmac_tokens(SECRET_KEY[:16], DOMAIN, [SECRET_ID]), LocalProtocolError,
     [SECRET_KEY[:16], SECRET_ID]),
    ("seal-recipient-length", lambda: psi.seal_key(VALID_POINT[:31], SECRET_KEY, b"q"), LocalProtocolError,
     [VALID_POINT[:31], SECRET_KEY]),
    ("seal-recipient-low-order", lambda: psi.seal_key(u_bytes(1), SECRET_KEY, b"q"), LocalProtocolError,
     [SECRET_KEY]),
    ("seal-key-length", lambda: psi.seal_key(VALID_POINT, SECRET_KEY + b"\x00", b"q"), LocalProtocolError,
     [SECRET_KEY]),
    ("open-wrong-context", lambda: psi.open_sealed_key(RECIPIENT, SEALED, b"q-2"), RemoteProtocolError,
     [SEALED, SECRET_KEY]),
    ("open-wrong-recipient", lambda: psi.open_sealed_key(X25519PrivateKey.generate(), SEALED, b"q-1"),
     RemoteProtocolError, [SEALED, SECRET_KEY]),
    ("open-truncated", lambda: psi.open_sealed_key(RECIPIENT, SEALED[:-1], b"q-1"), RemoteProtocolError,
     [SEALED]),
    ("open-extended", lambda: psi.open_sealed_key(RECIPIENT, SEALED + b"\x00", b"q-1"), RemoteProtocolError,
     [SEALED]),
    ("open-low-order-ephemeral", lambda: psi.open_sealed_key(RECIPIENT, bytes(32) + SEALED[32:], b"q-1"),
     RemoteProtocolError, [SEALED]),
    ("open-not-a-key", lambda: psi.open_sealed_key(SECRET_KEY, SEALED, b"q-1"),  # type: ignore[arg-type]
     LocalProtocolError, [SECRET_KEY]),
    ("chunk-width", lambda: psi.TokenChunk(24, bytes(48)), RemoteProtocolError, []),
    ("chunk-width-bool", lambda: psi.TokenChunk(True, bytes(16)), LocalProtocolError, []),
    ("chunk-length", lambda: psi.TokenChunk(16, VALID_POINT[:17]), RemoteProtocolError, [VALID_POINT[:17]]),
    ("chunk-too-many", lambda: psi.TokenChunk(16, bytes(16 * (psi.MAX_CHUNK_TOKENS + 1))), RemoteProtocolError,
     []),
    ("split-per-chunk-zero", lambda: list(psi.split(VALID_POINT, 32, 0)), LocalProtocolError, [VALID_POINT]),
    ("split-length", lambda: list(psi.split(VALID_POINT[:17], 16, 1)), LocalProtocolError, [VALID_POINT[:17]]),
    ("intersector-chunk-length", lambda: Intersector(max_tokens_per_side=9).add("left", VALID_POINT[:17]),
     RemoteProtocolError, [VALID_POINT[:17]]),
    ("intersector-chunk-too-big", lambda: Intersector(max_tokens_per_side=9, max_chunk_tokens=1).add(
        "left", VALID_POINT), RemoteProtocolError, [VALID_POINT]),
    ("intersector-over-limit", _over_limit, RemoteProtocolError, [VALID_POINT]),
    ("intersector-width", lambda: Intersector(max_tokens_per_side=1, width=8), LocalProtocolError, []),
    ("intersector-limit-negative", lambda: Intersector(max_tokens_per_side=-1), LocalProtocolError, []),
]


@pytest.mark.parametrize(
    ("call", "error", "secrets"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors_have_the_right_class_and_no_input_bytes(
    call: Callable[[], object], error: type[FedgateError], secrets: list[bytes]
) -> None:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert info.value.__cause__ is None
    for secret in secrets:
        assert secret.hex() not in message
        assert repr(secret) not in message
        if secret.isascii():
            assert secret.decode() not in message
    # No bytes reprs and no long hex runs at all.
    assert "\\x" not in message and "b'" not in message
    assert not re.search(r"[0-9a-fA-F]{16}", message)


def test_low_order_error_names_the_position() -> None:
    for _desc, u in LOW_ORDER:
        with pytest.raises(RemoteProtocolError, match="low-order point at position 2"):
            psi.blind_points(SCALAR, VALID_POINT * 2 + u_bytes(u) + VALID_POINT)
