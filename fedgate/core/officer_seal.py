"""The security officers' X25519 key pair: the gateway seals redacted request text to it, only officers open it.

A sealed box (libsodium ``crypto_box_seal`` through PyNaCl) is made with a
fresh ephemeral key each time, so the sealer keeps nothing that opens it: the
gateway holds the public half only (``officer_seal_key`` in gateway.toml) and
neither it nor its operator can read what it logged. Both halves are stored as
standard PEM (SubjectPublicKeyInfo / PKCS#8), so a wrong file (a TLS key, the
log-signing key) is named as such rather than silently misread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.public
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedgate.core.errors import ConfigError, VerificationError

PUBLIC_FILE = "officer-seal.pub"
PRIVATE_FILE = "officer-seal.key"


class CannotOpen(VerificationError):
    """The sealed text does not open with this key (another key pair's, or it was altered)."""


@dataclass(frozen=True)
class SealKey:
    """The officers' public key: what the gateway seals with."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise ValueError("an X25519 public key is 32 bytes")

    @classmethod
    def load(cls, path: Path) -> SealKey:
        """Read a PEM X25519 public key; ConfigError naming the file if it is anything else."""
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(str(path), f"not a readable officer seal key ({exc})") from None
        if not isinstance(key, X25519PublicKey):
            raise ConfigError(str(path), "not an X25519 public key (make one with `fedgate certs init`)")
        return cls(key.public_bytes_raw())

    def seal(self, plaintext: bytes) -> bytes:
        """Anonymous encryption to the officers: only their private key opens it."""
        return bytes(nacl.public.SealedBox(nacl.public.PublicKey(self.raw)).encrypt(plaintext))


@dataclass(frozen=True, repr=False)
class OpenKey:
    """The officers' private key: kept by the officers, never by the gateway."""

    raw: bytes

    @classmethod
    def load(cls, path: Path) -> OpenKey:
        """Read a PEM X25519 private key; ConfigError naming the file if it is anything else."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(str(path), f"not a readable officer seal private key ({exc})") from None
        if not isinstance(key, X25519PrivateKey):
            raise ConfigError(str(path), "not an X25519 private key: give the officers' officer-seal.key")
        return cls(key.private_bytes_raw())

    @property
    def public(self) -> SealKey:
        return SealKey(bytes(nacl.public.PrivateKey(self.raw).public_key))

    def open(self, sealed: bytes) -> bytes:
        """The plaintext, or CannotOpen: sealed to another key, or altered."""
        try:
            return bytes(nacl.public.SealedBox(nacl.public.PrivateKey(self.raw)).decrypt(sealed))
        except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            raise CannotOpen("the sealed text does not open with this key: it was sealed to another officer "
                             "key pair (check --seal-key), or altered") from None


def create_pair(directory: Path) -> tuple[Path, bool]:
    """Write officer-seal.key (0600) and officer-seal.pub in `directory` unless present; (public path, created)."""
    public, private = directory / PUBLIC_FILE, directory / PRIVATE_FILE
    if public.exists() or private.exists():
        return public, False
    key = X25519PrivateKey.generate()
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return public, True
