"""mTLS credentials for servers and channels, from PEM files on disk."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from fedgate.server import telemetry
from fedgate.core.errors import ConfigError
from fedgate.core.identity import Identity, identity_from_pem
from fedgate.core.tomlconfig import Table
from fedgate.server.revocation import Revocations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate and this party's certificate and key."""

    ca: Path
    cert: Path
    key: Path
    # Where they were named, for messages: the config file and its table ("tls."), or "" for CLI options.
    config: Path | None = field(default=None, compare=False)
    section: str = field(default="", compare=False)
    # The CA's revocation list (`fedgate certs revoke` writes it); None: no caller is checked against one.
    crl: Path | None = None

    @classmethod
    def from_table(cls, table: Table) -> TlsFiles:
        files = cls(table.path("ca"), table.path("cert"), table.path("key"), table.file, table.prefix,
                    crl=table.path("crl", None))
        table.done()
        return files

    def revocations(self) -> Revocations | None:
        """The CRL loaded and verified against our CA (ConfigError naming the file if it does not), or None."""
        if self.crl is None:
            return None
        return Revocations(self.crl, self.read()[0], self.label("crl"))

    def label(self, which: str) -> str:
        """The key or option that named a file: "tls.cert" in a config, "--cert" on the command line."""
        return f"{self.section}{which}" if self.config is not None else f"--{which}"

    def named(self, which: str) -> str:
        """A file as the user named it, e.g. "tls.cert (certs/gateway.pem)"."""
        return f"{self.label(which)} ({getattr(self, which)})"

    def error(self, message: str) -> ConfigError:
        """A ConfigError naming the config file the files came from (or saying they came from options)."""
        return ConfigError(str(self.config) if self.config else "--ca/--cert/--key", message)

    @classmethod
    def in_dir(cls, certs_dir: Path, identity: Identity) -> TlsFiles:
        """The files `fedgate certs init` writes for an identity."""
        return cls(certs_dir / "ca.pem", certs_dir / f"{identity.file_stem}.pem",
                   certs_dir / f"{identity.file_stem}.key")

    def read(self) -> tuple[bytes, bytes, bytes]:
        out = []
        for label, path in (("CA certificate", self.ca), ("certificate", self.cert), ("private key", self.key)):
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise ConfigError(str(path), f"cannot read {label}: {exc.strerror}") from None
        return out[0], out[1], out[2]


def check_own(files: TlsFiles, expected: Identity | None = None) -> None:
    """At start, before anything listens or dials: the key is the certificate's, the configured CA issued
    it, it is still valid, and (for a server) it is `expected`'s, with the DNS name peers pin.

    Each failure is one ConfigError naming the file and key and the fix, instead of a TLS error
    ("Socket closed", "Invalid private key") at the first connection.
    """
    ca_pem, cert_pem, key_pem = files.read()
    _check_pems(files, ca_pem, cert_pem, key_pem, expected)


def _check_pems(files: TlsFiles, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, expected: Identity | None) -> None:
    """`check_own` on contents already read (a reload checks exactly the bytes it will serve)."""
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
    except (ValueError, x509.InvalidVersion):  # InvalidVersion (a damaged version field) is no ValueError
        raise files.error(f"{files.named('ca')} is not a PEM CA certificate") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, x509.InvalidVersion):
        raise files.error(f"{files.named('cert')} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise files.error(f"{files.named('key')} is not an unencrypted PEM private key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise files.error(f"{files.named('key')} is not the private key of the certificate in {files.named('cert')}: "
                          "give the .key written next to that .pem")
    if not any(_issued_by(cert, ca) for ca in cas):
        raise files.error(f"the certificate in {files.named('cert')} was not issued by the CA in {files.named('ca')}: "
                          "use a certificate from that CA (`fedgate certs init` writes both), or point "
                          f"{files.label('ca')} at the CA that issued it")
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise files.error(f"the certificate in {files.named('cert')} is valid only from "
                          f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} "
                          "UTC: re-issue it (`fedgate certs init --force`)")
    if expected is None:
        return
    try:
        own = identity_from_pem(cert_pem)
    except Exception as exc:
        raise files.error(f"the certificate in {files.named('cert')}: {exc}") from None
    if own != expected:
        raise files.error(f"the certificate in {files.named('cert')} is {own.spiffe_id}'s, not {expected.spiffe_id}'s: "
                          f"this server needs {expected.file_stem}.pem and {expected.file_stem}.key "
                          "(`fedgate certs init` writes them)")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if expected.dns_name not in dns:
        raise files.error(f"the certificate in {files.named('cert')} has no DNS name {expected.dns_name}, which its "
                          "peers check: re-issue it with `fedgate certs init --force`")


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# gRPC's own words for a connection it could not set up; a server's refusal never starts so.
_NO_CONNECTION = "failed to connect to all addresses"
_HANDSHAKE_SIGNS = ("handshake", "ssl", "tls", "socket closed", "certificate")


def handshake_hint(details: str, address: str, files: TlsFiles, peer: str) -> str | None:
    """For a connection that failed in the TLS handshake, the question to ask; None for other failures.

    gRPC reports a peer with a certificate from another CA only as "Socket closed" or
    "Tls handshake failed"; this names what to check. A message the peer itself sent (the
    gateway could not reach an adapter's advertised endpoint, a department named "utls") is not
    a handshake failure, whatever words it holds.
    """
    lowered = details.lower()
    if not lowered.startswith(_NO_CONNECTION) or not any(sign in lowered for sign in _HANDSHAKE_SIGNS):
        return None
    return (f"TLS handshake with {peer} at {address} failed: is {peer} using a certificate from the CA in "
            f"{files.ca}, and is your certificate ({files.cert}) from that CA too? ({details})")


def _files_signature(files: TlsFiles) -> tuple[tuple[int, int, int], ...] | None:
    try:
        stats = [os.stat(p) for p in (files.ca, files.cert, files.key)]
    except OSError:
        return None
    return tuple((st.st_mtime_ns, st.st_size, st.st_ino) for st in stats)


class RenewedFiles:
    """Whether a party's certificate files were replaced by a usable set since last asked, for clients whose
    channels hold the files' contents (a renewal is then used by a new channel, not the old one).

    At most one look (three stats) every `every_s` seconds; a set that does not check out yet (a renewal
    half copied in) is not reported until it does.
    """

    def __init__(self, files: TlsFiles, every_s: float = 1.0) -> None:
        self._files = files
        self._every_s = every_s
        self._seen = _files_signature(files)
        self._looked = time.monotonic()
        self._identity = identity_from_pem(files.read()[1])

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._looked < self._every_s:
            return False
        self._looked = now
        seen = _files_signature(self._files)
        if seen is None or seen == self._seen:
            return False
        try:
            _check_pems(self._files, *self._files.read(), self._identity)
        except ConfigError:
            return False
        self._seen = seen
        return True


class ServerCertificates:
    """The certificate configuration a server hands each new TLS handshake: the files on disk as they are now.

    gRPC calls this fetcher before every handshake; returning None keeps the configuration it has, so
    the files are only stat'ed unless they changed. A changed set is served only once it checks out
    (the key is the certificate's, our CA issued it, it is valid now, it is the same identity as
    before): a renewal half copied in, or a file half written, keeps the previous configuration, and
    the fetcher tries again at the next handshake.
    """

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._seen = _files_signature(files)
        ca, cert, key = files.read()
        self.identity = identity_from_pem(cert)
        self.initial = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        self._lock = threading.Lock()
        self.reloads = 0

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            with self._lock:
                return self._fetch()
        except Exception as exc:  # noqa: BLE001 - raising into gRPC's handshake would fail the connection
            log.warning("certificate reload failed (%s); keeping the previous certificate", type(exc).__name__)
            return None

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        seen = _files_signature(self._files)
        if seen is None or seen == self._seen:
            return None
        try:
            ca, cert, key = self._files.read()
            _check_pems(self._files, ca, cert, key, self.identity)
        except ConfigError as exc:
            log.warning("the certificate files changed but are not usable yet (%s); serving the previous "
                        "certificate", exc)
            return None
        self._seen = seen
        self.reloads += 1
        log.info("serving a new certificate from %s", self._files.cert)
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that require and verify a client certificate from our CA, picking up a renewed
    certificate (or CA bundle) on disk at the next handshake, without a restart."""
    fetcher = ServerCertificates(files)
    return grpc.dynamic_ssl_server_credentials(fetcher.initial, fetcher, require_client_authentication=True)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def secure_channel(address: str, files: TlsFiles, server: Identity,
                   options: list[tuple[str, object]] | None = None) -> grpc.aio.Channel:
    """A channel that only accepts a server certificate issued to `server`.

    The override makes TLS check the server's certificate against the role DNS
    name (e.g. `hrss.dept.fedgate`) instead of the host we dial, so another
    department's certificate cannot answer for this one.
    """
    opts = [("grpc.ssl_target_name_override", server.dns_name), *(options or [])]
    return grpc.aio.secure_channel(address, channel_credentials(files), options=opts,
                                   interceptors=telemetry.client_interceptors())
