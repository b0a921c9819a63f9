"""The certificate commands through the real CLI: request, sign, renew, revoke, crl, status and their refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import support
from fedgate.cli.commands import app
from fedgate.core.identity import Identity
from fedgate.server import pki

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_request_sign_revoke_crl_and_status(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    _ok("certs", "init", str(ca))
    said = _ok("certs", "request", "supervisor/dcb/carol", "--out", str(tmp_path / "carol"), "--hosts", "carol.example")
    assert "never send it" in said and "supervisor-dcb-carol.csr" in said
    _ok("certs", "sign", str(tmp_path / "carol" / "supervisor-dcb-carol.csr"), "--ca-dir", str(ca), "--days", "20")
    cert = tmp_path / "carol" / "supervisor-dcb-carol.pem"
    status = pki.certificate_status(cert.read_bytes())
    assert status.identity == Identity.person(support.SUPERVISOR.role, "dcb/carol") and status.days_left == 19
    # Under 30 days left: status warns, naming the file and the way out.
    result = runner.invoke(app, ["certs", "status", str(cert)])
    assert result.exit_code == 0 and "supervisor-dcb-carol.pem" in result.output and "renew it" in result.output
    _ok("certs", "revoke", f"{status.serial:x}", "--ca-dir", str(ca), "--reason", "affiliationChanged")
    shown = _ok("certs", "status", str(cert), "--crl", str(ca / "crl.pem"), "--ca", str(ca / "ca.pem"))
    assert "yes" in shown
    before = (ca / "crl.pem").read_bytes()
    _ok("certs", "crl", "--ca-dir", str(ca))
    assert (ca / "crl.pem").read_bytes() != before


def test_refusals_are_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    _ok("certs", "init", str(ca))
    forged = tmp_path / "forged.csr"
    forged.write_bytes(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    good = tmp_path / "good.csr"
    good.write_bytes(pki.make_request(Identity.department("tax"))[1])
    for args, words in (
        (["certs", "sign", str(forged), "--ca-dir", str(ca)], "not a PEM certificate signing request"),
        (["certs", "sign", str(good), "--ca-dir", str(tmp_path / "nowhere")], "no CA here"),
        (["certs", "revoke", "zz", "--ca-dir", str(ca)], "not a hexadecimal serial"),
        (["certs", "revoke", "--ca-dir", str(ca)], "give either a SERIAL or --cert"),
        (["certs", "revoke", "ab", "--ca-dir", str(ca), "--reason", "whim"], "unknown revocation reason"),
        (["certs", "renew", "--cert", str(ca / "gateway.pem"), "--key", str(ca / "ca.key"), "--out",
          str(tmp_path / "r")], "not the private key"),
        (["certs", "status", str(ca / "gateway.pem"), "--crl", str(ca / "gateway.pem"), "--ca", str(ca / "ca.pem")],
         "not a PEM X.509 CRL"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert words in " ".join(result.output.split()), (args, result.output)
    bad = runner.invoke(app, ["certs", "request", "king/hrss", "--out", str(tmp_path / "k")])
    assert bad.exit_code != 0 and "unknown role" in bad.output


def test_the_installed_command_signs_a_request(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    _ok("certs", "init", str(ca))
    run = [sys.executable, "-m", "fedgate", "certs"]
    made = subprocess.run([*run, "request", "dept/tax", "--out", str(tmp_path / "tax")], capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    signed = subprocess.run([*run, "sign", str(tmp_path / "tax" / "dept-tax.csr"), "--ca-dir", str(ca)],
                            capture_output=True, text=True, timeout=60)
    assert signed.returncode == 0, signed.stderr
    assert pki.certificate_status((tmp_path / "tax" / "dept-tax.pem").read_bytes()).identity == \
        Identity.department("tax")
