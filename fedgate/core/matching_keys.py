"""Departments' static X25519 keys for keyed-hash matching, vouched for by their certificates.

The gateway relays these keys but must not be able to substitute its own (it
would then learn the per-query key). So each adapter signs its X25519 public
key with its TLS certificate key, and the peer checks that signature, the
certificate chain to the deployment CA and the department in the certificate
before sealing anything to the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedgate.core import certified
from fedgate.core.errors import ConfigError, VerificationError
from fedgate.core.identity import Identity, Role

_CONTEXT = b"fedgate-matching-key/v1\n"


@dataclass(frozen=True)
class MatchingKey:
    public_key: bytes      # raw 32-byte X25519 public key
    signature: bytes       # ECDSA P-256 / SHA-256 by the department's certificate key
    certificate_pem: str


def _message(department: str, public_key: bytes) -> bytes:
    return _CONTEXT + department.encode() + b"\n" + public_key


def load_or_create(path: Path) -> X25519PrivateKey:
    """The adapter's static matching key (raw 32 bytes, mode 0600), created on first start."""
    if path.exists():
        raw = path.read_bytes()
        if len(raw) != 32:
            raise ConfigError(str(path), "matching key file must hold exactly 32 bytes")
        return X25519PrivateKey.from_private_bytes(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = X25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                   serialization.NoEncryption()))
    return key


def vouch(department: str, key: X25519PrivateKey, tls: certified.Credentials) -> MatchingKey:
    """Sign our matching public key with the certificate key that proves we are `department`."""
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signature, cert_pem = certified.sign(tls, _message(department, public))
    return MatchingKey(public, signature, cert_pem)


def verify(record: MatchingKey, department: str, ca_pem: bytes) -> bytes:
    """The raw public key, once the certificate chains to our CA, names `department` and signed it."""
    if len(record.public_key) != 32:
        raise VerificationError(f"department '{department}''s matching key record is malformed")
    certified.verify(_message(department, record.public_key), record.signature, record.certificate_pem, ca_pem,
                     Identity(Role.DEPARTMENT, department), f"department '{department}''s matching key")
    return record.public_key
