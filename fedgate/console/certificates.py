"""The console's certificates page: when the owner's certificate and the CA's expire, and whether revoked."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from fedgate.console.settings import ConsoleSettings
from fedgate.server import pki


@dataclass(frozen=True)
class CertificateRow:
    """One certificate as the page lists it."""

    what: str
    subject: str
    serial: str
    not_after: str
    days_left: int
    state: str  # "valid", "renew soon", "expired", or "revoked on … (reason)"
    warn: bool


def _row(what: str, status: pki.CertificateStatus) -> CertificateRow:
    if status.revoked_at is not None:
        state = f"revoked on {status.revoked_at:%Y-%m-%d %H:%M} UTC" + (f" ({status.reason})" if status.reason else "")
    elif status.expired:
        state = "expired"
    elif status.renew_soon:
        state = f"renew soon (`fedgate certs renew`): under {pki.RENEW_WITHIN_DAYS} days left"
    else:
        state = "valid"
    subject = status.identity.spiffe_id if status.identity is not None else "(no fedgate identity)"
    return CertificateRow(what, subject, status.serial_hex, f"{status.not_after:%Y-%m-%d %H:%M} UTC",
                          status.days_left, state, state != "valid")


def own_certificates(settings: ConsoleSettings) -> list[CertificateRow]:
    """The owner's certificate (checked against the CA's revocation list if the console has one) and the CA's."""
    ca_pem = settings.tls.ca.read_bytes()
    crl = pki.load_crl(settings.crl.read_bytes(), ca_pem) if settings.crl else None
    rows = [_row("your certificate", pki.certificate_status(settings.tls.cert.read_bytes(), crl))]
    for ca in x509.load_pem_x509_certificates(ca_pem):
        status = pki.certificate_status(ca.public_bytes(Encoding.PEM))
        rows.append(CertificateRow("CA", ca.subject.rfc4514_string(), status.serial_hex,
                                   f"{status.not_after:%Y-%m-%d %H:%M} UTC", status.days_left,
                                   "expired" if status.expired else "valid", status.expired))
    return rows
