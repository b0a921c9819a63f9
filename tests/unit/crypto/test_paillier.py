"""Tests for fedgate.crypto.paillier: phe interoperability properties, then guards and wire refusals.

The reference is phe itself: every fast ciphertext is decrypted with phe's
private key, and our signed encoding is compared with ``phe.EncodedNumber``.
One 2048-bit key pair (the production floor) is generated per module; smaller
keys appear only as objects built from a bare modulus, to test refusals.
"""

from __future__ import annotations

import gmpy2  # type: ignore[import-untyped]
import phe  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedgate.crypto import paillier
from fedgate.crypto.paillier import FastEncryptor, PlaintextOverflow
from fedgate.core.errors import InvalidInput, LocalProtocolError, RemoteProtocolError

# Examples that decrypt stay at <= 50 (phe's decrypt costs ~2.5 ms at 2048 bits).
DECRYPTING = settings(max_examples=50, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
CHEAP = settings(max_examples=100, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def keypair() -> tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]:
    return phe.generate_paillier_keypair(n_length=2048)


@pytest.fixture(scope="module")
def pub(keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]) -> phe.PaillierPublicKey:
    return keypair[0]


@pytest.fixture(scope="module")
def priv(keypair: tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]) -> phe.PaillierPrivateKey:
    return keypair[1]


@pytest.fixture(scope="module")
def enc(pub: phe.PaillierPublicKey) -> FastEncryptor:
    return FastEncryptor(pub)


def dec(priv: phe.PaillierPrivateKey, pub: phe.PaillierPublicKey, c: int) -> int:
    value = priv.decrypt(phe.EncryptedNumber(pub, c, 0))
    assert isinstance(value, int)
    return value


# Values: small, mid-sized and at the edge of phe's signed range (max_int = n // 3 - 1
# is about 2**2046 for a 2048-bit n, so these strategies draw relative to it).
def plaintexts(bound: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from([0, 1, -1, bound, -bound, bound - 1, -bound + 1]),
        st.integers(-10**15, 10**15),
        st.integers(-bound, bound),
        st.integers(0, 2**64).map(lambda d: bound - d),
        st.integers(0, 2**64).map(lambda d: d - bound),
    )


MAX_INT_2048 = (2**2047) // 3  # a safe lower estimate of max_int for any 2048-bit n


# --- encoding ---------------------------------------------------------------


def test_max_int_is_phes(pub: phe.PaillierPublicKey) -> None:
    assert paillier.max_int(pub.n) == pub.max_int == pub.n // 3 - 1


@CHEAP
@given(m=plaintexts(MAX_INT_2048))
def test_encode_decode_match_phe(pub: phe.PaillierPublicKey, m: int) -> None:
    encoded = phe.EncodedNumber.encode(pub, m)
    assert encoded.exponent == 0
    assert paillier.encode(m, pub.n) == encoded.encoding
    assert paillier.decode(encoded.encoding, pub.n) == encoded.decode() == m


def test_encode_refuses_out_of_range(pub: phe.PaillierPublicKey) -> None:
    bound = pub.max_int
    assert paillier.encode(bound, pub.n) == bound
    assert paillier.encode(-bound, pub.n) == pub.n - bound
    for m in (bound + 1, -bound - 1, pub.n, -pub.n):
        with pytest.raises(PlaintextOverflow):
            paillier.encode(m, pub.n)


def test_decode_overflow_band(pub: phe.PaillierPublicKey) -> None:
    with pytest.raises(PlaintextOverflow):
        paillier.decode(pub.max_int + 1, pub.n)
    with pytest.raises(PlaintextOverflow):
        paillier.decode(pub.n - pub.max_int - 1, pub.n)
    with pytest.raises(LocalProtocolError):
        paillier.decode(pub.n, pub.n)


# --- fast encryption decrypts with phe ---------------------------------------


@DECRYPTING
@given(data=st.data())
def test_fast_ciphertexts_decrypt_with_phe(enc: FastEncryptor, priv: phe.PaillierPrivateKey,
                                           data: st.DataObject) -> None:
    m = data.draw(plaintexts(enc.public_key.max_int))
    assert dec(priv, enc.public_key, enc.encrypt(m)) == m


def test_edges_decrypt(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    bound = enc.public_key.max_int
    values = [0, 1, -1, bound, -bound, 10**18, -(10**18)]
    assert [dec(priv, enc.public_key, c) for c in enc.encrypt_many(values)] == values


def test_encryption_is_randomised(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    other = FastEncryptor(enc.public_key)  # a second, independent base hs
    cs = [enc.encrypt(7), enc.encrypt(7), other.encrypt(7)]
    assert len(set(cs)) == 3
    assert all(0 < c < enc.nsquare for c in cs)
    assert [dec(priv, enc.public_key, c) for c in cs] == [7, 7, 7]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.integers(-10**12, 10**12), max_size=8))
def test_encrypt_many_in_order(enc: FastEncryptor, priv: phe.PaillierPrivateKey,
                               values: list[int]) -> None:
    cs = enc.encrypt_many(values)
    assert [dec(priv, enc.public_key, c) for c in cs] == values


def test_encrypt_many_checks_all_first(enc: FastEncryptor) -> None:
    with pytest.raises(PlaintextOverflow):
        enc.encrypt_many([1, 2, enc.public_key.max_int + 1])
    assert issubclass(PlaintextOverflow, InvalidInput)


def test_djn_exponent_length_option(pub: phe.PaillierPublicKey, priv: phe.PaillierPrivateKey) -> None:
    long = FastEncryptor(pub, exponent_bits=1024)  # DJN's k/2; same decryption
    assert dec(priv, pub, long.encrypt(-42)) == -42
    for bits in (0, 128, 255, 260):
        with pytest.raises(LocalProtocolError):
            FastEncryptor(pub, exponent_bits=bits)


def test_table_shape_and_memory(enc: FastEncryptor) -> None:
    # 32 rows x 256 entries of ~512-byte mpz values for a 256-bit exponent.
    assert enc.exponent_bits == paillier.DEFAULT_EXPONENT_BITS == 256
    assert 32 * 256 * 512 <= enc.table_bytes() < 32 * 256 * 1024


# --- homomorphic operations ------------------------------------------------------


@DECRYPTING
@given(values=st.lists(st.integers(-10**15, 10**15), max_size=150))
def test_sum_of_many_ciphertexts(enc: FastEncryptor, priv: phe.PaillierPrivateKey,
                                 values: list[int]) -> None:
    total = enc.sum_ciphertexts(enc.encrypt_many(values))
    assert dec(priv, enc.public_key, total) == sum(values)


def test_sum_near_the_safe_bound(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    n, count = enc.n, 5
    bound = paillier.max_safe_total(n, count)
    paillier.check_sum_fits(bound, count, n)
    for sign in (1, -1):
        total = enc.sum_ciphertexts(enc.encrypt_many([sign * bound] * count))
        assert dec(priv, enc.public_key, total) == sign * bound * count


def test_unguarded_overflow_is_what_the_guard_prevents(enc: FastEncryptor,
                                                       priv: phe.PaillierPrivateKey) -> None:
    bound = enc.public_key.max_int
    total = enc.add(enc.encrypt(bound), enc.encrypt(bound))
    with pytest.raises(OverflowError):  # phe's own overflow-band detection
        dec(priv, enc.public_key, total)
    with pytest.raises(PlaintextOverflow):
        paillier.check_sum_fits(bound, 2, enc.n)


@CHEAP
@given(count=st.integers(1, 10**9), extra=st.integers(1, 10**6))
def test_guard_boundary(pub: phe.PaillierPublicKey, count: int, extra: int) -> None:
    bound = paillier.max_safe_total(pub.n, count)
    paillier.check_sum_fits(bound, count, pub.n)
    assert bound * count <= pub.max_int
    with pytest.raises(PlaintextOverflow):
        paillier.check_sum_fits(bound + extra, count, pub.n)


def test_guard_arguments(pub: phe.PaillierPublicKey) -> None:
    paillier.check_sum_fits(0, 0, pub.n)
    with pytest.raises(LocalProtocolError):
        paillier.max_safe_total(pub.n, 0)
    with pytest.raises(LocalProtocolError):
        paillier.check_sum_fits(-1, 3, pub.n)


def test_empty_sum_is_zero(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    assert enc.sum_ciphertexts([]) == 1
    assert dec(priv, enc.public_key, enc.rerandomise(1)) == 0


@DECRYPTING
@given(m=st.integers(-10**30, 10**30))
def test_rerandomise_differs_and_decrypts_the_same(enc: FastEncryptor, priv: phe.PaillierPrivateKey,
                                                   m: int) -> None:
    c = enc.encrypt(m)
    again = enc.rerandomise(c)
    assert again != c
    assert dec(priv, enc.public_key, again) == m


def test_rerandomise_full(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    c = enc.encrypt(-99)
    full = {enc.rerandomise_full(c) for _ in range(3)}
    assert len(full) == 3 and c not in full
    assert {dec(priv, enc.public_key, x) for x in full} == {-99}


@DECRYPTING
@given(m=st.integers(-10**20, 10**20), k=st.integers(-10**20, 10**20))
def test_scalar_mul(enc: FastEncryptor, priv: phe.PaillierPrivateKey, m: int, k: int) -> None:
    assert dec(priv, enc.public_key, enc.scalar_mul(enc.encrypt(m), k)) == k * m


def test_scalar_mul_by_zero_is_trivial(enc: FastEncryptor) -> None:
    assert enc.scalar_mul(enc.encrypt(5), 0) == 1


@DECRYPTING
@given(m1=st.integers(-10**20, 10**20), m2=st.integers(-10**20, 10**20))
def test_add_and_add_plain(enc: FastEncryptor, priv: phe.PaillierPrivateKey, m1: int, m2: int) -> None:
    c1 = enc.encrypt(m1)
    assert dec(priv, enc.public_key, enc.add(c1, enc.encrypt(m2))) == m1 + m2
    assert dec(priv, enc.public_key, enc.add_plain(c1, m2)) == m1 + m2


def test_mixes_with_phe_ciphertexts(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    pub = enc.public_key
    theirs = pub.encrypt(-1000)
    ours = enc.encrypt(250)
    assert dec(priv, pub, enc.add(theirs.ciphertext(), ours)) == -750
    assert priv.decrypt(theirs + phe.EncryptedNumber(pub, ours, 0)) == -750


def test_operations_refuse_non_ciphertexts(enc: FastEncryptor) -> None:
    good = enc.encrypt(1)
    for bad in (0, -5, enc.nsquare, enc.nsquare + 1):
        with pytest.raises(LocalProtocolError):
            enc.add(good, bad)
        with pytest.raises(LocalProtocolError):
            enc.rerandomise(bad)
        with pytest.raises(LocalProtocolError):
            enc.scalar_mul(bad, 3)
        with pytest.raises(LocalProtocolError):
            enc.sum_ciphertexts([good, bad])


def test_encryptor_refuses_small_or_foreign_keys() -> None:
    small = phe.PaillierPublicKey(int(gmpy2.next_prime(2**511)) * int(gmpy2.next_prime(2**512)))
    assert small.n.bit_length() < paillier.MIN_KEY_BITS
    with pytest.raises(LocalProtocolError, match="floor"):
        FastEncryptor(small)
    with pytest.raises(LocalProtocolError):
        FastEncryptor(12345)  # not a key object


# --- wire formats --------------------------------------------------------------


def modulus_bytes(n: int) -> bytes:
    return paillier.MAGIC + n.to_bytes((n.bit_length() + 7) // 8, "big")


def test_public_key_round_trip(pub: phe.PaillierPublicKey) -> None:
    data = paillier.public_key_to_bytes(pub)
    assert data.startswith(paillier.MAGIC)
    assert len(data) == len(paillier.MAGIC) + 256
    back = paillier.public_key_from_bytes(data)
    assert isinstance(back, phe.PaillierPublicKey)
    assert back == pub and back.n == pub.n


def test_public_key_to_bytes_refuses_small_key() -> None:
    small = phe.PaillierPublicKey(int(gmpy2.next_prime(2**511)) * int(gmpy2.next_prime(2**512)))
    with pytest.raises(LocalProtocolError):
        paillier.public_key_to_bytes(small)


P1024 = int(gmpy2.next_prime(3 * 2**1022))  # p**2 has 2048 bits


@pytest.mark.parametrize(
    ("desc", "make"),
    [
        ("empty", lambda n: b""),
        ("wrong prefix", lambda n: b"XXXX1" + modulus_bytes(n)[5:]),
        ("prefix only", lambda n: paillier.MAGIC),
        ("leading zero byte", lambda n: paillier.MAGIC + b"\x00" + modulus_bytes(n)[5:]),
        ("1024-bit key", lambda n: modulus_bytes(P1024 * int(gmpy2.next_prime(P1024)) >> 1025 | 1)),
        ("2047-bit key", lambda n: modulus_bytes(n >> 1 | 1)),
        ("8193-bit key", lambda n: modulus_bytes(2**8192 + 1)),
        ("even modulus", lambda n: modulus_bytes(n + 1)),
        ("small factor", lambda n: modulus_bytes(n * 12289)),
        ("square", lambda n: modulus_bytes(P1024 * P1024)),
        ("prime", lambda n: modulus_bytes(int(gmpy2.next_prime(2**2047 + 2**1000)))),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_public_key_from_bytes_refusals(pub: phe.PaillierPublicKey, desc: str, make: object) -> None:
    assert callable(make)
    data = make(pub.n)
    with pytest.raises(RemoteProtocolError) as caught:
        paillier.public_key_from_bytes(data)
    assert str(pub.n) not in str(caught.value)


def test_key_refusal_names_the_size() -> None:
    small = P1024 * int(gmpy2.next_prime(P1024 >> 1))
    with pytest.raises(RemoteProtocolError, match=r"\d+ bits is below the 2048-bit floor"):
        paillier.public_key_from_bytes(modulus_bytes(small))


@CHEAP
@given(seed=st.integers(1, 2**4096))
def test_ciphertext_round_trip(pub: phe.PaillierPublicKey, seed: int) -> None:
    c = seed % (pub.nsquare - 1) + 1
    if gmpy2.gcd(c, pub.n) != 1:  # probability ~2**-1023
        return
    data = paillier.ciphertext_to_bytes(c, pub)
    assert len(data) == paillier.ciphertext_bytes(pub.n) == 512
    assert paillier.ciphertext_from_bytes(data, pub) == c


def test_real_ciphertexts_round_trip(enc: FastEncryptor, priv: phe.PaillierPrivateKey) -> None:
    cs = enc.encrypt_many([3, -4, 5])
    data = paillier.ciphertexts_to_bytes(cs, enc.public_key)
    assert len(data) == 3 * 512
    back = paillier.ciphertexts_from_bytes(data, enc.public_key)
    assert back == cs
    assert [dec(priv, enc.public_key, c) for c in back] == [3, -4, 5]
    assert paillier.ciphertexts_from_bytes(b"", enc.public_key) == []


def test_ciphertext_refusals(pub: phe.PaillierPublicKey, priv: phe.PaillierPrivateKey) -> None:
    width = 512
    cases = {
        "zero": bytes(width),
        "n squared": pub.nsquare.to_bytes(width, "big"),
        "above n squared": (pub.nsquare + 1).to_bytes(width, "big"),
        "all ones": b"\xff" * width,
        "multiple of n": pub.n.to_bytes(width, "big"),
        "multiple of p": (priv.p * 12345).to_bytes(width, "big"),
        "short": (5).to_bytes(width - 1, "big"),
        "long": (5).to_bytes(width + 1, "big"),
        "empty": b"",
    }
    for desc, data in cases.items():
        with pytest.raises(RemoteProtocolError):
            paillier.ciphertext_from_bytes(data, pub)
        assert desc


def test_ciphertext_to_bytes_refuses_out_of_range(pub: phe.PaillierPublicKey) -> None:
    for bad in (0, -1, pub.nsquare):
        with pytest.raises(LocalProtocolError):
            paillier.ciphertext_to_bytes(bad, pub)


def test_chunk_refusals_name_the_position(enc: FastEncryptor) -> None:
    pub = enc.public_key
    good = paillier.ciphertexts_to_bytes(enc.encrypt_many([1, 2]), pub)
    with pytest.raises(RemoteProtocolError, match="not a multiple"):
        paillier.ciphertexts_from_bytes(good + b"\x00", pub)
    with pytest.raises(RemoteProtocolError, match="ciphertext 2 "):
        paillier.ciphertexts_from_bytes(good + bytes(512), pub)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        paillier.ciphertexts_from_bytes(good[:512] * (paillier.MAX_CHUNK_CIPHERTEXTS + 1), pub)
    with pytest.raises(LocalProtocolError):
        paillier.ciphertexts_to_bytes([1] * (paillier.MAX_CHUNK_CIPHERTEXTS + 1), pub)
