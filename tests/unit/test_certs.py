"""Certificates a deployment needs: requests signed by the CA, its index, revocation lists, status, reloads."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgate.core.errors import CertificateRevoked, ConfigError, InvalidInput
from fedgate.core.identity import GATEWAY, Identity
from fedgate.server import pki
from fedgate.server.revocation import Revocations
from fedgate.server.tls import ServerCertificates, TlsFiles

HRSS = Identity.department("hrss")


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    pki.init_dir(directory, [Identity.department("samr")])
    return directory


def _csr(identity_uri: str, dns: list[str], extra: list[x509.ExtensionType] = (),  # type: ignore[assignment]
         key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity_uri),
                                    *(x509.DNSName(d) for d in dns)]
    builder = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
               .add_extension(x509.SubjectAlternativeName(sans), critical=False))
    for ext in extra:
        builder = builder.add_extension(ext, critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _der_to_pem(der: bytes) -> bytes:
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)


def test_a_request_made_by_its_holder_is_signed_like_issue_signs(ca_dir: Path, tmp_path: Path) -> None:
    made = pki.write_request(tmp_path, HRSS, ["localhost", "hrss.example.org"])
    assert made.key.stat().st_mode & 0o777 == 0o600
    signed = pki.sign_request(ca_dir, made.csr.read_bytes())
    cert = x509.load_pem_x509_certificate(signed.pem)
    # The key never left: the certificate is for the key the requester kept.
    key = serialization.load_pem_private_key(made.key.read_bytes(), password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    # The same extensions as a certificate `certs init` issues, and 397 days.
    issued = x509.load_pem_x509_certificate((ca_dir / "dept-samr.pem").read_bytes())
    assert [(e.oid, e.critical) for e in cert.extensions] == [(e.oid, e.critical) for e in issued.extensions]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == pki.DEFAULT_DAYS
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [HRSS.spiffe_id]
    assert set(names.get_values_for_type(x509.DNSName)) == {"hrss.dept.fedgate", "localhost", "hrss.example.org"}
    entries = {e.serial: e for e in pki.CaIndex(ca_dir).entries()}
    assert entries[signed.serial].identity == HRSS.spiffe_id and entries[signed.serial].revoked_at is None
    assert entries[signed.serial].not_after == cert.not_valid_after_utc


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    pki.write_request(tmp_path, HRSS)
    with pytest.raises(ConfigError, match="already exists"):
        pki.write_request(tmp_path, HRSS)


@pytest.mark.parametrize(("desc", "csr", "message"), [
    ("asks to be a CA", lambda: _csr(HRSS.spiffe_id, [HRSS.dns_name], [x509.BasicConstraints(ca=True, path_length=None)]),
     "asks to be a CA"),
    ("asks for key usages", lambda: _csr(HRSS.spiffe_id, [HRSS.dns_name], [x509.KeyUsage(
        True, False, False, False, False, True, True, False, False)]), "extension fedgate does not issue"),
    ("unknown role", lambda: _csr("spiffe://fedgate/king/hrss", ["hrss.dept.fedgate"]), "not a fedgate identity"),
    ("another trust domain", lambda: _csr("spiffe://example/dept/hrss", ["hrss.dept.fedgate"]),
     "not a fedgate identity"),
    ("two identities", lambda: _two_identities(), "exactly one fedgate identity"),
    ("another department's DNS name", lambda: _csr(HRSS.spiffe_id, [HRSS.dns_name, "samr.dept.fedgate"]),
     "samr.dept.fedgate, which is not"),
    ("the gateway's DNS name", lambda: _csr(HRSS.spiffe_id, [HRSS.dns_name, "gateway.fedgate"]),
     "gateway.fedgate, which is not"),
    ("no DNS name of its own", lambda: _csr(HRSS.spiffe_id, ["samr.dept.fedgate"]), "lacks the DNS name"),
    ("not a CSR", lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
     "not a PEM certificate signing request"),
    ("an RSA key", lambda: _rsa_csr(), "not an EC P-256 key"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_odd_requests_are_refused_saying_why(ca_dir: Path, desc: str, csr: object, message: str) -> None:
    before = len(pki.CaIndex(ca_dir).entries())
    with pytest.raises(InvalidInput, match=message):
        pki.sign_request(ca_dir, csr())  # type: ignore[operator]
    assert len(pki.CaIndex(ca_dir).entries()) == before  # nothing issued, nothing recorded


def _two_identities() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.UniformResourceIdentifier(HRSS.spiffe_id), x509.UniformResourceIdentifier(GATEWAY.spiffe_id),
            x509.DNSName(HRSS.dns_name)]
    return (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def _rsa_csr() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sans = [x509.UniformResourceIdentifier(HRSS.spiffe_id), x509.DNSName(HRSS.dns_name)]
    return (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def test_a_request_altered_after_signing_is_refused_as_forged(ca_dir: Path) -> None:
    _, pem = pki.make_request(HRSS)
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    # Same length, so it still parses: the identity changed under the requester's signature.
    forged = _der_to_pem(der.replace(b"dept/hrss", b"dept/samr").replace(b"hrss.dept", b"samr.dept"))
    with pytest.raises(InvalidInput, match="signature does not verify"):
        pki.sign_request(ca_dir, forged)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_no_single_bit_flip_of_a_request_gets_signed(ca_dir: Path, position: int, bit: int) -> None:
    _, pem = _REQUEST
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[position % len(der)] ^= 1 << bit
    import base64
    mangled = (b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der))
               + b"-----END CERTIFICATE REQUEST-----\n")
    with pytest.raises(InvalidInput):
        pki.check_request(mangled)


_REQUEST = pki.make_request(HRSS)


def test_a_request_with_a_damaged_version_is_refused_not_a_crash() -> None:
    """Hypothesis found it: cryptography raises InvalidVersion, which is no ValueError, for a version of 1."""
    import base64
    der = x509.load_pem_x509_csr(_REQUEST[1]).public_bytes(serialization.Encoding.DER)
    version = der.index(b"\x02\x01\x00")  # CertificationRequestInfo's first field: INTEGER 0 (v1)
    mangled = der[:version] + b"\x02\x01\x01" + der[version + 3:]
    pem = (b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(mangled)
           + b"-----END CERTIFICATE REQUEST-----\n")
    with pytest.raises(InvalidInput, match="not a PEM certificate signing request"):
        pki.check_request(pem)


def test_the_index_survives_a_crash_mid_write(ca_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = pki.CaIndex(ca_dir)
    before = index.path.read_bytes()
    cert = x509.load_pem_x509_certificate((ca_dir / "gateway.pem").read_bytes())

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        index.record(cert, GATEWAY)
    monkeypatch.undo()
    assert index.path.read_bytes() == before  # the previous, complete index
    json.loads(index.path.read_bytes())
    assert not [p for p in ca_dir.iterdir() if p.name.endswith(".tmp")]  # no half file left behind


def test_concurrent_signers_all_land_in_the_index(tmp_path: Path) -> None:
    pki.load_or_create_ca(tmp_path)
    errors: list[BaseException] = []

    def sign_some() -> None:
        try:
            for _ in range(5):
                pki.sign_request(tmp_path, pki.make_request(HRSS)[1])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sign_some) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({e.serial for e in pki.CaIndex(tmp_path).entries()}) == 30


def _other_ca(tmp_path: Path) -> Path:
    other = tmp_path / "other-ca"
    pki.load_or_create_ca(other)
    return other


def test_revocation_writes_a_crl_the_ca_signed(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    pki.init_dir(ca, [HRSS])
    status = pki.certificate_status((ca / "dept-hrss.pem").read_bytes())
    entry = pki.revoke(ca, status.serial, "keyCompromise")
    assert entry.revoked_at is not None and entry.identity == HRSS.spiffe_id
    crl = pki.load_crl((ca / "crl.pem").read_bytes(), (ca / "ca.pem").read_bytes())
    assert [r.serial_number for r in crl] == [status.serial]
    assert crl.next_update_utc is not None
    assert dt.timedelta(days=6) < crl.next_update_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(days=7)
    after = pki.certificate_status((ca / "dept-hrss.pem").read_bytes(), crl)
    assert after.revoked and after.reason == "keyCompromise" and after.identity == HRSS
    # Revoking again keeps the first date; a re-issued CRL carries a higher number.
    again = pki.revoke(ca, status.serial, "superseded")
    assert again.revoked_at == entry.revoked_at
    number = pki.load_crl(pki.write_crl(ca).read_bytes(), (ca / "ca.pem").read_bytes()) \
        .extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == 3
    with pytest.raises(InvalidInput, match="unknown revocation reason"):
        pki.revoke(ca, status.serial, "boredom")


def test_a_crl_from_another_ca_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    pki.init_dir(ca, [HRSS])
    other = _other_ca(tmp_path)
    pki.write_crl(other)
    with pytest.raises(ValueError, match="not signed by the configured CA"):
        pki.load_crl((other / "crl.pem").read_bytes(), (ca / "ca.pem").read_bytes())
    files = TlsFiles.in_dir(ca, HRSS)
    files = TlsFiles(files.ca, files.cert, files.key, crl=other / "crl.pem")
    with pytest.raises(ConfigError, match="crl.pem.*not signed by the configured CA"):
        files.revocations()


def test_a_running_server_reloads_the_crl_and_keeps_the_last_good_one(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    ca = tmp_path / "ca"
    pki.init_dir(ca, [HRSS])
    crl_path = pki.write_crl(ca)
    hrss_pem = (ca / "dept-hrss.pem").read_bytes()
    revocations = Revocations(crl_path, (ca / "ca.pem").read_bytes(), recheck_s=0)
    revocations.check(hrss_pem)  # not revoked yet
    pki.revoke(ca, pki.certificate_status(hrss_pem).serial)
    with pytest.raises(CertificateRevoked, match=r"your certificate serial [0-9a-f]+ was revoked by the CA on .*"
                                                 "ask the CA operator for a new one"):
        revocations.check(hrss_pem)
    # A half-written file, then one from another CA: both ignored with a warning, the list kept.
    good = crl_path.read_bytes()
    other = _other_ca(tmp_path)
    for bad in (good[: len(good) // 2], pki.write_crl(other).read_bytes()):
        crl_path.write_bytes(bad)
        with caplog.at_level(logging.WARNING, "fedgate.server.revocation"):
            with pytest.raises(CertificateRevoked):
                revocations.check(hrss_pem)
        assert "keeping the previous list" in caplog.text
        caplog.clear()


def test_the_crl_is_looked_at_no_more_than_every_recheck_interval(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    pki.init_dir(ca, [HRSS])
    revocations = Revocations(pki.write_crl(ca), (ca / "ca.pem").read_bytes(), recheck_s=3600)
    hrss_pem = (ca / "dept-hrss.pem").read_bytes()
    pki.revoke(ca, pki.certificate_status(hrss_pem).serial)
    revocations.check(hrss_pem)  # within the interval: the file is not even stat'ed


def test_certificate_status_counts_days_and_warns_under_thirty(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    cert, key, _ = pki.load_or_create_ca(ca)
    pki.issue(ca, HRSS, (cert, key), days=20)
    status = pki.certificate_status((ca / "dept-hrss.pem").read_bytes())
    assert status.identity == HRSS and status.days_left == 19 and status.renew_soon and not status.revoked
    later = pki.certificate_status((ca / "dept-hrss.pem").read_bytes(),
                                   now=dt.datetime.now(dt.UTC) + dt.timedelta(days=25))
    assert later.expired


def test_renewal_asks_for_the_same_identity_and_hosts_with_a_new_key(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    cert, key, _ = pki.load_or_create_ca(ca)
    pki.issue(ca, HRSS, (cert, key), hosts=["localhost", "hrss.example.org"])
    made, status = pki.renewal_request(ca / "dept-hrss.pem", ca / "dept-hrss.key", tmp_path / "next")
    csr, identity, hosts = pki.check_request(made.csr.read_bytes())
    assert identity == HRSS == status.identity and set(hosts) == {"localhost", "hrss.example.org"}
    assert made.key.read_bytes() != (ca / "dept-hrss.key").read_bytes()
    with pytest.raises(ConfigError, match="not the private key"):
        pki.renewal_request(ca / "dept-hrss.pem", ca / "ca.key", tmp_path / "other")


def test_a_server_serves_the_renewed_certificate_only_once_key_and_certificate_match(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    pki.init_dir(ca, [HRSS])
    files = TlsFiles.in_dir(ca, HRSS)
    fetch = ServerCertificates(files)
    assert fetch() is None  # nothing changed
    made, _ = pki.renewal_request(files.cert, files.key, tmp_path / "next")
    signed = pki.sign_request(ca, made.csr.read_bytes())
    files.key.write_bytes(made.key.read_bytes())  # the key copied in, the certificate not yet
    assert fetch() is None and fetch.reloads == 0
    files.cert.write_bytes(signed.pem)
    assert fetch() is not None and fetch.reloads == 1
    assert fetch() is None  # and not again until the files change
