"""Smoke tests of the thin CLI: it calls the library and reports FedgateError as a message."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography import x509
from typer.testing import CliRunner

import support
from fedgate.cli.commands import app
from fedgate.core.identity import identity_from_pem

runner = CliRunner()


def test_certs_init_creates_ca_and_identities_and_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = runner.invoke(app, ["certs", "init", str(out), "--dept", "hrss", "--dept", "samr",
                                 "--supervisor", "dcb/alice", "--officer", "audit/bob"])
    assert result.exit_code == 0, result.output
    for stem in ("ca", "gateway", "dept-hrss", "dept-samr", "supervisor-dcb-alice", "officer-audit-bob"):
        assert (out / f"{stem}.pem").exists()
        assert stat.S_IMODE(os.stat(out / f"{stem}.key").st_mode) == 0o600
    ident = identity_from_pem((out / "dept-hrss.pem").read_bytes())
    assert ident.spiffe_id == "spiffe://fedgate/dept/hrss"
    cert = x509.load_pem_x509_certificate((out / "dept-hrss.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "hrss.dept.fedgate" in sans.get_values_for_type(x509.DNSName)

    ca_before = (out / "ca.pem").read_bytes()
    again = runner.invoke(app, ["certs", "init", str(out), "--dept", "tax"])
    assert again.exit_code == 0, again.output
    assert (out / "ca.pem").read_bytes() == ca_before, "an existing CA must be reused, not replaced"
    assert (out / "dept-tax.pem").exists()


def test_certs_init_rejects_bad_identity(tmp_path: Path) -> None:
    result = runner.invoke(app, ["certs", "init", str(tmp_path), "--supervisor", "alice"])
    assert result.exit_code != 0
    assert "AGENCY/USER" in result.output


def test_gateway_serve_with_unknown_key_exits_1_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(support.gateway_toml(tmp_path, tmp_path) + "colour = 'red'\n")
    result = runner.invoke(app, ["gateway", "serve", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "unknown key 'tls.colour'" in result.output


def test_adapter_serve_with_broken_csv_exits_1_naming_the_line(tmp_path: Path, certs: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV.replace(",3000\n", ",3000,oops\n"), encoding="utf-8")
    cfg = tmp_path / "dept.toml"
    from fedgate.server.signing_key import load_or_create, vkey_path

    load_or_create(tmp_path / "log.key", "fedgate.local/audit")
    cfg.write_text(support.adapter_toml("hrss", "127.0.0.1:1", certs, support.SUBSIDIES_DECL.format(path=csv),
                                        vkey=vkey_path(tmp_path / "log.key")))
    result = runner.invoke(app, ["adapter", "serve", "--config", str(cfg)])
    assert result.exit_code == 1
    assert "line 4: expected 3 columns, found 4" in result.output


def test_policy_check_prints_decision_and_rule() -> None:
    allowed = runner.invoke(app, ["policy", "check", "supervisor/dcb/alice", "dcb", "hrss.pensions.name",
                                  "disclose.masked", "--level", "L3", "--json"])
    assert allowed.exit_code == 0, allowed.output
    assert '"allowed": true' in allowed.output and "p, supervisor, *, *, disclose.masked, L3" in allowed.output
    denied = runner.invoke(app, ["policy", "check", "supervisor/dcb/alice", "dcb", "hrss.pensions.resident_id",
                                 "disclose.plain", "--level", "L4"])
    assert denied.exit_code == 2
    assert "deny" in denied.output and "denied by default" in denied.output


def test_policy_check_reports_a_broken_policy_file(tmp_path: Path) -> None:
    import shutil

    from fedgate.core.classification import policies_dir

    shutil.copytree(policies_dir(), tmp_path / "p", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (tmp_path / "p" / "policy.csv").write_text("p, supervisor, *, *, teleport, L1\n")
    result = runner.invoke(app, ["policy", "check", "supervisor/dcb/a", "dcb", "x", "list",
                                 "--policy-dir", str(tmp_path / "p")])
    assert result.exit_code == 1 and "unknown action 'teleport'" in result.output


def test_approvals_keygen_makes_a_private_key_and_its_verifier_key_and_never_overwrites(tmp_path: Path) -> None:
    keys = tmp_path / "approvers"
    made = runner.invoke(app, ["approvals", "keygen", "hrss-zhang", "--out", str(keys)])
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE((keys / "hrss-zhang.key").stat().st_mode) == 0o600
    assert (keys / "hrss-zhang.vkey").read_text().startswith("hrss-zhang+")
    before = (keys / "hrss-zhang.key").read_bytes()
    again = runner.invoke(app, ["approvals", "keygen", "hrss-zhang", "--out", str(keys)])
    assert again.exit_code == 1 and "an approver key is never overwritten" in again.output
    assert (keys / "hrss-zhang.key").read_bytes() == before
