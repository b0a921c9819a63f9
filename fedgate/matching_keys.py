"""Departments' static X25519 keys for keyed-hash matching, vouched for by their certificates.

The gateway relays these keys but must not be able to substitute its own (it
would then learn the per-query key). So each adapter signs its X25519 public
key with its TLS certificate key, and the peer checks that signature, the
certificate chain to the deployment CA and the department in the certificate
before sealing anything to the key.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedgate.errors import ConfigError, VerificationError
from fedgate.identity import Identity, Role, identity_from_pem
from fedgate.tls import TlsFiles

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


def vouch(department: str, key: X25519PrivateKey, tls: TlsFiles) -> MatchingKey:
    """Sign our matching public key with the certificate key that proves we are `department`."""
    _, cert_pem, key_pem = tls.read()
    signer = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ConfigError(str(tls.key), "the certificate key must be an EC key to vouch for the matching key")
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return MatchingKey(public, signer.sign(_message(department, public), ec.ECDSA(hashes.SHA256())),
                       cert_pem.decode())


def verify(record: MatchingKey, department: str, ca_pem: bytes) -> bytes:
    """The raw public key, once the certificate chains to our CA, names `department` and signed it."""
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = x509.load_pem_x509_certificate(record.certificate_pem.encode())
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise VerificationError(f"department '{department}''s matching key certificate is not from our CA "
                                f"({type(exc).__name__})") from None
    now = dt.datetime.now(dt.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise VerificationError(f"department '{department}''s certificate is not valid now")
    if identity_from_pem(record.certificate_pem.encode()) != Identity(Role.DEPARTMENT, department):
        raise VerificationError(f"the matching key's certificate is not department '{department}''s")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or len(record.public_key) != 32:
        raise VerificationError(f"department '{department}''s matching key record is malformed")
    try:
        public.verify(record.signature, _message(department, record.public_key), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError(f"department '{department}''s matching key is not signed by its certificate "
                                "(substituted on the way?)") from None
    return record.public_key
