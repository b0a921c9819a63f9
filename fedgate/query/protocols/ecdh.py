"""ECDH matching (no shared key): each side blinds its points with its own scalar, then blinds the peer's again.

The gateway relays each side's blinded points to the other side and
intersects the doubly blinded, truncated tokens each side sends back.
"""

from __future__ import annotations

from fedgate.crypto import psi

from .base import MatchProtocol, Secret, SecretSetup


def _secret(setup: SecretSetup) -> Secret:
    return Secret(psi.new_scalar())


def reblind(secret: bytes, points: bytes) -> bytes:
    """Blind the peer's points with our scalar and cut them to final token width (a pool task)."""
    return psi.truncate_tokens(psi.blind_points(secret, points))


PROTOCOL = MatchProtocol(name="ecdh", own_token_bytes=psi.POINT_BYTES, tokens=psi.hash_and_blind,
                         secret=_secret, reblind=reblind)
