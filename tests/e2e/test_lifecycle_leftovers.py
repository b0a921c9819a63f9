"""The suite's own check for processes left behind, and the worker pools it caught."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import shutil

import support
from fedgate import pki
from fedgate.classification import policies_dir
from fedgate.client import GatewayClient
from fedgate.tls import TlsFiles
from fedgate.demo import processes
from fedgate.identity import Identity

TESTS = Path(__file__).resolve().parents[1]


def _inner_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "leftovers", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_the_session_check_fails_a_run_that_leaves_a_process_behind(tmp_path: Path) -> None:
    run = _inner_pytest(tmp_path, """
        import subprocess, sys
        def test_leaks():
            # Its own session, never waited for: what a server started and not stopped looks like.
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)  # leaked-by-test"],
                             start_new_session=True)
    """)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "1 passed" in out and "left 1 process(es) running" in out and "leaked-by-test" in out


def test_the_session_check_gives_exiting_processes_a_grace_period(tmp_path: Path) -> None:
    run = _inner_pytest(tmp_path, """
        import subprocess, sys
        def test_slow_to_exit():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"], start_new_session=True)
    """)
    assert run.returncode == 0, run.stdout + run.stderr


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


async def test_an_adapter_killed_with_sigkill_leaves_no_worker_or_resource_tracker(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    pki.init_dir(certs, [Identity.department("hrss"), Identity.department("samr"), support.SUPERVISOR])
    pol = tmp_path / "policies"
    shutil.copytree(policies_dir(), pol, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (pol / "safeguards.toml").write_text("min_set_size = 10\n")  # the sets here are small
    (tmp_path / "gateway.toml").write_text(support.gateway_toml(tmp_path / "gw", certs).replace(
        "[tls]", f'policy_dir = "{pol}"\n\n[tls]'))
    started: list[processes.ServerProcess] = []
    try:
        gw = processes.start("gateway", ["gateway", "serve", "--config", str(tmp_path / "gateway.toml")], tmp_path)
        started.append(gw)
        processes.wait_ready(gw)
        csv = tmp_path / "s.csv"
        csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
        db = tmp_path / "samr.db"
        support.write_companies(f"sqlite:///{db}", n=15)
        for dept, decl in (("hrss", support.SUBSIDIES_DECL.format(path=csv)),
                           ("samr", support.COMPANIES_DECL.format(kind="sqlite", where=f'path = "{db}"'))):
            cfg = tmp_path / f"{dept}.toml"
            cfg.write_text(support.adapter_toml(dept, f"127.0.0.1:{gw.port}", certs, decl,
                                                vkey=tmp_path / "gw" / "log-signing.vkey")
                           .replace("workers = 0", "workers = 1")
                           .replace("[tls]", f'data_dir = "{tmp_path / dept}"\n\n[tls]'))
            started.append(processes.start(f"adapter-{dept}", ["adapter", "serve", "--config", str(cfg)], tmp_path))
        for proc in started[1:]:
            processes.wait_ready(proc)
        # A match blinds on the adapters' worker pools, which starts their workers.
        async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(certs, support.SUPERVISOR)) as client:
            got = await client.match(("hrss.subsidies", "uscc", ""), ("samr.companies", "uscc", ""), "核查",
                                     "LEFT-1", "ecdh")
        assert got.cardinality == 14
        adapter = started[1]
        pid = json.loads(adapter.ready_file.read_text())["pid"]
        helpers = _children(pid)
        commands = {p: (Path("/proc") / str(p) / "cmdline").read_bytes() for p in helpers}
        assert any(b"resource_tracker" in c for c in commands.values()), commands
        assert any(b"spawn_main" in c for c in commands.values()), commands
        os.kill(pid, signal.SIGKILL)
        adapter.proc.wait(10)
        deadline = time.monotonic() + 30
        while [p for p in helpers if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {p: commands[p] for p in helpers if _alive(p)}
        for p in left:
            os.kill(p, signal.SIGKILL)
        assert not left, f"the killed adapter's worker or resource tracker is still running: {left}"
    finally:
        for proc in reversed(started):
            processes.stop(proc)
