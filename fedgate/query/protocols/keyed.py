"""Keyed-hash matching (fast): HMAC-SHA256 tokens under a per-query key the left creates and seals to the right.

The gateway relays the sealed key but cannot open it, so it only ever sees
tokens; each side's tokens go straight into the intersector.
"""

from __future__ import annotations

from fedgate.core import matching_keys
from fedgate.crypto import psi

from .base import MatchProtocol, Secret, SecretSetup


def _secret(setup: SecretSetup) -> Secret:
    """The left creates the key and seals it to the right department's vouched matching key; the right opens it."""
    if setup.role == "left":
        peer = matching_keys.verify(setup.peer_key, setup.peer_department, setup.ca_pem)
        key = psi.new_psi_key()
        return Secret(key, psi.seal_key(peer, key, setup.context))
    return Secret(psi.open_sealed_key(setup.matching_key, setup.sealed_key, setup.context))


PROTOCOL = MatchProtocol(name="keyed", own_token_bytes=psi.TOKEN_BYTES, tokens=psi.hmac_tokens, secret=_secret,
                         needs_peer_key=True)
