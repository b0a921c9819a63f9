"""Paillier encryption under the supervisor's ``phe`` key (sans-I/O): ints and bytes in, ints and bytes out.

Used by the intersection-sum and private-comparison protocols (docs/architecture.md,
Protocols 4 and 5). The supervisor holds a ``phe.PaillierPrivateKey``; everyone else holds
only its public key and encrypts, adds and re-randomises with ``FastEncryptor``.

**Interoperability with phe.** A ciphertext ``c`` produced here decrypts with
``private_key.decrypt(phe.EncryptedNumber(public_key, c, 0))``. Integers are
encoded as phe encodes them with exponent 0: ``m`` is stored as ``m mod n``,
and a residue ``e`` decodes to ``e`` when ``e <= max_int``, to ``e - n`` when
``e >= n - max_int``, and raises ``OverflowError`` in between, where
``max_int = n // 3 - 1`` (``phe.PaillierPublicKey.max_int``; ``encode`` and
``decode`` below do the same). A total of ``count`` values therefore decodes
correctly only if ``count · bound <= max_int`` (``check_sum_fits``).

**Fast encryption (Damgård–Jurik–Nielsen).** phe encrypts ``m`` as
``(1 + n)^m · ρ^n mod n²`` with ``ρ`` uniform below ``n``; the ``ρ^n`` power
(a 2048-bit exponent modulo a 4096-bit ``n²``) is the whole cost. Following
Damgård, Jurik and Nielsen ("A generalization of Paillier's public-key system
with applications to electronic voting", Int. J. Inf. Secur. 9, 2010, the
variant with a fixed ``h``), ``FastEncryptor`` draws once, from the public key
alone, ``x`` uniform in ``Z*_n`` and sets ``h = -x² mod n`` and
``hs = h^n mod n²``; then

    E(m) = (1 + m·n) · hs^r mod n²,   r uniform in [0, 2^EXPONENT_BITS).

``hs^r = (h^r)^n`` is an ``n``-th power, so ``E(m)`` is an ordinary Paillier
ciphertext with randomness ``h^r`` and phe decrypts it unchanged. ``hs`` is a
fixed base, so ``hs^r`` comes from a window table built once per key: row ``i``
holds ``hs^(j · 2^(8i))`` for ``j < 256``, and ``hs^r`` is the product of one
entry per byte of ``r`` — 32 multiplications modulo ``n²`` for a 256-bit ``r``
instead of about 2,500 for ``ρ^n``.

**Why a 256-bit exponent.** Semantic security of Paillier rests on decisional
composite residuosity (DCR): ``n``-th powers are indistinguishable from random
elements of ``Z*_{n²}``. With a fixed ``h`` the randomness ``h^r`` ranges over
a cyclic subgroup of ``Z*_n`` whose order (about ``n/4``, unknown without the
factors) nobody else knows, so ``r`` cannot be drawn uniformly modulo it.
DJN draw ``r`` of ``⌈k/2⌉`` bits for a ``k``-bit ``n`` (1024 bits here); by
Håstad, Schrift and Shamir (J. Comput. Syst. Sci. 47, 1993) exponents of half
the modulus length give powers indistinguishable from full-length ones if
factoring ``n`` is hard, so that choice reduces to DCR plus factoring. We use
``2κ = 256`` bits for ``κ = 128``, as the issue allows ("short, at least twice
the security level, exponents"): this relies on the *short-exponent
assumption* for the group ``⟨h⟩`` of unknown order — that ``h^r`` with a
``2κ``-bit ``r`` cannot be told from ``h^r`` with a long ``r``. The best known
attacks on short exponents (Pollard's kangaroo/lambda, baby-step giant-step,
van Oorschot–Wiener) need about ``2^(bits/2) = 2^128`` group operations, above
the ~112-bit strength of a 2048-bit modulus itself, and no attack better than
factoring ``n`` is known for this subgroup problem. ``exponent_bits=1024``
selects the DJN length (4× the table, about 4× slower: measured below) for
anyone who wants the factoring-based argument instead of the assumption.

**Who the randomness hides from.** All of the above is against parties that do
not know the factors of ``n`` (gateway, departments, anyone on the wire). The
supervisor can factor ``n``, so for it ``h^r`` with a short ``r`` is *not*
statistically hidden. Ciphertexts released to the supervisor that were computed
from other ciphertexts (the intersection-sum total, comparison results) can be
passed through ``rerandomise_full`` first: it multiplies by ``ρ^n`` with ``ρ``
uniform in ``Z*_n`` exactly as phe does, so the result is a uniformly random
encryption of its plaintext whatever produced it (one phe-encryption's cost per
released ciphertext). ``rerandomise`` (``c · hs^r``) is the cheap DJN variant.

**Measured** (AMD EPYC, one core, Python 3.11.7, gmpy2 2.3.2, phe 1.5.0, a
fresh 2048-bit key; ``.venv/bin/python bench/paillier_speed.py``, about 6 s;
typical of three runs, see ``docs/paillier.md``):

    phe PublicKey.encrypt                        8.9–9.3 ms per value
    FastEncryptor.encrypt / encrypt_many         0.16 ms per value  (55–58× faster)
    FastEncryptor.rerandomise                    0.16 ms
    FastEncryptor.rerandomise_full               8.9 ms (same work as phe)
    sum_ciphertexts                              0.005 ms per ciphertext
    table build, 256-bit r                       50 ms, 4.3 MiB (32 × 256 entries)
    encrypt with exponent_bits=1024 (DJN k/2)    0.65 ms per value (14×); table 170 ms, 17 MiB

**Wire formats.** A public key is ``MAGIC || n`` (big-endian, no leading zero
byte); ``public_key_from_bytes`` refuses keys under ``MIN_KEY_BITS`` or over
``MAX_KEY_BITS`` and obviously bad moduli (even, small factors, a square, a
probable prime). A ciphertext is ``c`` as big-endian bytes of fixed width
``ciphertext_bytes(n)`` (the byte length of ``n²``), with ``0 < c < n²`` and
``gcd(c, n) = 1``; ``ciphertexts_from_bytes`` parses packed chunks of them.

Errors: bytes from a peer that do not parse, and keys too small to accept, raise
``RemoteProtocolError`` (INVALID_ARGUMENT): a too-small supervisor key arrives
only over the wire, and refusing it is a refusal of the peer's data. Our own
callers passing impossible arguments (a small key object, a non-ciphertext)
get ``LocalProtocolError``. A value or declared bound that could leave the
signed plaintext range raises ``PlaintextOverflow`` (an ``InvalidInput``: the
request, not the code, asks for something the key cannot represent). Messages
give sizes and bit lengths, never values.
"""

from __future__ import annotations

import math
import secrets
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import gmpy2  # type: ignore[import-untyped]  # (gmpy2 ships no type information)
from phe import PaillierPublicKey  # type: ignore[import-untyped]  # (phe ships no type information)

from fedgate.core.errors import InvalidInput, LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_EXPONENT_BITS",
    "MAGIC",
    "MAX_CHUNK_CIPHERTEXTS",
    "MAX_KEY_BITS",
    "MIN_EXPONENT_BITS",
    "MIN_KEY_BITS",
    "SECURITY_BITS",
    "WINDOW_BITS",
    "FastEncryptor",
    "PlaintextOverflow",
    "check_sum_fits",
    "ciphertext_bytes",
    "ciphertext_from_bytes",
    "ciphertext_to_bytes",
    "ciphertexts_from_bytes",
    "ciphertexts_to_bytes",
    "decode",
    "encode",
    "max_int",
    "max_safe_total",
    "public_key_from_bytes",
    "public_key_to_bytes",
]

SECURITY_BITS = 128
# Production floor for the supervisor's modulus (NIST SP 800-57: 2048-bit
# factoring-based keys give ~112-bit security). Refused below this everywhere.
MIN_KEY_BITS = 2048
# Parsing and exponentiating modulo a peer's n costs time quadratic in its size:
# refuse absurd keys rather than let a peer choose our CPU bill.
MAX_KEY_BITS = 8192
# Random exponent length for FastEncryptor: 2κ (see the module docstring).
DEFAULT_EXPONENT_BITS = 2 * SECURITY_BITS
MIN_EXPONENT_BITS = 2 * SECURITY_BITS
# Fixed-base window: one table row per byte of the exponent.
WINDOW_BITS = 8
# Packed ciphertexts per wire chunk: 8192 × 512 bytes = 4 MiB at 2048 bits is
# gRPC's default limit, so stay at half of it.
MAX_CHUNK_CIPHERTEXTS = 4096

MAGIC = b"FGPK1"

# Product of the odd primes below 2**14, for a cheap small-factor test of n.
_SMALL_PRIMES_PRODUCT = math.prod(
    p for p in range(3, 2**14, 2) if all(p % d for d in range(3, math.isqrt(p) + 1, 2))
)


class PlaintextOverflow(InvalidInput):
    """A value, or a declared bound times a count, does not fit the key's signed plaintext range."""


# --- signed plaintext encoding (phe's, exponent 0) -------------------------


def max_int(n: int) -> int:
    """Largest magnitude phe decodes as an integer for modulus ``n``: ``n // 3 - 1``.

    Residues in ``(max_int, n - max_int)`` are phe's overflow band.
    """
    return n // 3 - 1


def encode(m: int, n: int) -> int:
    """The residue phe stores for integer ``m`` (``m mod n``); ``PlaintextOverflow`` if ``|m| > max_int(n)``."""
    if abs(m) > max_int(n):
        raise PlaintextOverflow(f"plaintext of {abs(m).bit_length()} bits exceeds the signed range "
                                f"of a {n.bit_length()}-bit key")
    return m % n


def decode(residue: int, n: int) -> int:
    """Signed integer for a decrypted residue, as phe decodes it; ``PlaintextOverflow`` in the overflow band."""
    if not 0 <= residue < n:
        raise LocalProtocolError("residue is not in [0, n)")
    bound = max_int(n)
    if residue <= bound:
        return residue
    if residue >= n - bound:
        return residue - n
    raise PlaintextOverflow("decrypted residue lies in the overflow band")


def max_safe_total(n: int, count: int) -> int:
    """Largest per-value bound ``B`` such that any ``count`` values with ``|v| <= B`` sum inside the signed range.

    That is ``max_int(n) // count``; a total of such values decodes exactly.
    """
    if count < 1:
        raise LocalProtocolError("count must be at least 1")
    return max_int(n) // count


def check_sum_fits(values_bound: int, count: int, n: int) -> None:
    """Raise ``PlaintextOverflow`` unless ``count`` values with ``|v| <= values_bound`` always sum in range."""
    if values_bound < 0 or count < 0:
        raise LocalProtocolError("bound and count must be non-negative")
    if values_bound * count > max_int(n):
        raise PlaintextOverflow(f"{count} values of up to {values_bound.bit_length()} bits may overflow "
                                f"a {n.bit_length()}-bit key")


# --- fast encryption -------------------------------------------------------


def _key_n(public_key: Any) -> int:
    """``n`` of a phe public key as a Python int; ``LocalProtocolError`` for anything else or a small key."""
    if not isinstance(public_key, PaillierPublicKey):
        raise LocalProtocolError("expected a phe.PaillierPublicKey")
    n = int(public_key.n)
    if n.bit_length() < MIN_KEY_BITS:
        raise LocalProtocolError(f"Paillier key of {n.bit_length()} bits is below the "
                                 f"{MIN_KEY_BITS}-bit floor")
    return n


class FastEncryptor:
    """DJN encryption, re-randomisation and homomorphic operations under one phe public key.

    The first encryption or re-randomisation draws ``h`` and builds the fixed-base table (measured in the
    module docstring); build one per key and reuse it. Ciphertexts are Python
    ints in ``(0, n²)``. The object holds no secret that could decrypt: ``hs``
    and the table are public values, and the exponents ``r`` are never stored.
    """

    __slots__ = ("_exponent_bytes", "_n", "_n_mpz", "_nsquare", "_nsquare_mpz", "_table",
                 "exponent_bits", "public_key")

    def __init__(self, public_key: PaillierPublicKey, *,
                 exponent_bits: int = DEFAULT_EXPONENT_BITS) -> None:
        n = _key_n(public_key)
        if exponent_bits < MIN_EXPONENT_BITS or exponent_bits % WINDOW_BITS:
            raise LocalProtocolError(f"exponent_bits must be a multiple of {WINDOW_BITS} "
                                     f"and at least {MIN_EXPONENT_BITS}")
        self.public_key: PaillierPublicKey = public_key
        self.exponent_bits = exponent_bits
        self._exponent_bytes = exponent_bits // WINDOW_BITS
        self._n = n
        self._nsquare = n * n
        self._n_mpz = gmpy2.mpz(n)
        self._nsquare_mpz = gmpy2.mpz(self._nsquare)
        # Built on first use: a party that only adds and multiplies ciphertexts (the gateway summing)
        # never pays for it.
        self._table: list[list[Any]] | None = None

    def _build_table(self) -> list[list[Any]]:
        n = self._n
        x = 0
        while math.gcd(x, n) != 1:
            x = 1 + secrets.randbelow(n - 1)
        h = (-x * x) % n
        base = gmpy2.powmod(h, self._n_mpz, self._nsquare_mpz)  # hs = h^n mod n²
        self._table = _window_table(base, self._exponent_bytes, self._nsquare_mpz)
        return self._table

    @property
    def n(self) -> int:
        return self._n

    @property
    def nsquare(self) -> int:
        return self._nsquare

    def table_bytes(self) -> int:
        """Approximate memory held by the window table (``sys.getsizeof`` of every entry; 0 until built)."""
        return sum(sys.getsizeof(entry) for row in self._table or () for entry in row)

    def _hs_power(self, acc: Any) -> Any:
        """``acc · hs^r mod n²`` for a fresh uniform ``r`` of ``exponent_bits`` bits (acc and result mpz)."""
        nsquare = self._nsquare_mpz
        table = self._table or self._build_table()
        r = secrets.randbits(self.exponent_bits).to_bytes(self._exponent_bytes, "little")
        for row, digit in zip(table, r):
            if digit:
                acc = acc * row[digit] % nsquare
        return acc

    def encrypt(self, m: int) -> int:
        """A fresh encryption of the signed integer ``m`` (``PlaintextOverflow`` if ``|m| > max_int``)."""
        return int(self._hs_power(gmpy2.mpz(1 + encode(m, self._n) * self._n)))

    def encrypt_many(self, values: Iterable[int]) -> list[int]:
        """Fresh encryptions of ``values``, in order; checks every value before encrypting any."""
        n = self._n
        encoded = [encode(m, n) for m in values]
        mpz, power = gmpy2.mpz, self._hs_power
        return [int(power(mpz(1 + e * n))) for e in encoded]

    def rerandomise(self, c: int) -> int:
        """``c · hs^r mod n²``: same plaintext, fresh DJN randomness (hiding against non-key-holders)."""
        return int(self._hs_power(gmpy2.mpz(self._check(c))))

    def rerandomise_full(self, c: int) -> int:
        """``c · ρ^n mod n²`` with ``ρ`` uniform in ``Z*_n``, as phe's ``obfuscate``.

        The result is a uniformly random encryption of the same plaintext, hiding
        how ``c`` was computed even from the private-key holder. Costs about one
        phe encryption; use it on ciphertexts released to the supervisor.
        """
        c = self._check(c)
        rho = 0
        while math.gcd(rho, self._n) != 1:
            rho = 1 + secrets.randbelow(self._n - 1)
        mask = gmpy2.powmod(rho, self._n_mpz, self._nsquare_mpz)
        return int(gmpy2.mpz(c) * mask % self._nsquare_mpz)

    def add(self, c1: int, c2: int) -> int:
        """Encryption of the sum of the two plaintexts (not re-randomised)."""
        return int(gmpy2.mpz(self._check(c1)) * self._check(c2) % self._nsquare_mpz)

    def add_plain(self, c: int, m: int) -> int:
        """Encryption of plaintext(c) + m, for a public integer ``m`` (not re-randomised)."""
        plain = gmpy2.mpz(1 + encode(m, self._n) * self._n)
        return int(plain * self._check(c) % self._nsquare_mpz)

    def scalar_mul(self, c: int, k: int) -> int:
        """Encryption of ``k ·`` plaintext(c); a negative ``k`` goes through the inverse of ``c``.

        Not re-randomised: ``k = 0`` gives ``1``, the trivial encryption of 0.
        """
        c = self._check(c)
        if k >= 0:
            return int(gmpy2.powmod(c, k, self._nsquare_mpz))
        inverse = gmpy2.invert(c, self._nsquare_mpz)
        return int(gmpy2.powmod(inverse, -k, self._nsquare_mpz))

    def sum_ciphertexts(self, cs: Iterable[int]) -> int:
        """Encryption of the sum of all plaintexts (``1``, the trivial ``E(0)``, when empty).

        Not re-randomised; re-randomise before the total leaves the gateway.
        """
        nsquare, check = self._nsquare_mpz, self._check
        total = gmpy2.mpz(1)
        for c in cs:
            total = total * check(c) % nsquare
        return int(total)

    def _check(self, c: int) -> int:
        if not isinstance(c, int) or not 0 < c < self._nsquare:
            raise LocalProtocolError("ciphertext is not an int in (0, n²)")
        return c


def _window_table(base: Any, rows: int, modulus: Any) -> list[list[Any]]:
    """``table[i][j] = base^(j · 2^(8i)) mod modulus`` for ``i < rows``, ``j < 256``."""
    table: list[list[Any]] = []
    row_base = base
    for _ in range(rows):
        row = [gmpy2.mpz(1), row_base]
        for _ in range(2, 1 << WINDOW_BITS):
            row.append(row[-1] * row_base % modulus)
        table.append(row)
        row_base = row[-1] * row_base % modulus  # base^(256 · 2^(8i))
    return table


# --- wire formats ----------------------------------------------------------


def public_key_to_bytes(public_key: PaillierPublicKey) -> bytes:
    """``MAGIC || n`` with ``n`` big-endian and minimal; refuses keys below ``MIN_KEY_BITS``."""
    n = _key_n(public_key)
    return MAGIC + n.to_bytes((n.bit_length() + 7) // 8, "big")


def public_key_from_bytes(data: bytes) -> PaillierPublicKey:
    """Parse a peer's ``public_key_to_bytes`` output; ``RemoteProtocolError`` if malformed or too small.

    Refused: a wrong prefix, a leading zero byte, ``n`` outside
    ``[MIN_KEY_BITS, MAX_KEY_BITS]`` bits, an even ``n``, ``n`` with a prime
    factor below 2^14, a perfect square, or a probable prime. These catch
    corruption and careless keys; they cannot prove ``n = p·q``.
    """
    if not isinstance(data, bytes):
        raise LocalProtocolError("public key must be bytes")
    if not data.startswith(MAGIC):
        raise RemoteProtocolError("public key does not start with the fedgate Paillier prefix")
    body = data[len(MAGIC):]
    if not body or body[0] == 0:
        raise RemoteProtocolError("public key modulus is empty or not minimally encoded")
    n = int.from_bytes(body, "big")
    bits = n.bit_length()
    if bits < MIN_KEY_BITS:
        raise RemoteProtocolError(f"Paillier key of {bits} bits is below the {MIN_KEY_BITS}-bit floor")
    if bits > MAX_KEY_BITS:
        raise RemoteProtocolError(f"Paillier key of {bits} bits is above the {MAX_KEY_BITS}-bit limit")
    if n % 2 == 0 or math.gcd(n, _SMALL_PRIMES_PRODUCT) != 1:
        raise RemoteProtocolError("Paillier modulus has a small factor")
    if gmpy2.is_square(n) or gmpy2.is_prime(n, 25):
        raise RemoteProtocolError("Paillier modulus is a square or a prime")
    return PaillierPublicKey(n)


def ciphertext_bytes(n: int) -> int:
    """Wire width of one ciphertext under modulus ``n``: the byte length of ``n²``."""
    return ((n * n).bit_length() + 7) // 8


def ciphertext_to_bytes(c: int, public_key: PaillierPublicKey) -> bytes:
    """``c`` as fixed-width big-endian bytes; ``LocalProtocolError`` unless ``0 < c < n²``."""
    n = _key_n(public_key)
    if not isinstance(c, int) or not 0 < c < n * n:
        raise LocalProtocolError("ciphertext is not an int in (0, n²)")
    return c.to_bytes(ciphertext_bytes(n), "big")


def ciphertext_from_bytes(data: bytes, public_key: PaillierPublicKey) -> int:
    """Parse one ciphertext from a peer; ``RemoteProtocolError`` on a wrong length, ``c = 0``,
    ``c >= n²`` or ``gcd(c, n) != 1``."""
    n = _key_n(public_key)
    return _parse_ciphertext(data, n, n * n, ciphertext_bytes(n), 0)


def ciphertexts_to_bytes(cs: Sequence[int], public_key: PaillierPublicKey) -> bytes:
    """Pack ciphertexts back to back (one wire chunk of at most ``MAX_CHUNK_CIPHERTEXTS``)."""
    if len(cs) > MAX_CHUNK_CIPHERTEXTS:
        raise LocalProtocolError(f"chunk of {len(cs)} ciphertexts exceeds {MAX_CHUNK_CIPHERTEXTS}")
    return b"".join(ciphertext_to_bytes(c, public_key) for c in cs)


def ciphertexts_from_bytes(data: bytes, public_key: PaillierPublicKey) -> list[int]:
    """Parse a packed chunk from a peer; errors name the position of the first bad ciphertext."""
    n = _key_n(public_key)
    width = ciphertext_bytes(n)
    if not isinstance(data, bytes):
        raise LocalProtocolError("ciphertext chunk must be bytes")
    if len(data) % width:
        raise RemoteProtocolError(f"ciphertext chunk of {len(data)} bytes is not a multiple of {width}")
    count = len(data) // width
    if count > MAX_CHUNK_CIPHERTEXTS:
        raise RemoteProtocolError(f"chunk of {count} ciphertexts exceeds {MAX_CHUNK_CIPHERTEXTS}")
    nsquare = n * n
    return [_parse_ciphertext(data[i * width:(i + 1) * width], n, nsquare, width, i)
            for i in range(count)]


def _parse_ciphertext(data: bytes, n: int, nsquare: int, width: int, position: int) -> int:
    if not isinstance(data, bytes):
        raise LocalProtocolError("ciphertext must be bytes")
    if len(data) != width:
        raise RemoteProtocolError(f"ciphertext {position} has {len(data)} bytes, expected {width}")
    c = int.from_bytes(data, "big")
    if not 0 < c < nsquare:
        raise RemoteProtocolError(f"ciphertext {position} is not in (0, n²)")
    if gmpy2.gcd(c, n) != 1:
        raise RemoteProtocolError(f"ciphertext {position} is not a unit modulo n")
    return c
