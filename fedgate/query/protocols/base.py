"""What a match protocol is: the few things each protocol decides, read by the gateway and adapter machines.

A protocol is data plus module-level functions (so its pool tasks pickle into
the adapter's worker processes, fedgate/server/worker_pool.py). The gateway machine
reads ``relays`` and ``needs_peer_key`` to route streams and start the sides;
the adapter runs ``tokens`` and ``reblind`` in its pool and ``secret`` once
per session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedgate.core.matching_keys import MatchingKey

ROLES = ("left", "right")


@dataclass(frozen=True)
class SecretSetup:
    """What one department holds when its side starts: enough for any protocol to make its per-query secret."""

    role: str                       # "left" or "right"
    context: bytes                  # binds the query id and both departments (seal_context)
    peer_department: str
    peer_key: MatchingKey           # the gateway's relay of the right department's key (left side)
    sealed_key: bytes               # the left department's sealed key (right side)
    matching_key: X25519PrivateKey  # this department's own static matching key
    ca_pem: bytes


@dataclass(frozen=True)
class Secret:
    """A side's per-query secret, and what its Started reply carries to the gateway for the other side."""

    value: bytes
    sealed_key: bytes = b""


# secret, domain, normalised identifiers -> packed own tokens (own_token_bytes each)
TokensFn = Callable[[bytes, bytes, Sequence[bytes]], bytes]
# secret, the peer's packed own tokens -> packed final tokens of the peer's rows
ReblindFn = Callable[[bytes, bytes], bytes]
SecretFn = Callable[[SecretSetup], Secret]


@dataclass(frozen=True)
class MatchProtocol:
    """One way two departments turn identifiers into tokens the gateway can intersect but not read.

    ``relays``: the gateway passes each side's own tokens (and own_done) to the
    other side, intersects what each side re-blinded for its peer, and a side
    is finished once own_done and reblind_done came. Otherwise a side's own
    tokens go straight into the intersector and own_done finishes it.
    ``needs_peer_key``: the left side starts with the right department's
    registered matching key and answers with a sealed key that starts the right.
    """

    name: str
    own_token_bytes: int
    tokens: TokensFn
    secret: SecretFn
    reblind: ReblindFn | None = None
    needs_peer_key: bool = False

    @property
    def relays(self) -> bool:
        return self.reblind is not None
