"""Tests for fedgate.crypto.compare: the decrypted flag equals a·x > b·y, and range guards.

The reference is the plaintext comparison; ciphertexts are decrypted with phe.
One 2048-bit key pair (the production floor) per module.
"""

from __future__ import annotations

import phe  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fedgate.crypto import compare, paillier
from fedgate.crypto.paillier import FastEncryptor, PlaintextOverflow

# Every example decrypts once with phe (~2.5 ms): keep to <= 50.
DECRYPTING = settings(max_examples=50, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])

FEN = 10**13  # amounts up to 100 billion yuan, in fen


@pytest.fixture(scope="module")
def keypair() -> tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]:
    return phe.generate_paillier_keypair(n_length=2048)


@pytest.fixture(scope="module")
def enc(keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]) -> FastEncryptor:
    return FastEncryptor(keypair[0])


@pytest.fixture(scope="module")
def priv(keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]) -> phe.PaillierPrivateKey:
    return keypair[1]


def flag_and_value(enc: FastEncryptor, priv: phe.PaillierPrivateKey, x: int, y: int, a: int, b: int,
                   bound: int = FEN, **kwargs: bool) -> tuple[bool, int]:
    blinded = compare.blind_comparison(enc, enc.encrypt(x), enc.encrypt(y), a, b,
                                       x_bound=bound, y_bound=bound, **kwargs)
    value = priv.decrypt(phe.EncryptedNumber(enc.public_key, blinded, 0))
    assert isinstance(value, int)
    return compare.decide(value), value


@DECRYPTING
@given(x=st.integers(-FEN, FEN), y=st.integers(-FEN, FEN),
       a=st.integers(-12, 12), b=st.integers(-12, 12))
@example(x=5, y=5, a=1, b=1)        # tie: False
@example(x=6, y=5, a=5, b=6)        # 5·6 = 6·5: tie with weights
@example(x=7, y=6, a=1, b=1)        # D = 0: the smallest "greater"
@example(x=-3, y=-2, a=1, b=1)      # negatives
@example(x=0, y=0, a=0, b=0)        # 0 > 0 is False
def test_flag_is_the_plaintext_comparison(enc: FastEncryptor, priv: phe.PaillierPrivateKey,
                                          x: int, y: int, a: int, b: int) -> None:
    flag, _ = flag_and_value(enc, priv, x, y, a, b)
    assert flag == (a * x > b * y)


@DECRYPTING
@given(d=st.integers(-50, 50), y=st.integers(-FEN, FEN))
def test_near_ties(enc: FastEncryptor, priv: phe.PaillierPrivateKey, d: int, y: int) -> None:
    flag, value = flag_and_value(enc, priv, y + d, y, 1, 1, bound=FEN + 50)
    assert flag == (d > 0)
    # |v| < 2^80 · (|D| + 1): the blinding stays in its documented range.
    assert abs(value) < 2**compare.R_MAX_BITS * (abs(d - 1) + 1)


def test_tie_value_is_negative_and_randomised(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    values = {flag_and_value(enc, priv, 9, 9, 3, 3)[1] for _ in range(3)}
    assert len(values) == 3
    assert all(-(2**compare.R_MAX_BITS) < v < 0 for v in values)


def test_at_the_range_limit(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    limit = compare.max_comparison_difference(enc.n)
    bound = (limit - 1) // 2  # a = b = 1: |x| + |y| + 1 <= limit
    compare.check_comparison_fits(1, 1, bound, bound, enc.n)
    for x, y in ((bound, -bound), (-bound, bound), (bound, bound), (-bound, -bound + 1)):
        assert flag_and_value(enc, priv, x, y, 1, 1, bound=bound)[0] == (x > y)
    with pytest.raises(PlaintextOverflow):
        compare.check_comparison_fits(1, 1, bound + 1, bound + 1, enc.n)


def test_limit_is_about_n_over_3_times_2_to_80(enc: FastEncryptor) -> None:
    limit = compare.max_comparison_difference(enc.n)
    assert 2**compare.R_MAX_BITS * (limit + 1) <= paillier.max_int(enc.n)
    assert limit.bit_length() >= enc.n.bit_length() - 2 - compare.R_MAX_BITS - 1


def test_overflowing_bounds_raise_before_computing(enc: FastEncryptor) -> None:
    c = enc.encrypt(1)
    huge = paillier.max_int(enc.n)
    with pytest.raises(PlaintextOverflow):
        compare.blind_comparison(enc, c, c, 1, 1, x_bound=huge, y_bound=0)
    with pytest.raises(PlaintextOverflow):
        compare.blind_comparison(enc, c, c, 5, 6, x_bound=-1, y_bound=1)
    with pytest.raises(PlaintextOverflow):
        compare.check_comparison_fits(2**1000, 2**1000, 2**1000, 0, enc.n)


def test_full_rerandomise_path(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    assert flag_and_value(enc, priv, 6, 5, 5, 6, full_rerandomise=True)[0] is False
    assert flag_and_value(enc, priv, 7, 5, 5, 6, full_rerandomise=True)[0] is True


def test_decide_residue(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    pub = enc.public_key
    for x, y in ((10, 3), (3, 10), (4, 4)):
        blinded = compare.blind_comparison(enc, enc.encrypt(x), enc.encrypt(y), 1, 1,
                                           x_bound=10, y_bound=10)
        residue = priv.raw_decrypt(blinded)
        assert compare.decide_residue(residue, pub.n) == (x > y)


def test_decide() -> None:
    assert compare.decide(0) is True
    assert compare.decide(2**100) is True
    assert compare.decide(-1) is False


# --- packing several comparisons into one ciphertext ---

BOUND = 2**63 - 1


@DECRYPTING
@given(pairs=st.lists(st.tuples(st.integers(-BOUND, BOUND), st.integers(-BOUND, BOUND)), min_size=1, max_size=14),
       a=st.integers(1, 2**31), b=st.integers(1, 2**31))
@example(pairs=[(5, 5), (6, 5), (-BOUND, BOUND), (BOUND, -BOUND), (0, 0)], a=1, b=1)
def test_packed_flags_equal_the_plaintext_comparisons(enc: FastEncryptor, priv: phe.PaillierPrivateKey,
                                                      pairs: list[tuple[int, int]], a: int, b: int) -> None:
    packing = compare.packing_for(a, b, BOUND, BOUND, enc.n)
    pairs = pairs[:packing.slots]
    blinded = [compare.blind_comparison(enc, enc.encrypt(x), enc.encrypt(y), a, b, x_bound=BOUND, y_bound=BOUND)
               for x, y in pairs]
    packed = compare.pack_comparisons(enc, blinded, packing)
    plaintext = priv.raw_decrypt(packed)
    assert compare.unpack_flags(plaintext, len(pairs), packing) == [a * x > b * y for x, y in pairs]


def test_packing_density_for_64_bit_values(enc: FastEncryptor) -> None:
    packing = compare.packing_for(1, 1, BOUND, BOUND, enc.n)
    # |a·x − b·y − 1| < 2^64, so |v| < 2^(80 + 65) and a slot is 146 bits: 14 to a 2048-bit key.
    assert (packing.offset_bits, packing.slot_bits, packing.slots) == (compare.R_MAX_BITS + 65, 146, 14)
    # Every slot fits below max_int, so the packed plaintext never wraps.
    assert packing.slots * packing.slot_bits < paillier.max_int(enc.n).bit_length()


def test_packing_refuses_what_cannot_fit(enc: FastEncryptor) -> None:
    with pytest.raises(PlaintextOverflow):
        compare.packing_for(2**1990, 1, BOUND, BOUND, enc.n)
    packing = compare.packing_for(1, 1, BOUND, BOUND, enc.n)
    with pytest.raises(paillier.LocalProtocolError):
        compare.pack_comparisons(enc, [], packing)
    with pytest.raises(paillier.LocalProtocolError):
        compare.pack_comparisons(enc, [enc.encrypt(0)] * (packing.slots + 1), packing)
    # A plaintext with bits above the slots (wrong key, corrupted result) is refused, not misread.
    with pytest.raises(PlaintextOverflow):
        compare.unpack_flags(1 << (packing.slots * packing.slot_bits), packing.slots, packing)
