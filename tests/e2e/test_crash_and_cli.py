"""Real processes: a gateway killed with SIGKILL loses no acknowledged entry; the audit CLI as officers use it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import support
from fedgate.server import pki
from fedgate.client.gateway import GatewayClient
from fedgate.demo import processes
from fedgate.core.errors import FedgateError
from fedgate.core.identity import Identity
from fedgate.server.tls import TlsFiles


@pytest.fixture
def deployment(tmp_path: Path):
    certs = tmp_path / "certs"
    pki.init_dir(certs, [Identity.department("hrss"), support.SUPERVISOR, support.OFFICER])
    (tmp_path / "gateway.toml").write_text(support.gateway_toml(tmp_path / "gw", certs))
    started: list[processes.ServerProcess] = []

    def start_gateway() -> processes.ServerProcess:
        gw = processes.start("gateway", ["gateway", "serve", "--config", str(tmp_path / "gateway.toml")], tmp_path)
        started.append(gw)
        processes.wait_ready(gw)
        return gw

    gw = start_gateway()
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    cfg = tmp_path / "hrss.toml"
    cfg.write_text(support.adapter_toml("hrss", f"127.0.0.1:{gw.port}", certs, support.SUBSIDIES_DECL.format(path=csv),
                                        vkey=tmp_path / "gw" / "log-signing.vkey"))
    adapter = processes.start("adapter-hrss", ["adapter", "serve", "--config", str(cfg)], tmp_path)
    started.append(adapter)
    processes.wait_ready(adapter)
    yield tmp_path, certs, start_gateway
    for proc in reversed(started):
        processes.stop(proc)


def _cli(args: list[str], gateway_port: int, certs: Path, who: Identity, tmp: Path) -> subprocess.CompletedProcess[str]:
    files = TlsFiles.in_dir(certs, who)
    env = {**os.environ, "FEDGATE_GATEWAY": f"127.0.0.1:{gateway_port}", "FEDGATE_CA": str(files.ca),
           "FEDGATE_CERT": str(files.cert), "FEDGATE_KEY": str(files.key),
           "FEDGATE_LOG_VKEY": str(tmp / "gw" / "log-signing.vkey")}
    return subprocess.run([sys.executable, "-m", "fedgate", *args], capture_output=True, text=True, env=env,
                          timeout=120)


async def _hammer(port: int, certs: Path, acknowledged: list[str], stop: asyncio.Event) -> None:
    async with GatewayClient(f"127.0.0.1:{port}", TlsFiles.in_dir(certs, support.SUPERVISOR), timeout=5) as c:
        i = 0
        while not stop.is_set():
            case = f"CRASH-{i}"
            try:
                await c.count_rows("hrss.subsidies", "crash test", case)
            except FedgateError:
                return  # the gateway is gone
            acknowledged.append(case)
            i += 1


def test_sigkill_loses_no_acknowledged_entry_and_the_log_verifies(deployment) -> None:
    tmp, certs, start_gateway = deployment
    port = json.loads((tmp / "run" / "gateway.ready.json").read_text())["port"]
    pid = json.loads((tmp / "run" / "gateway.ready.json").read_text())["pid"]
    acknowledged: list[str] = []

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(_hammer(port, certs, acknowledged, stop))
        while len(acknowledged) < 15:
            await asyncio.sleep(0.02)
        os.kill(pid, signal.SIGKILL)  # mid-stream: requests are in flight
        await asyncio.wait_for(task, 30)

    asyncio.run(run())
    assert len(acknowledged) >= 15

    gw2 = start_gateway()
    verify = _cli(["audit", "verify", "--json", "--state", str(tmp / "officer")], gw2.port, certs, support.OFFICER, tmp)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["ok"] is True

    async def logged_cases() -> set[str]:
        async with GatewayClient(f"127.0.0.1:{gw2.port}", TlsFiles.in_dir(certs, support.OFFICER)) as c:
            return {e.case_number for _, e in await c.search(action="query.count", limit=10_000)
                    if e.status == "OK"}

    missing = set(acknowledged) - asyncio.run(logged_cases())
    assert not missing, f"acknowledged queries missing from the audit log: {sorted(missing)}"
    # Queries work again after the restart, and the adapter accepts the new gateway's tickets.
    again = _cli(["query", "count", "hrss.subsidies", "--purpose", "after crash", "--case", "AFTER-1", "--json"],
                 gw2.port, certs, support.SUPERVISOR, tmp)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["rows"] == 20


def test_audit_cli_tail_search_proof_and_verify(deployment) -> None:
    tmp, certs, _ = deployment
    port = json.loads((tmp / "run" / "gateway.ready.json").read_text())["port"]
    q = _cli(["query", "count", "hrss.subsidies", "--purpose", "核查", "--case", "CLI-7"], port, certs,
             support.SUPERVISOR, tmp)
    assert q.returncode == 0 and "20 rows" in q.stdout, q.stderr
    denied = _cli(["audit", "tail"], port, certs, support.SUPERVISOR, tmp)
    assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr

    tail = json.loads(_cli(["audit", "tail", "-n", "3", "--json"], port, certs, support.OFFICER, tmp).stdout)
    assert len(tail) == 3 and tail[-1]["index"] > tail[0]["index"]
    found = json.loads(_cli(["audit", "search", "--case", "CLI-7", "--json"], port, certs, support.OFFICER, tmp).stdout)
    assert {e["status"] for e in found} == {"STARTED", "OK"}
    deny = json.loads(_cli(["audit", "search", "--decision", "deny", "--json"], port, certs, support.OFFICER, tmp).stdout)
    assert deny[0]["subject"] == support.SUPERVISOR.spiffe_id and deny[0]["action"] == "audit.search"

    proof = _cli(["audit", "proof", "1", "--json"], port, certs, support.OFFICER, tmp)
    assert proof.returncode == 0, proof.stderr
    assert json.loads(proof.stdout)["verified"] is True

    state = ["--state", str(tmp / "officer")]
    ok = _cli(["audit", "verify", *state], port, certs, support.OFFICER, tmp)
    assert ok.returncode == 0 and "OK:" in ok.stdout, ok.stderr

    db = sqlite3.connect(tmp / "gw" / "audit.db", isolation_level=None)
    bad, body = next((i, b) for i, b in db.execute("SELECT idx, body FROM fedgate_audit_entries ORDER BY idx")
                     if b"CLI-7" in b)
    db.execute("UPDATE fedgate_audit_entries SET body = ? WHERE idx = ?",
               (body.replace("核查".encode(), "其他".encode()), bad))
    db.close()
    fail = _cli(["audit", "verify", "--json", *state], port, certs, support.OFFICER, tmp)
    assert fail.returncode == 1
    assert json.loads(fail.stdout)["bad_index"] == bad
    offline = _cli(["audit", "verify", "--db", str(tmp / "gw" / "audit.db"), "--no-state"], port, certs,
                   support.OFFICER, tmp)
    assert offline.returncode == 1 and f"index {bad}" in offline.stderr
