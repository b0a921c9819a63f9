"""Departments witness the audit log: a log cut and re-signed with the real key is refused and exposed.

Each adapter cosigns (C2SP tlog-cosignature) every checkpoint it verified when
admitting a ticket; the gateway keeps the cosignatures beside its checkpoints.
The attacker is the gateway's operator, holding its signing key: they stop it,
cut the log's tail (entries, checkpoints, tree nodes) and restart it, so it
signs new checkpoints over sizes it had signed differently before. Every
department refuses the next ticket (nothing is served), and `fedgate audit
verify --no-state` with pinned witness keys fails: first on the cosignatures
left behind (a split view), then, once those are deleted too, for want of them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import support
from fedgate.cli.audit_snapshot import verify_store
from fedgate.client.audit_verify import LogTampered
from fedgate.client.gateway import GatewayClient, Side
from fedgate.core.errors import RemoteCallFailed
from fedgate.demo.datagen import generate
from fedgate.server.signing_key import read_vkey
from fedgate.server.tls import TlsFiles
from fedgate.server.witness_key import read_witness_keys

ROWS = 200
WHY = ("核查稳岗补贴发放对象", "DC-2026-115")
SUBSIDIES = Side("hrss.subsidies", "uscc", "")
COMPANIES = Side("samr.companies", "uscc", "")


def _client(servers, gw) -> GatewayClient:  # type: ignore[no-untyped-def]
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR))


def _verify(gw_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`fedgate audit verify --no-state` on the gateway's store file, as an officer would run it."""
    env = {**os.environ, "FEDGATE_LOG_VKEY": str(gw_dir / "log-signing.vkey")}
    return subprocess.run([sys.executable, "-m", "fedgate", "audit", "verify", "--json", "--no-state",
                           "--db", str(gw_dir / "audit.db"), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _cut(db_path: Path, size: int) -> None:
    """The operator's clean cut: entries, checkpoints and tree nodes beyond `size` go."""
    with sqlite3.connect(db_path) as db:
        db.execute("DELETE FROM fedgate_audit_entries WHERE idx >= ?", (size,))
        db.execute("DELETE FROM fedgate_audit_checkpoints WHERE size > ?", (size,))
        db.execute("DELETE FROM fedgate_audit_nodes WHERE ((idx + 1) << level) > ?", (size,))


async def test_a_cut_and_resigned_log_is_refused_by_every_department_and_fails_verification(
        servers, tmp_path: Path) -> None:
    workdir = tmp_path / "data"
    departments = generate(workdir, rows=ROWS, seed=11)
    gw_dir = workdir / "gateway-data"
    gw = await servers.gateway(gw_dir)
    adapters = await servers.demo_adapters(gw, workdir, departments, ("hrss", "samr"))
    keys = tmp_path / "witnesses.vkeys"
    keys.write_text("".join((servers.tmp / f"adapter-{code}" / "witness.vkey").read_text()
                            for code in ("hrss", "samr")))
    witnesses = read_witness_keys(keys)

    # Normal operation: a department cosigns the checkpoint of each ticket it admits (a count here)...
    async with _client(servers, gw) as c:
        await c.count_rows("hrss.subsidies", WHY[0], WHY[1])
    counted = _verify(gw_dir, "--witness-keys", str(keys))
    assert counted.returncode == 0, counted.stdout + counted.stderr
    assert json.loads(counted.stdout)["witnessed_by"] == ["fedgate-witness/hrss"]
    assert _verify(gw_dir, "--witness-keys", str(keys), "--witnesses", "2").returncode == 1  # samr saw none
    # ...and both departments of a match.
    async with _client(servers, gw) as c:
        first = await c.match(left=SUBSIDIES, right=COMPANIES, purpose=WHY[0], case_number=WHY[1], mode="keyed")
        second = await c.match(left=SUBSIDIES, right=COMPANIES, purpose=WHY[0], case_number=WHY[1], mode="keyed")
    assert first.cardinality == second.cardinality > 0
    ok = _verify(gw_dir, "--witness-keys", str(keys), "--witnesses", "2")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["witnessed_by"] == sorted(w.name for w in witnesses)
    # Through the gateway too, twice: the officer's own reads are logged but need no cosignature.
    officer = GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER))
    async with officer as c:
        for _ in range(2):
            report = await c.verify_log(read_vkey(gw_dir / "log-signing.vkey"), None, witnesses, 2)
            assert report.witnessed_by == tuple(sorted(w.name for w in witnesses))

    # The operator stops the gateway, cuts the second match out of the log and restarts it: the
    # checkpoint left at the cut was signed with the real key, and the gateway signs on from there.
    await servers.stop_gateway(gw)
    cut = second.audit_index
    _cut(gw_dir / "audit.db", cut)
    gw = await servers.gateway(gw_dir)

    before = {code: len(a.disclosures.disclosures()) for code, a in adapters.items()}
    served_before = {code: sum(d.result_rows or 0 for d in a.disclosures.disclosures() if d.decision == "served")
                     for code, a in adapters.items()}
    async with _client(servers, gw) as c:
        for dataset in ("hrss.subsidies", "samr.companies"):
            with pytest.raises(RemoteCallFailed) as refused:
                await c.count_rows(dataset, WHY[0], WHY[1])
            assert refused.value.code == "FAILED_PRECONDITION", str(refused.value)
        with pytest.raises(RemoteCallFailed) as refused:
            await c.match(left=SUBSIDIES, right=COMPANIES, purpose=WHY[0], case_number=WHY[1], mode="keyed")
        assert refused.value.code == "FAILED_PRECONDITION", str(refused.value)
    # Every department refused every ticket of the cut log, and served nothing more.
    for code, adapter in adapters.items():
        after = adapter.disclosures.disclosures()[before[code]:]
        assert after and all(d.decision == "refused" and "history was rewritten" in d.reason for d in after), after
        assert sum(d.result_rows or 0 for d in adapter.disclosures.disclosures()
                   if d.decision == "served") == served_before[code]

    # The cosignatures left behind no longer verify against the new checkpoints: a split view.
    with pytest.raises(LogTampered, match="split view"):
        verify_store(str(gw_dir / "audit.db"), read_vkey(gw_dir / "log-signing.vkey"), None, witnesses, 1)

    # A careful operator deletes them too: the log is consistent and signed with the real key, so
    # without saved state the signature check alone passes; the witnesses' quorum does not.
    await servers.stop_gateway(gw)
    with sqlite3.connect(gw_dir / "audit.db") as db:
        db.execute("DELETE FROM fedgate_audit_cosignatures WHERE size > ?", (cut,))
    plain = _verify(gw_dir)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    failed = _verify(gw_dir, "--witness-keys", str(keys), "--witnesses", "1")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    verdict = json.loads(failed.stdout)
    assert not verdict["ok"] and "missing cosignatures" in verdict["error"]
    assert verdict["bad_index"] >= cut
