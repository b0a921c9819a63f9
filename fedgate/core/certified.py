"""Statements signed with a party's certificate key, checked against the deployment CA.

The gateway relays keys between parties but must not be able to substitute
its own: a department's matching key, or the supervisor's Paillier key. So
the owner signs the key (with the private key of its TLS certificate), sends
the certificate along, and the receiver checks the chain to its CA, the
identity in the certificate and the signature, before trusting the key.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedgate.core.errors import ConfigError, VerificationError
from fedgate.core.identity import Identity, identity_from_pem


class Credentials(Protocol):
    """A party's CA certificate, certificate and key on disk (``fedgate.server.tls.TlsFiles`` is one).

    A protocol rather than TlsFiles itself: signing needs only the files, not the
    TLS plumbing, so the shared domain layer does not depend on the server layer.
    """

    @property
    def key(self) -> Path: ...

    def read(self) -> tuple[bytes, bytes, bytes]:
        """The CA certificate, certificate and private key (PEM)."""
        ...


def sign(tls: Credentials, message: bytes) -> tuple[bytes, str]:
    """ECDSA P-256 / SHA-256 signature of `message` by our certificate key, and our certificate (PEM)."""
    _, cert_pem, key_pem = tls.read()
    signer = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ConfigError(str(tls.key), "the certificate key must be an EC key to sign keys it vouches for")
    return signer.sign(message, ec.ECDSA(hashes.SHA256())), cert_pem.decode()


def verify(message: bytes, signature: bytes, certificate_pem: str, ca_pem: bytes, expected: Identity,
           what: str) -> None:
    """Raise `VerificationError` unless the certificate chains to our CA, is valid now, names
    `expected` and signed `message`; `what` names the statement in the error."""
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise VerificationError(f"{what}: the certificate is not from our CA ({type(exc).__name__})") from None
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise VerificationError(f"{what}: the certificate is not valid now")
    try:
        holder = identity_from_pem(certificate_pem.encode())
    except Exception:
        raise VerificationError(f"{what}: the certificate names no fedgate identity") from None
    if holder != expected:
        raise VerificationError(f"{what}: signed by {holder.spiffe_id}, not {expected.spiffe_id}")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise VerificationError(f"{what}: the certificate key is not an EC key")
    try:
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError(f"{what}: the signature does not match (substituted on the way?)") from None
