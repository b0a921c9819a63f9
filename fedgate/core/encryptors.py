"""Paillier encryptors for the supervisor keys that arrive with queries, built once per key per process.

Building a ``FastEncryptor`` costs about 50 ms (its fixed-base table); a
query sends its key with every chunk of work to the worker processes, so each
process keeps the 16 most recent ones (4.3 MiB each): enough for as many
supervisors summing at once without rebuilding a table per chunk.
"""

from __future__ import annotations

import functools

from fedgate.crypto.paillier import FastEncryptor, public_key_from_bytes

# Values encrypted for sums and comparisons are signed 64-bit integers: each
# adapter refuses anything larger, and the gateway's overflow checks and the
# comparison packing rely on it.
VALUE_BITS = 63
VALUE_BOUND = (1 << VALUE_BITS) - 1
# Integer fields one sum may total (and a comparison side encrypts one): the gateway and each adapter
# refuse more, so one chunk of ciphertexts stays within MAX_CHUNK_CIPHERTEXTS per message.
MAX_VALUE_FIELDS = 4


@functools.lru_cache(maxsize=16)
def encryptor_for(public_key: bytes) -> FastEncryptor:
    """The encryptor for a public key in wire form (parsed and checked on first use)."""
    return FastEncryptor(public_key_from_bytes(public_key))
