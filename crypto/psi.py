"""Private set intersection primitives (sans-I/O): pure functions over bytes.

Two modes produce fixed-width tokens that the gateway intersects with
``fedgate.crypto.intersect.Intersector``; it never sees an identifier or a key.

* **ECDH mode (strong).** Each adapter maps its identifiers onto Curve25519
  with ``hash_to_point`` and multiplies them by a fresh per-query scalar
  (``hash_and_blind``); the other adapter multiplies the result by its own
  scalar (``blind_points``). X25519 scalar multiplications commute, so equal
  identifiers give equal doubly-blinded points, which ``truncate_tokens``
  shortens to ``TOKEN_BYTES``.
* **Keyed-hash mode (fast).** One adapter draws a per-query key
  (``new_psi_key``) and seals it to the other's registered X25519 public key
  (``seal_key`` / ``open_sealed_key``); the gateway relays the sealed key
  without being able to open it, and both sides send ``hmac_tokens``.

Why X25519 from ``cryptography`` works as the blinding group (measured against
P-256 and ristretto255 in ``docs/psi-choice.md``):

* X25519 is x-only: a u-coordinate stands for the pair ``±P``, and
  ``x([a]P) = x([a](-P))``, so scalar multiplication is well defined on
  u-coordinates and ``X25519(a, X25519(b, u)) == X25519(b, X25519(a, u))``.
* ``hash_to_point`` outputs only u-coordinates of points **on the curve**,
  never the twist. Multiplication keeps a point on the curve or on the twist,
  so with a hash onto "curve or twist" every blinded point would still tell
  anyone holding it (the gateway, which relays the singly-blinded points, and
  the other department) one bit of ``H(domain, identifier)``, which a
  dictionary of identifiers turns into one bit about each row. Rejecting twist
  outputs costs one Jacobi symbol per try (~2 tries on average).
* Points received from a peer are not checked for the curve: Curve25519 is
  twist-secure (the twist has order ``4·q`` with ``q`` a 253-bit prime), and
  clamping makes every scalar a multiple of 8, which removes any small-order
  component; so a twist point only spoils the sender's own tokens and reveals
  nothing about our scalar.
* Low-order inputs would make X25519 output zero; OpenSSL refuses them and
  ``blind_points`` reports the position. Encodings with bit 255 set or ``u >= p``
  never come from an honest party (X25519 outputs and ``hash_to_point`` are
  canonical) and are rejected instead of silently reduced.
* Clamped scalars have 251 random bits (``2**254 + 8·r``), as in every X25519
  key agreement; that is the usual, accepted X25519 trade-off.

Tokens are unlinkable across queries only if scalars and keys are fresh per
query; ``domain`` must name the query and the identifier kind (for example
``b"fedgate/v1/<query id>/resident_id"``).

Errors: ``LocalProtocolError`` when our own caller passes impossible arguments
(wrong key length, non-bytes), ``RemoteProtocolError`` when bytes that came from
a peer are malformed. Messages give lengths and positions, never input bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import gmpy2  # type: ignore[import-untyped]  # (gmpy2 ships no type information)
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedgate.core.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "KEY_BYTES",
    "MAX_CHUNK_TOKENS",
    "POINT_BYTES",
    "SCALAR_BYTES",
    "SEALED_KEY_BYTES",
    "TOKEN_BYTES",
    "TokenChunk",
    "blind_points",
    "hash_and_blind",
    "hash_to_point",
    "hmac_tokens",
    "new_psi_key",
    "new_scalar",
    "open_sealed_key",
    "seal_key",
    "split",
    "truncate_tokens",
]

POINT_BYTES = 32
SCALAR_BYTES = 32
KEY_BYTES = 32
# Tokens the gateway intersects: a doubly-blinded point or an HMAC cut to 16
# bytes. For n tokens in all, the chance of any accidental collision is about
# n**2 / 2**129 (below 2**-80 even for 2**24 tokens), so truncation cannot
# create a false match in practice, and it halves the gateway's memory.
TOKEN_BYTES = 16
# One chunk on the wire: 65536 tokens is 2 MiB of points, under gRPC's default
# 4 MiB message limit.
MAX_CHUNK_TOKENS = 65536

_NONCE_BYTES = 12
_TAG_BYTES = 16
SEALED_KEY_BYTES = POINT_BYTES + _NONCE_BYTES + KEY_BYTES + _TAG_BYTES

_MAX_DOMAIN_BYTES = 255
_H2C_LABEL = b"fedgate-psi-h2c/v1"
_SEAL_INFO = b"fedgate-psi-key/v1"

# Curve25519: v**2 = u**3 + A*u**2 + u over GF(P).
_P = 2**255 - 19
_A = 486662
# Canonical u-coordinates of points of order 2, 4 or 8 on the curve or its
# twist (the list on cr.yp.to/ecdh.html, as blocked by libsodium): 0 (order 2,
# and the encoding of the point at infinity), 1 (order 4, curve), p-1 (order
# 4, twist) and the two order-8 curve points.
_LOW_ORDER_U = frozenset({
    0,
    1,
    _P - 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
})


def hash_to_point(domain: bytes, ident: bytes) -> bytes:
    """Map an identifier to the u-coordinate (32 bytes, little-endian) of a Curve25519 point.

    Try-and-increment: SHA-256 over a fixed label, the length-prefixed domain,
    the identifier and a counter byte, bit 255 cleared, until the value is a
    canonical u (< p) of a curve point (not twist) of large order.
    """
    _check_bytes("identifier", ident)
    return _hash_to_point(_h2c_prefix(domain), ident)


def new_scalar() -> bytes:
    """Return a fresh 32-byte blinding scalar (clamped by X25519 when used)."""
    return os.urandom(SCALAR_BYTES)


def blind_points(scalar: bytes, points: bytes) -> bytes:
    """Multiply each 32-byte u-coordinate in ``points`` by ``scalar``; same length out.

    ``points`` come from a peer: a length that is not a multiple of 32, a
    non-canonical encoding or a low-order point raises ``RemoteProtocolError``.
    """
    private = _private_key(scalar)
    _check_bytes("points", points)
    count, rest = divmod(len(points), POINT_BYTES)
    if rest:
        raise RemoteProtocolError(
            f"points length {len(points)} is not a multiple of {POINT_BYTES}"
        )
    view = memoryview(points)
    out = bytearray(len(points))
    exchange = private.exchange
    from_public = X25519PublicKey.from_public_bytes
    for i in range(count):
        start = i * POINT_BYTES
        point = view[start:start + POINT_BYTES]
        # Bit 255 would be ignored by X25519 and u >= p silently reduced; an
        # honest peer sends neither, so treat both as malformed.
        if point[31] & 0x80 or int.from_bytes(point, "little") >= _P:
            raise RemoteProtocolError(f"non-canonical point at position {i}")
        try:
            out[start:start + POINT_BYTES] = exchange(from_public(point.tobytes()))
        except ValueError:
            # OpenSSL refuses an all-zero result, i.e. a low-order input.
            raise RemoteProtocolError(f"low-order point at position {i}") from None
    return bytes(out)


def hash_and_blind(scalar: bytes, domain: bytes, idents: Sequence[bytes]) -> bytes:
    """Hash each identifier to the curve and blind it with ``scalar``; 32 bytes per id."""
    private = _private_key(scalar)
    prefix = _h2c_prefix(domain)
    exchange = private.exchange
    from_public = X25519PublicKey.from_public_bytes
    out = bytearray()
    for ident in idents:
        _check_bytes("identifier", ident)
        # Our own hash output always has large order, so exchange cannot fail.
        out += exchange(from_public(_hash_to_point(prefix, ident)))
    return bytes(out)


def truncate_tokens(points: bytes) -> bytes:
    """Cut each 32-byte point to its first ``TOKEN_BYTES`` bytes (see ``TOKEN_BYTES``)."""
    _check_bytes("points", points)
    if len(points) % POINT_BYTES:
        raise RemoteProtocolError(
            f"points length {len(points)} is not a multiple of {POINT_BYTES}"
        )
    view = memoryview(points)
    return b"".join(
        view[i:i + TOKEN_BYTES] for i in range(0, len(points), POINT_BYTES)
    )


def hmac_tokens(key: bytes, domain: bytes, idents: Sequence[bytes]) -> bytes:
    """Return HMAC-SHA256(key, len(domain) || domain || ident)[:16] for each identifier."""
    _check_bytes("PSI key", key)
    if len(key) != KEY_BYTES:
        raise LocalProtocolError(f"PSI key must be {KEY_BYTES} bytes, got {len(key)}")
    # Keying once and copying the primed state saves re-keying per identifier
    # (measured ~1.2 us per id against ~1.6 us for a one-shot hmac.digest,
    # see docs/psi-choice.md).
    primed = hmac.new(key, _length_prefixed(domain), hashlib.sha256)
    out = bytearray()
    for ident in idents:
        _check_bytes("identifier", ident)
        mac = primed.copy()
        mac.update(ident)
        out += mac.digest()[:TOKEN_BYTES]
    return bytes(out)


def new_psi_key() -> bytes:
    """Return a fresh 32-byte keyed-hash matching key (one per query)."""
    return os.urandom(KEY_BYTES)


def seal_key(recipient_public: bytes, key: bytes, context: bytes) -> bytes:
    """Encrypt ``key`` to an X25519 public key, bound to ``context``.

    Ephemeral X25519, HKDF-SHA256 (salt: both public keys, info: label ||
    context) and ChaCha20-Poly1305 with ``context`` as associated data.
    Output: ephemeral public (32) || nonce (12) || ciphertext and tag (48).
    """
    _check_bytes("recipient public key", recipient_public)
    if len(recipient_public) != POINT_BYTES:
        raise LocalProtocolError(
            f"recipient public key must be {POINT_BYTES} bytes, got {len(recipient_public)}"
        )
    _check_bytes("PSI key", key)
    if len(key) != KEY_BYTES:
        raise LocalProtocolError(f"PSI key must be {KEY_BYTES} bytes, got {len(key)}")
    _check_bytes("context", context)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    except ValueError:
        # Registered public keys are our configuration, so this is our bug.
        raise LocalProtocolError("recipient public key has low order") from None
    aead = ChaCha20Poly1305(_seal_kdf(shared, ephemeral_public, recipient_public, context))
    nonce = os.urandom(_NONCE_BYTES)
    return ephemeral_public + nonce + aead.encrypt(nonce, key, context)


def open_sealed_key(recipient_private: X25519PrivateKey, sealed: bytes, context: bytes) -> bytes:
    """Decrypt a key sealed by ``seal_key``; any tampering or mismatch raises ``RemoteProtocolError``."""
    if not isinstance(recipient_private, X25519PrivateKey):
        raise LocalProtocolError(
            f"recipient private key must be an X25519PrivateKey, got {type(recipient_private).__name__}"
        )
    _check_bytes("context", context)
    _check_bytes("sealed key", sealed)
    if len(sealed) != SEALED_KEY_BYTES:
        raise RemoteProtocolError(
            f"sealed key must be {SEALED_KEY_BYTES} bytes, got {len(sealed)}"
        )
    ephemeral_public = sealed[:POINT_BYTES]
    nonce = sealed[POINT_BYTES:POINT_BYTES + _NONCE_BYTES]
    try:
        shared = recipient_private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError:
        raise RemoteProtocolError("sealed key has a low-order ephemeral public key") from None
    recipient_public = recipient_private.public_key().public_bytes_raw()
    aead = ChaCha20Poly1305(_seal_kdf(shared, ephemeral_public, recipient_public, context))
    try:
        return aead.decrypt(nonce, sealed[POINT_BYTES + _NONCE_BYTES:], context)
    except InvalidTag:
        raise RemoteProtocolError(
            "sealed key does not authenticate (tampered, wrong context or wrong recipient)"
        ) from None


@dataclass(frozen=True, slots=True, repr=False)
class TokenChunk:
    """A packed run of fixed-width tokens or points as it travels in one message."""

    width: int
    data: bytes

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int):
            raise LocalProtocolError(f"chunk width must be an int, got {type(self.width).__name__}")
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"chunk data must be bytes, got {type(self.data).__name__}")
        object.__setattr__(self, "data", bytes(self.data))
        if self.width not in (TOKEN_BYTES, POINT_BYTES):
            raise RemoteProtocolError(
                f"chunk width must be {TOKEN_BYTES} or {POINT_BYTES}, got {self.width}"
            )
        count, rest = divmod(len(self.data), self.width)
        if rest:
            raise RemoteProtocolError(
                f"chunk length {len(self.data)} is not a multiple of width {self.width}"
            )
        if count > MAX_CHUNK_TOKENS:
            raise RemoteProtocolError(
                f"chunk has {count} tokens, more than the limit of {MAX_CHUNK_TOKENS}"
            )

    @property
    def count(self) -> int:
        """Number of tokens in the chunk."""
        return len(self.data) // self.width

    def __repr__(self) -> str:
        return f"TokenChunk(width={self.width}, count={self.count})"


def split(data: bytes, width: int, per_chunk: int) -> Iterator[bytes]:
    """Yield ``data`` in pieces of at most ``per_chunk`` tokens of ``width`` bytes (none if empty)."""
    _check_bytes("data", data)
    if width not in (TOKEN_BYTES, POINT_BYTES):
        raise LocalProtocolError(f"width must be {TOKEN_BYTES} or {POINT_BYTES}, got {width}")
    if isinstance(per_chunk, bool) or not isinstance(per_chunk, int) or not (
        1 <= per_chunk <= MAX_CHUNK_TOKENS
    ):
        raise LocalProtocolError(f"per_chunk must be an int in 1..{MAX_CHUNK_TOKENS}")
    if len(data) % width:
        raise LocalProtocolError(f"data length {len(data)} is not a multiple of width {width}")
    step = width * per_chunk
    for start in range(0, len(data), step):
        yield data[start:start + step]


def _hash_to_point(prefix: hashlib._Hash, ident: bytes) -> bytes:
    state = prefix.copy()
    state.update(ident)
    # Each try succeeds with probability ~1/2, so 256 tries all fail with
    # probability 2**-256.
    for counter in range(256):
        attempt = state.copy()
        attempt.update(counter.to_bytes(1, "big"))
        digest = bytearray(attempt.digest())
        digest[31] &= 0x7F
        u = int.from_bytes(digest, "little")
        if u < _P and u not in _LOW_ORDER_U and _jacobi((u * u * u + _A * u * u + u) % _P) == 1:
            return bytes(digest)
    raise LocalProtocolError("no curve point found for an identifier")  # pragma: no cover


def _jacobi(a: int) -> int:
    """Jacobi symbol (a | p), via gmpy2 (about 7x faster than a pure-Python binary algorithm)."""
    return int(gmpy2.jacobi(a, _P))


def _h2c_prefix(domain: bytes) -> hashlib._Hash:
    return hashlib.sha256(_H2C_LABEL + _length_prefixed(domain))


def _length_prefixed(domain: bytes) -> bytes:
    # One length byte makes (domain, ident) pairs unambiguous: b"ab" + b"c"
    # and b"a" + b"bc" hash differently.
    _check_bytes("domain", domain)
    if not 1 <= len(domain) <= _MAX_DOMAIN_BYTES:
        raise LocalProtocolError(f"domain must be 1..{_MAX_DOMAIN_BYTES} bytes, got {len(domain)}")
    return len(domain).to_bytes(1, "big") + domain


def _private_key(scalar: bytes) -> X25519PrivateKey:
    _check_bytes("scalar", scalar)
    if len(scalar) != SCALAR_BYTES:
        raise LocalProtocolError(f"scalar must be {SCALAR_BYTES} bytes, got {len(scalar)}")
    return X25519PrivateKey.from_private_bytes(scalar)


def _seal_kdf(shared: bytes, ephemeral_public: bytes, recipient_public: bytes, context: bytes) -> bytes:
    # Both public keys in the salt bind the AEAD key to this exact exchange.
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral_public + recipient_public,
        info=_SEAL_INFO + context,
    ).derive(shared)


def _check_bytes(what: str, value: object) -> None:
    if not isinstance(value, bytes):
        raise LocalProtocolError(f"{what} must be bytes, got {type(value).__name__}")
