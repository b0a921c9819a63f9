"""`fedgate audit verify --db`: a read-only forensic copy verifies untouched; a live store verifies under load."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import support
from fedgate.server import signing_key
from fedgate.cli.audit_snapshot import verify_store
from fedgate.client.gateway import GatewayClient
from fedgate.core.errors import FedgateError
from fedgate.server.signing_key import read_vkey
from fedgate.server.tls import TlsFiles

NOBODY = 65534


def _verify_cli(db: Path, vkey: Path, *, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fedgate", "audit", "verify", "--db", str(db), "--vkey", str(vkey),
               "--no-state", "--json"]
    if as_nobody:
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(db.parent)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=db.parent)


def _fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@contextlib.contextmanager
def _read_only_dir() -> Iterator[Path]:
    """A directory anyone may read and nobody but root may write (outside pytest's private tmp)."""
    directory = Path(tempfile.mkdtemp(prefix="fedgate-forensic-"))
    try:
        yield directory
    finally:
        directory.chmod(0o755)
        shutil.rmtree(directory)


async def test_a_read_only_vacuum_into_copy_verifies_and_is_left_byte_identical(servers, tmp_path: Path) -> None:
    gw = await servers.gateway(tmp_path / "gw")
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    await servers.adapter("hrss", gw, support.SUBSIDIES_DECL.format(path=csv))
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        for _ in range(5):
            await c.list_datasets()

    with _read_only_dir() as forensic:
        copy, vkey = forensic / "audit-copy.db", forensic / "log-signing.vkey"
        with contextlib.closing(sqlite3.connect(tmp_path / "gw" / "audit.db")) as live:
            live.execute("VACUUM INTO ?", (str(copy),))  # what an officer takes from a live gateway
        shutil.copy(gw.vkey_path, vkey)
        for f in (copy, vkey):
            f.chmod(0o444)
        forensic.chmod(0o555)
        before = _fingerprint(forensic)

        result = _verify_cli(copy, vkey)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] is True and report["size"] >= 6
        assert "Traceback" not in result.stderr
        # Root ignores permission bits, so check what matters directly: nothing was written,
        # created (no -wal, -shm or -journal file) or changed beside the copy.
        assert _fingerprint(forensic) == before

        # And where permission bits do hold: an unprivileged officer gets the same answer.
        if os.geteuid() == 0 and shutil.which("setpriv"):
            as_nobody = _verify_cli(copy, vkey, as_nobody=True)
            assert as_nobody.returncode == 0, as_nobody.stdout + as_nobody.stderr
            assert json.loads(as_nobody.stdout)["size"] == report["size"]
            assert _fingerprint(forensic) == before


def test_a_missing_or_foreign_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    signing_key.load_or_create(tmp_path / "x.key", "fedgate.local/audit")
    vkey = read_vkey(tmp_path / "x.vkey")
    with pytest.raises(FedgateError, match="no such audit database"):
        verify_store(str(tmp_path / "absent.db"), vkey)
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(FedgateError, match="cannot be read as a fedgate audit store"):
        verify_store(str(other), vkey)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("other")] == ["other.db"]  # nothing created


# A gateway's audit writer in its own process: it appends as fast as it can until stdin closes.
_APPENDER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from fedgate.server import signing_key
    from fedgate.core.audit_entry import AuditEntry, utc_now
    from fedgate.gateway.audit_log import AuditLog
    from fedgate.gateway.audit_store import AuditStore

    async def main():
        key = signing_key.load_or_create(Path(sys.argv[2]), "fedgate.local/audit")
        log = await AuditLog.open(AuditStore.open(sys.argv[1]), key, "fedgate.local/audit")
        stop = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        n = 0
        while not stop.done():
            await log.append(AuditEntry(utc_now(), "spiffe://fedgate/supervisor/dcb/a", "supervisor",
                                        "registry.list", "/m", "allow", "OK"))
            n += 1
            if n == 20:
                print("ready", flush=True)
        log.store.close()
        print(n, flush=True)

    asyncio.run(main())
""")


@contextlib.contextmanager
def _store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh audit store: a SQLite file, or a private schema on the test PostgreSQL."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
        return
    with support.private_pg_schema("stores_verify") as url:
        yield url


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_verifying_a_live_store_while_a_gateway_appends_never_fails_falsely(tmp_path: Path, backend: str) -> None:
    key = tmp_path / "log-signing.key"
    with _store_url(backend, tmp_path) as url:
        db = url.removeprefix("sqlite:///") if backend == "sqlite" else url  # a path, as officers give it
        writer = subprocess.Popen([sys.executable, "-c", _APPENDER, url, str(key)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
            vkey = read_vkey(key.with_suffix(".vkey"))
            sizes = []
            deadline = time.monotonic() + 120
            # Ten verifications at least, and on until one saw the log grow (a loaded writer can stall a while).
            while (len(sizes) < 10 or sizes[-1] == sizes[0]) and time.monotonic() < deadline:
                sizes.append(verify_store(db, vkey).size)  # raised LogTampered under load before
            assert len(sizes) >= 5 and sizes == sorted(sizes) and sizes[-1] > sizes[0], sizes
        finally:
            try:
                written = writer.communicate(timeout=60)[0]  # closes its stdin: the writer stops
            finally:
                if writer.poll() is None:
                    writer.kill()
                    writer.wait()
        assert writer.returncode == 0, written
        assert verify_store(db, vkey).size == int(written.split()[-1])
