"""A private CA and the certificates of every fedgate party (`fedgate certs init`).

Keys are ECDSA P-256 (every TLS stack gRPC uses accepts them). Private keys are
written with mode 0600. An existing CA in the directory is reused, so adding a
department later does not invalidate everyone else's certificates; an
existing certificate is kept unless `force` is given. Beside them goes the
security officers' X25519 seal key pair (`officer-seal.pub` for the gateway's
config, `officer-seal.key` for the officers only), also kept once made.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedgate.core import officer_seal
from fedgate.core.errors import ConfigError
from fedgate.core.identity import GATEWAY, Identity

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CA_NAME = "fedgate private CA"


@dataclass(frozen=True)
class IssuedFile:
    identity: str
    path: Path
    created: bool


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_or_create_ca(directory: Path, days: int = 3650) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    """Load ca.pem/ca.key from `directory`, or create them; the bool says whether created."""
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if cert_path.exists() or key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(str(directory), f"existing CA files are unusable: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(str(key_path), "CA key is not an EC key")
        return cert, key, False
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, True


def _san_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue(directory: Path, identity: Identity, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
          hosts: Iterable[str] = DEFAULT_HOSTS, days: int = 397, force: bool = False) -> IssuedFile:
    """Write <stem>.pem/<stem>.key for `identity`, signed by the CA."""
    cert_path = directory / f"{identity.file_stem}.pem"
    if cert_path.exists() and not force:
        return IssuedFile(str(identity), cert_path, False)
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.spiffe_id),
                                    x509.DNSName(identity.dns_name)]
    sans += [_san_entry(h) for h in dict.fromkeys(hosts)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, identity.spiffe_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.org or identity.role.value),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # Every party is both a TLS server and client somewhere (adapters serve
        # the gateway and dial it), so every leaf gets both usages.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(directory / f"{identity.file_stem}.key", _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return IssuedFile(str(identity), cert_path, True)


def init_dir(directory: Path, identities: Iterable[Identity], hosts: Iterable[str] = DEFAULT_HOSTS,
             force: bool = False) -> list[IssuedFile]:
    """Create (or extend) a certificate directory: CA, gateway, every given identity and the officers' seal key."""
    cert, key, created = load_or_create_ca(directory)
    issued = [IssuedFile("CA", directory / "ca.pem", created)]
    seal_path, seal_created = officer_seal.create_pair(directory)
    issued.append(IssuedFile("officer seal key", seal_path, seal_created))
    hosts = tuple(hosts)
    for identity in dict.fromkeys([GATEWAY, *identities]):
        issued.append(issue(directory, identity, (cert, key), hosts, force=force))
    return issued
