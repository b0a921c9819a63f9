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

import support
from deployment import deployed
from fedgate.client.gateway import GatewayClient, Side
from fedgate.server.tls import TlsFiles

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
    with deployed(tmp_path, workers=1) as d:
        # A match blinds on the adapters' worker pools, which starts their workers.
        supervisor = TlsFiles.in_dir(d.certs, support.SUPERVISOR)
        async with GatewayClient(f"127.0.0.1:{d.gateway.port}", supervisor) as client:
            got = await client.match(left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc"),
                                     purpose="核查", case_number="LEFT-1", mode="ecdh")
        assert got.cardinality == 14
        adapter = d.adapters["hrss"]
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

