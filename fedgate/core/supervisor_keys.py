"""The supervisor's Paillier key pair: made in the client, used in the client, never sent.

A fresh key pair per query is the default (about 30 ms at 2048 bits with
gmpy2): no private key is ever stored, and ciphertexts of one query are
useless for another. Only ``public_bytes`` travels with a query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import phe  # type: ignore[import-untyped]  # (phe ships no type information)

from fedgate.crypto.compare import Packing, unpack_flags
from fedgate.crypto.paillier import (
    MIN_KEY_BITS,
    ciphertext_bytes,
    ciphertext_from_bytes,
    ciphertexts_from_bytes,
    public_key_to_bytes,
)
from fedgate.core.errors import InvalidInput, RemoteProtocolError

DEFAULT_KEY_BITS = 2048


@dataclass(frozen=True)
class SupervisorKey:
    public_key: phe.PaillierPublicKey
    private_key: phe.PaillierPrivateKey

    @classmethod
    def generate(cls, bits: int = DEFAULT_KEY_BITS) -> SupervisorKey:
        """A fresh key pair of ``bits`` bits (at least 2048)."""
        if bits < MIN_KEY_BITS:
            raise InvalidInput(f"a Paillier key needs at least {MIN_KEY_BITS} bits, not {bits}")
        public, private = phe.generate_paillier_keypair(n_length=bits)
        return cls(public, private)

    @property
    def public_bytes(self) -> bytes:
        return public_key_to_bytes(self.public_key)

    def decrypt_total(self, ciphertext: bytes) -> int:
        """The integer a gateway total encrypts (the sum of the matched values)."""
        c = ciphertext_from_bytes(ciphertext, self.public_key)
        return int(self.private_key.decrypt(phe.EncryptedNumber(self.public_key, c, 0)))

    def decrypt_flags(self, packed: bytes, pairs: int, packing: Packing) -> list[bool]:
        """The ``pairs`` comparison flags held by packed ciphertexts, in pair order."""
        width = ciphertext_bytes(self.public_key.n)
        flags: list[bool] = []
        for start in range(0, len(packed), width * 4096):
            for c in ciphertexts_from_bytes(packed[start:start + width * 4096], self.public_key):
                count = min(packing.slots, pairs - len(flags))
                if count <= 0:
                    raise RemoteProtocolError("the gateway sent more comparison results than pairs")
                plaintext = self.private_key.raw_decrypt(c)
                flags.extend(unpack_flags(plaintext, count, packing))
        if len(flags) != pairs:
            raise RemoteProtocolError(f"the gateway sent results for {len(flags)} of {pairs} pairs")
        return flags


def key_statement(supervisor: str, public_key: bytes) -> bytes:
    """What a supervisor signs to vouch for its Paillier public key (wire form): its SPIFFE ID and the key's hash."""
    return b"fedgate-paillier-key/v1\n" + supervisor.encode() + b"\n" + hashlib.sha256(public_key).digest()


def flagged_indices(flags: Sequence[bool]) -> list[int]:
    return [i for i, f in enumerate(flags) if f]
