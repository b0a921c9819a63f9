"""A private CA and the certificates of every fedgate party.

`init_dir` (`fedgate certs init`) makes every key on the CA's machine, for the demo and tests.
Keys are ECDSA P-256 (every TLS stack gRPC uses accepts them). Private keys are
written with mode 0600. An existing CA in the directory is reused, so adding a
department later does not invalidate everyone else's certificates; an
existing certificate is kept unless `force` is given. Beside them goes the
security officers' X25519 seal key pair (`officer-seal.pub` for the gateway's
config, `officer-seal.key` for the officers only), also kept once made.

In a deployment each party makes its own key and a signing request (`write_request`,
`renewal_request`); the CA operator checks and signs it (`sign_request`). Every issued
certificate is recorded in the CA's index.json (`CaIndex`); `revoke` marks one revoked and
writes a signed crl.pem (`write_crl`). `certificate_status` says whose a certificate is,
until when, and whether a CRL revokes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedgate.core import officer_seal
from fedgate.core.errors import ConfigError, InvalidInput, Unauthenticated
from fedgate.core.identity import GATEWAY, TRUST_DOMAIN, Identity, identity_from_pem

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


def _leaf(identity: Identity, public_key: ec.EllipticCurvePublicKey,
          ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], hosts: Iterable[str],
          days: int) -> x509.Certificate:
    """A leaf certificate for `identity`: the one shape `issue` and `sign_request` both make."""
    ca_cert, ca_key = ca
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, identity.spiffe_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.org or identity.role.value),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_identity_sans(identity, hosts)), critical=False)
        # Every party is both a TLS server and client somewhere (adapters serve
        # the gateway and dial it), so every leaf gets both usages.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert


def _identity_sans(identity: Identity, hosts: Iterable[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.spiffe_id),
                                    x509.DNSName(identity.dns_name)]
    return sans + [_san_entry(h) for h in dict.fromkeys(hosts) if h != identity.dns_name]


def issue(directory: Path, identity: Identity, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
          hosts: Iterable[str] = DEFAULT_HOSTS, days: int = 397, force: bool = False) -> IssuedFile:
    """Write <stem>.pem/<stem>.key for `identity`, signed by the CA."""
    cert_path = directory / f"{identity.file_stem}.pem"
    if cert_path.exists() and not force:
        return IssuedFile(str(identity), cert_path, False)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(identity, key.public_key(), ca, hosts, days)
    _write_private(directory / f"{identity.file_stem}.key", _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    CaIndex(directory).record(cert, identity)
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


# --- Requests, signing, the CA's index, revocation -------------------------------------------------------

INDEX_FILE = "index.json"   # every certificate the CA issued, and which it revoked
CRL_FILE = "crl.pem"
DEFAULT_DAYS = 397
CRL_DAYS = 7                # a CRL's next_update: servers warn once it has passed
RENEW_WITHIN_DAYS = 30      # `renew` and `status` warn about a certificate with fewer days left


@dataclass(frozen=True)
class RequestFiles:
    """What `write_request` wrote: the private key (stays here) and the CSR (goes to the CA operator)."""

    identity: Identity
    key: Path
    csr: Path


def make_request(identity: Identity, hosts: Iterable[str] = DEFAULT_HOSTS,
                 key: ec.EllipticCurvePrivateKey | None = None) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh (or the given) P-256 key and a PEM CSR naming `identity` with the SANs `issue` gives."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.spiffe_id)]))
        .add_extension(x509.SubjectAlternativeName(_identity_sans(identity, hosts)), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def write_request(directory: Path, identity: Identity, hosts: Iterable[str] = DEFAULT_HOSTS) -> RequestFiles:
    """Write <stem>.key (0600, never leaves this machine) and <stem>.csr (for the CA operator) in `directory`.

    An existing key is never overwritten: it may be the one a running server uses.
    """
    key_path, csr_path = directory / f"{identity.file_stem}.key", directory / f"{identity.file_stem}.csr"
    if key_path.exists():
        raise ConfigError(str(key_path), "a key already exists here (perhaps the one in use): write the request "
                          "to another directory with --out, or move the old key away first")
    directory.mkdir(parents=True, exist_ok=True)
    key, csr = make_request(identity, hosts)
    _write_private(key_path, _key_pem(key))
    _atomic_write(csr_path, csr)
    return RequestFiles(identity, key_path, csr_path)


def renewal_request(cert_path: Path, key_path: Path, directory: Path) -> tuple[RequestFiles, CertificateStatus]:
    """A fresh key and CSR in `directory` for the identity and hosts of the certificate in use (whose key
    `key_path` must be, so the renewal is asked for by its holder), and that certificate's status."""
    try:
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(exc.filename), f"cannot read: {exc.strerror}") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
        current = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError):
        raise ConfigError(str(cert_path), "--cert must be a PEM certificate and --key its unencrypted PEM key"
                          ) from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != current.public_key().public_bytes(*spki):
        raise ConfigError(str(key_path), f"not the private key of {cert_path}: give the .key beside that .pem")
    status = certificate_status(cert_pem)
    if status.identity is None:
        raise InvalidInput("the certificate carries no fedgate identity, so there is nothing to renew")
    cert = x509.load_pem_x509_certificate(cert_pem)
    hosts = [str(n.value) for n in _sans(cert) if isinstance(n, (x509.DNSName, x509.IPAddress))
             and n.value != status.identity.dns_name]
    return write_request(directory, status.identity, hosts), status


@dataclass(frozen=True)
class SignedCertificate:
    identity: Identity
    serial: int
    not_after: dt.datetime
    pem: bytes


def _sans(obj: x509.Certificate | x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        return list(obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def check_request(csr_pem: bytes) -> tuple[x509.CertificateSigningRequest, Identity, list[str]]:
    """The CSR, its identity and extra hosts, once it is a well-formed, self-signed request for one
    fedgate identity that asks for nothing else; InvalidInput saying what is wrong otherwise."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except (ValueError, x509.InvalidVersion):  # InvalidVersion is no ValueError: a damaged version field
        raise InvalidInput("not a PEM certificate signing request (expected -----BEGIN CERTIFICATE REQUEST-----)"
                           ) from None
    try:  # the parts of a CSR parse lazily: a damaged key or extension fails only when read
        return _check_parsed(csr)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(f"the request is malformed ({exc}); make it again with `fedgate certs request`") from None


def _check_parsed(csr: x509.CertificateSigningRequest) -> tuple[x509.CertificateSigningRequest, Identity, list[str]]:
    if not csr.is_signature_valid:
        raise InvalidInput("the request's signature does not verify: it was altered after it was made, or forged; "
                           "ask the requester to run `fedgate certs request` again and send the new .csr")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
        raise InvalidInput("the request's key is not an EC P-256 key; make it with `fedgate certs request`")
    for ext in csr.extensions:
        if isinstance(ext.value, x509.BasicConstraints):
            if ext.value.ca:
                raise InvalidInput("the request asks to be a CA; a fedgate party certificate never is")
        elif not isinstance(ext.value, x509.SubjectAlternativeName):
            raise InvalidInput(f"the request asks for an extension fedgate does not issue "
                               f"({ext.oid._name or ext.oid.dotted_string}); make it with `fedgate certs request`")
    uris, hosts = [], []
    for name in _sans(csr):
        if isinstance(name, x509.UniformResourceIdentifier):
            uris.append(name.value)
        elif isinstance(name, (x509.DNSName, x509.IPAddress)):
            hosts.append(str(name.value))
        else:
            raise InvalidInput(f"the request names a {type(name).__name__}; only the identity URI, DNS names "
                               "and IP addresses are issued")
    if len(uris) != 1:
        raise InvalidInput("the request must name exactly one fedgate identity (spiffe://fedgate/...) "
                           f"as a URI; it names {len(uris)}")
    try:
        identity = Identity.parse(uris[0])
    except ValueError as exc:
        raise InvalidInput(f"the request's identity is not a fedgate identity: {exc}") from None
    if identity.dns_name not in hosts:
        raise InvalidInput(f"the request lacks the DNS name {identity.dns_name}, which peers of "
                           f"{identity.spiffe_id} check")
    suffix = f".{TRUST_DOMAIN}"
    others = [h for h in hosts if h != identity.dns_name and (h.endswith(suffix) or h == TRUST_DOMAIN)]
    if others:
        # A name under the trust domain pins a party's server: it must be the requester's own.
        raise InvalidInput(f"the request names {others[0]}, which is not {identity.spiffe_id}'s DNS name "
                           f"({identity.dns_name}); refused")
    return csr, identity, [h for h in hosts if h != identity.dns_name]


def sign_request(ca_dir: Path, csr_pem: bytes, days: int = DEFAULT_DAYS) -> SignedCertificate:
    """Check a CSR (`check_request`), issue a leaf like `issue` does and record it in the CA's index."""
    if not 1 <= days <= 3650:
        raise InvalidInput(f"--days must be between 1 and 3650, not {days}")
    csr, identity, hosts = check_request(csr_pem)
    ca_cert, ca_key = _existing_ca(ca_dir)
    if _now() + dt.timedelta(days=days) > ca_cert.not_valid_after_utc:
        raise InvalidInput(f"the CA itself is valid only until {ca_cert.not_valid_after_utc:%Y-%m-%d}; "
                           "ask for fewer --days")
    public = csr.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)  # check_request
    cert = _leaf(identity, public, (ca_cert, ca_key), hosts, days)
    CaIndex(ca_dir).record(cert, identity)
    return SignedCertificate(identity, cert.serial_number, cert.not_valid_after_utc,
                             cert.public_bytes(serialization.Encoding.PEM))


def _existing_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not (ca_dir / "ca.pem").exists() or not (ca_dir / "ca.key").exists():
        raise ConfigError(str(ca_dir), "no CA here (ca.pem and ca.key): give the directory `fedgate certs init` "
                          "made")
    cert, key, _ = load_or_create_ca(ca_dir)
    return cert, key


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader (or a crash) sees the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class IndexEntry:
    """One certificate the CA issued; `revoked_at` set once it is revoked."""

    serial: int
    identity: str
    not_after: dt.datetime
    issued_at: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"serial": f"{self.serial:x}", "identity": self.identity, "not_after": self.not_after.isoformat(),
                "issued_at": self.issued_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None, "reason": self.reason}

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> IndexEntry:
        revoked = item.get("revoked_at")
        return cls(int(item["serial"], 16), str(item["identity"]), dt.datetime.fromisoformat(item["not_after"]),
                   dt.datetime.fromisoformat(item["issued_at"]),
                   dt.datetime.fromisoformat(revoked) if revoked else None, str(item.get("reason") or ""))


class CaIndex:
    """index.json in the CA directory: every issued certificate, revocations and the last CRL number.

    Each change rewrites the whole file atomically under an exclusive lock (index.json.lock), so two
    operators signing at once both land, and a crash leaves the previous, complete index.
    """

    def __init__(self, ca_dir: Path) -> None:
        self.path = ca_dir / INDEX_FILE
        self._lock = ca_dir / f"{INDEX_FILE}.lock"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"version": 1, "crl_number": 0, "certificates": []}
        except ValueError:
            raise ConfigError(str(self.path), "the CA's index is not valid JSON; restore it from a backup") from None
        if not isinstance(data, dict) or not isinstance(data.get("certificates"), list):
            raise ConfigError(str(self.path), "the CA's index has an unknown shape; restore it from a backup")
        return data

    def entries(self) -> list[IndexEntry]:
        return [IndexEntry.from_json(i) for i in self._read()["certificates"]]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The index to change in place; written back atomically when the block ends without error."""
        fd = os.open(self._lock, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._read()
            yield data
            _atomic_write(self.path, json.dumps(data, indent=1).encode())
        finally:
            os.close(fd)  # closing releases the lock

    def record(self, cert: x509.Certificate, identity: Identity) -> None:
        entry = IndexEntry(cert.serial_number, identity.spiffe_id, cert.not_valid_after_utc, _now())
        with self._locked() as data:
            data["certificates"].append(entry.to_json())

    def revoke(self, serial: int, reason: str, identity: str = "", not_after: dt.datetime | None = None) -> IndexEntry:
        """Mark `serial` revoked now (kept as it was if it already is); a serial the index lacks is added."""
        with self._locked() as data:
            items = data["certificates"]
            for i, item in enumerate(items):
                entry = IndexEntry.from_json(item)
                if entry.serial == serial:
                    if entry.revoked_at is None:
                        entry = dataclasses.replace(entry, revoked_at=_now(), reason=reason)
                        items[i] = entry.to_json()
                    return entry
            now = _now()
            entry = IndexEntry(serial, identity, not_after or now, now, now, reason)
            items.append(entry.to_json())
            return entry

    def next_crl_number(self) -> int:
        with self._locked() as data:
            data["crl_number"] = int(data.get("crl_number", 0)) + 1
            return int(data["crl_number"])


REASONS = {flag.value: flag for flag in x509.ReasonFlags if flag not in (x509.ReasonFlags.remove_from_crl,)}


def parse_reason(text: str) -> x509.ReasonFlags:
    """An RFC 5280 reason by its name, e.g. keyCompromise or superseded."""
    found = REASONS.get(text) or next((f for n, f in REASONS.items() if n.lower() == text.replace("_", "").lower()),
                                      None)
    if found is None:
        raise InvalidInput(f"unknown revocation reason {text!r}; one of: {', '.join(REASONS)}")
    return found


def revoke(ca_dir: Path, serial: int, reason: str = "unspecified", cert_pem: bytes | None = None) -> IndexEntry:
    """Record `serial` as revoked in the CA's index and write a new crl.pem; returns the index entry."""
    parse_reason(reason)
    _existing_ca(ca_dir)
    identity, not_after = "", None
    if cert_pem is not None:
        status = certificate_status(cert_pem)
        identity, not_after = (status.identity.spiffe_id if status.identity else ""), status.not_after
    entry = CaIndex(ca_dir).revoke(serial, parse_reason(reason).value, identity, not_after)
    write_crl(ca_dir)
    return entry


def build_crl(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], revoked: Iterable[IndexEntry],
              number: int, days: int = CRL_DAYS) -> x509.CertificateRevocationList:
    """A CRL signed by the CA listing `revoked` (entries with revoked_at), valid for `days`."""
    ca_cert, ca_key = ca
    now = _now()
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + dt.timedelta(days=days))
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    for entry in revoked:
        if entry.revoked_at is None:
            continue
        item = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
        if entry.reason and entry.reason != x509.ReasonFlags.unspecified.value:
            item = item.add_extension(x509.CRLReason(parse_reason(entry.reason)), critical=False)
        builder = builder.add_revoked_certificate(item.build())
    return builder.sign(ca_key, hashes.SHA256())


def write_crl(ca_dir: Path, days: int = CRL_DAYS) -> Path:
    """(Re-)issue crl.pem in the CA directory from its index, atomically (servers may be reading it)."""
    ca = _existing_ca(ca_dir)
    index = CaIndex(ca_dir)
    crl = build_crl(ca, index.entries(), index.next_crl_number(), days)
    path = ca_dir / CRL_FILE
    _atomic_write(path, crl.public_bytes(serialization.Encoding.PEM))
    return path


def load_crl(crl_pem: bytes, ca_pem: bytes) -> x509.CertificateRevocationList:
    """The CRL, once it parses and is signed by the CA in `ca_pem`; ValueError saying why not otherwise."""
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError:
        raise ValueError("not a PEM X.509 CRL") from None
    cas = x509.load_pem_x509_certificates(ca_pem)
    for ca in cas:
        if crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
            return crl
    raise ValueError("not signed by the configured CA")


@dataclass(frozen=True)
class CertificateStatus:
    """What a person needs to know about one certificate: whose, until when, and whether revoked."""

    identity: Identity | None   # None: the certificate carries no usable fedgate identity
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: int
    revoked_at: dt.datetime | None = None
    reason: str = ""

    @property
    def serial_hex(self) -> str:
        return f"{self.serial:x}"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def expired(self) -> bool:
        return self.days_left < 0

    @property
    def renew_soon(self) -> bool:
        return self.days_left < RENEW_WITHIN_DAYS


def certificate_status(pem: bytes, crl: x509.CertificateRevocationList | None = None,
                       now: dt.datetime | None = None) -> CertificateStatus:
    """The status of the PEM certificate `pem`, revoked or not according to `crl` (a verified one)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except (ValueError, x509.InvalidVersion):
        raise InvalidInput("not a PEM certificate") from None
    identity: Identity | None
    try:
        identity = identity_from_pem(cert.public_bytes(serialization.Encoding.PEM))
    except Unauthenticated:
        identity = None
    now = now or _now()
    left = cert.not_valid_after_utc - now
    revoked_at, reason = None, ""
    if crl is not None:
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            revoked_at = entry.revocation_date_utc
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = ""
    return CertificateStatus(identity, cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc,
                             left.days, revoked_at, reason)
