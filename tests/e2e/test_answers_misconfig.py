"""Issue 12, point 6: a misconfiguration gets one line naming the file and key (or the fix), never a traceback.

Every case runs the real command (`fedgate gateway serve`, `fedgate adapter serve`, a client command) as a
subprocess, as an operator would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import support
from fedgate.server import pki
from fedgate.demo import processes
from fedgate.core.identity import Identity
from fedgate.server.tls import TlsFiles


@pytest.fixture(scope="module")
def pki_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Our CA with a gateway, hrss, samr and a supervisor; another CA with the same names."""
    ours, other = tmp_path_factory.mktemp("ours"), tmp_path_factory.mktemp("other")
    for directory in (ours, other):
        pki.init_dir(directory, [Identity.department("hrss"), Identity.department("samr"), support.SUPERVISOR])
    return ours, other


def _fedgate(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedgate", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=120, stdin=subprocess.DEVNULL)


def _one_clear_line(out: subprocess.CompletedProcess[str], *must: str) -> str:
    """The command failed with exactly one error line holding every `must` text, and no traceback."""
    assert out.returncode != 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "Event loop is closed" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    for part in must:
        assert part in errors[0], (part, errors[0])
    return errors[0]


def _gateway_toml(tmp: Path, certs: Path, cert: str = "gateway", key: str | None = None, ca: Path | None = None,
                  extra: str = "") -> Path:
    text = support.gateway_toml(tmp / "gw", certs).replace("[tls]", f"{extra}\n[tls]")
    text = text.replace(f'cert = "{certs}/gateway.pem"', f'cert = "{certs}/{cert}.pem"')
    text = text.replace(f'key = "{certs}/gateway.key"', f'key = "{certs}/{key or cert}.key"')
    if ca is not None:
        text = text.replace(f'ca = "{certs}/ca.pem"', f'ca = "{ca}"')
    path = tmp / "gateway.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("case", "must"), [
    ("key-not-the-certificates", ("gateway.toml", "tls.key", "not the private key of the certificate in tls.cert")),
    ("certificate-from-another-ca", ("gateway.toml", "tls.cert", "was not issued by the CA in tls.ca")),
    ("department-certificate", ("gateway.toml", "tls.cert", "spiffe://fedgate/dept/hrss", "gateway.pem")),
    ("listen-without-port", ("gateway.toml", "key 'listen'", "has no port")),
    ("ticket-ttl-negative", ("gateway.toml", "key 'ticket_ttl_s'", "positive number of seconds, got -5")),
    ("policy-watch-negative", ("gateway.toml", "key 'policy_watch_s'", "0 (off) or a positive")),
    ("idle-timeout-zero", ("gateway.toml", "key 'adapter_idle_timeout_s'", "positive number of seconds, got 0")),
    ("flags-timeout-zero", ("gateway.toml", "key 'flags_timeout_s'", "positive number of seconds, got 0")),
])
def test_gateway_serve_misconfigured(tmp_path: Path, pki_dirs: tuple[Path, Path], case: str,
                                     must: tuple[str, ...]) -> None:
    ours, other = pki_dirs
    config = {
        "key-not-the-certificates": lambda: _gateway_toml(tmp_path, ours, key="dept-hrss"),
        "certificate-from-another-ca": lambda: _gateway_toml(tmp_path, other, ca=ours / "ca.pem"),
        "department-certificate": lambda: _gateway_toml(tmp_path, ours, cert="dept-hrss"),
        "listen-without-port": lambda: _gateway_toml(tmp_path, ours).write_text(
            (tmp_path / "gateway.toml").read_text().replace('"127.0.0.1:0"', '"127.0.0.1"')),
        "ticket-ttl-negative": lambda: _gateway_toml(tmp_path, ours, extra="ticket_ttl_s = -5"),
        "policy-watch-negative": lambda: _gateway_toml(tmp_path, ours, extra="policy_watch_s = -1"),
        "idle-timeout-zero": lambda: _gateway_toml(tmp_path, ours, extra="adapter_idle_timeout_s = 0"),
        "flags-timeout-zero": lambda: _gateway_toml(tmp_path, ours, extra="flags_timeout_s = 0"),
    }[case]
    config()
    out = _fedgate("gateway", "serve", "--config", str(tmp_path / "gateway.toml"), cwd=tmp_path)
    _one_clear_line(out, *must)


def _adapter_toml(tmp: Path, certs: Path, dept: str = "hrss", cert_stem: str | None = None,
                  ca: Path | None = None, replace: tuple[str, str] = ("", "")) -> Path:
    csv = tmp / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    vkey = tmp / "log-signing.vkey"
    vkey.write_text("unused\n")
    text = support.adapter_toml(dept, "127.0.0.1:1", certs, support.SUBSIDIES_DECL.format(path=csv), cert_stem,
                                vkey=vkey).replace("[tls]", f'data_dir = "{tmp / "data"}"\n\n[tls]')
    if ca is not None:
        text = text.replace(f'ca = "{certs}/ca.pem"', f'ca = "{ca}"')
    if replace[0]:
        assert replace[0] in text
        text = text.replace(*replace)
    path = tmp / f"{dept}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("case", "must"), [
    ("listen-on-all-interfaces", ("hrss.toml", "key 'listen'", "'0.0.0.0:0'", "key 'advertise'")),
    ("gateway-without-port", ("hrss.toml", "key 'gateway'", "has no port")),
    ("register-timeout-zero", ("hrss.toml", "key 'register_timeout_s'", "positive number of seconds")),
    ("key-not-the-certificates", ("hrss.toml", "tls.key", "not the private key")),
    ("certificate-from-another-ca", ("hrss.toml", "tls.cert", "was not issued by the CA in tls.ca")),
    ("another-departments-certificate", ("hrss.toml", "spiffe://fedgate/dept/samr", "dept-hrss.pem")),
])
def test_adapter_serve_misconfigured(tmp_path: Path, pki_dirs: tuple[Path, Path], case: str,
                                     must: tuple[str, ...]) -> None:
    ours, other = pki_dirs
    config = {
        "listen-on-all-interfaces": lambda: _adapter_toml(tmp_path, ours, replace=('"127.0.0.1:0"', '"0.0.0.0:0"')),
        "gateway-without-port": lambda: _adapter_toml(tmp_path, ours, replace=('"127.0.0.1:1"', '"127.0.0.1"')),
        "register-timeout-zero": lambda: _adapter_toml(tmp_path, ours, replace=("register_timeout_s = 10",
                                                                                  "register_timeout_s = 0")),
        "key-not-the-certificates": lambda: _adapter_toml(tmp_path, ours, replace=("dept-hrss.key", "dept-samr.key")),
        "certificate-from-another-ca": lambda: _adapter_toml(tmp_path, other, ca=ours / "ca.pem"),
        "another-departments-certificate": lambda: _adapter_toml(tmp_path, ours, cert_stem="dept-samr"),
    }[case]
    config()
    out = _fedgate("adapter", "serve", "--config", str(tmp_path / "hrss.toml"), cwd=tmp_path)
    _one_clear_line(out, *must)


def test_clients_misconfigured(tmp_path: Path, pki_dirs: tuple[Path, Path]) -> None:
    ours, other = pki_dirs
    # A gateway whose certificates all come from another CA: consistent itself, so it starts.
    _gateway_toml(tmp_path, other)
    gw = processes.start("gateway", ["gateway", "serve", "--config", str(tmp_path / "gateway.toml")], tmp_path)
    try:
        processes.wait_ready(gw)
        mine = TlsFiles.in_dir(ours, support.SUPERVISOR)
        env = {"FEDGATE_CA": str(mine.ca), "FEDGATE_CERT": str(mine.cert), "FEDGATE_KEY": str(mine.key)}
        out = _fedgate("datasets", "--gateway", f"127.0.0.1:{gw.port}", cwd=tmp_path, env=env)
        _one_clear_line(out, "TLS handshake with the gateway", f"127.0.0.1:{gw.port}",
                        f"a certificate from the CA in {mine.ca}")
        # No port: refused before dialling anything (it used to dial :443).
        out = _fedgate("datasets", "--gateway", "127.0.0.1", cwd=tmp_path, env=env)
        _one_clear_line(out, "'127.0.0.1' has no port", "host:port")
        # Our own certificate from another CA than the one we trust: said before connecting.
        theirs = TlsFiles.in_dir(other, support.SUPERVISOR)
        out = _fedgate("datasets", "--gateway", f"127.0.0.1:{gw.port}", cwd=tmp_path,
                       env={**env, "FEDGATE_CERT": str(theirs.cert), "FEDGATE_KEY": str(theirs.key)})
        _one_clear_line(out, "--cert", "was not issued by the CA in --ca")
        out = _fedgate("datasets", "--gateway", f"127.0.0.1:{gw.port}", cwd=tmp_path,
                       env={**env, "FEDGATE_KEY": str(ours / "dept-hrss.key")})
        _one_clear_line(out, "--key", "not the private key of the certificate in --cert")
        # An adapter whose CA is not the gateway's: registration says which CA to check.
        adapter = _adapter_toml(tmp_path, ours, replace=("127.0.0.1:1", f"127.0.0.1:{gw.port}"))
        text = adapter.read_text().replace("register_timeout_s = 10", "register_timeout_s = 2")
        adapter.write_text(text.replace(str(tmp_path / "log-signing.vkey"), str(tmp_path / "gw" / "log-signing.vkey")))
        out = _fedgate("adapter", "serve", "--config", str(adapter), cwd=tmp_path)
        _one_clear_line(out, "TLS handshake with the gateway", f"a certificate from the CA in {ours / 'ca.pem'}")
    finally:
        processes.stop(gw)
