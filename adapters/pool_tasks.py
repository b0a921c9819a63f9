"""Work done in the adapter's worker processes: normalise, hash, blind. Top-level so it pickles."""

from __future__ import annotations

import hashlib

from fedgate.crypto import psi
from fedgate.crypto.ids import normaliser
from fedgate.errors import InvalidIdentifier

DOMAIN_PREFIX = b"fedgate/match/v1/"


def domain_for(kind: str) -> bytes:
    # Both sides hash under the identifier kind, so a USCC never meets a resident ID.
    return DOMAIN_PREFIX + kind.encode()


def local_hash(ident: bytes) -> bytes:
    """A hash of a normalised key kept by the left adapter to find its matched rows again."""
    return hashlib.sha256(b"fedgate/local/v1\0" + ident).digest()[:16]


def tokens_for(mode: str, secret: bytes, kind: str, raw: list[object],
               keep_hashes: bool) -> tuple[bytes, int, bytes]:
    """Normalise raw key values and turn the valid ones into tokens.

    Returns (packed tokens, number of invalid or missing keys, local hashes of
    the valid keys in token order if asked). Invalid keys are counted, never matched.
    """
    valid: list[bytes] = []
    invalid = 0
    normalise_one = normaliser(kind)  # looked up once per chunk, not once per row
    for value in raw:
        if value is None or value == "":
            invalid += 1
            continue
        try:
            valid.append(normalise_one(str(value)).encode())
        except InvalidIdentifier:
            invalid += 1
    domain = domain_for(kind)
    if mode == "keyed":
        tokens = psi.hmac_tokens(secret, domain, valid)
    else:
        tokens = psi.hash_and_blind(secret, domain, valid)
    hashes = b"".join(local_hash(v) for v in valid) if keep_hashes else b""
    return tokens, invalid, hashes


def reblind(secret: bytes, points: bytes) -> bytes:
    """Blind the peer's points with our scalar and cut them to final token width."""
    return psi.truncate_tokens(psi.blind_points(secret, points))
