"""The console's certificates page: when the owner's certificate and the CA's expire."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from fedgate.console.settings import ConsoleSettings

WARN_DAYS = 30  # renew (`fedgate certs renew`) before this many days are left


@dataclass(frozen=True)
class CertificateExpiry:
    """One certificate's subject, serial and validity, as the page lists it."""

    what: str
    subject: str
    serial: str
    not_after: str
    days_left: int
    warn: bool


def expiry(what: str, cert: x509.Certificate, now: dt.datetime | None = None) -> CertificateExpiry:
    now = now or dt.datetime.now(dt.UTC)
    left = (cert.not_valid_after_utc - now).days
    return CertificateExpiry(what, cert.subject.rfc4514_string(), f"{cert.serial_number:x}",
                             cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC"), left, left < WARN_DAYS)


def own_certificates(settings: ConsoleSettings) -> list[CertificateExpiry]:
    """The owner's certificate and every CA certificate the console trusts."""
    found = [expiry("your certificate", x509.load_pem_x509_certificate(settings.tls.cert.read_bytes()))]
    found += [expiry("CA", ca) for ca in x509.load_pem_x509_certificates(settings.tls.ca.read_bytes())]
    return found
