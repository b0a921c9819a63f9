"""`fedgate demo` as a user runs it: separate processes, real certificates, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROWS = "300"


def _pids(workdir: Path) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in (workdir / "run").glob("*.ready.json")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_demo_runs_and_exits_0(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "fedgate", "demo", "--workdir", str(tmp_path), "--rows", ROWS],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for name in ("subsidies", "pensions", "companies", "insured_employees", "deaths", "allowances", "vehicles"):
        assert name in out
    assert "all servers stopped cleanly" in out
    assert (tmp_path / "ground_truth.json").exists()
    pids = _pids(tmp_path)
    assert len(pids) == 6  # gateway + five departments
    assert not [p for p in pids if _alive(p)]


def test_demo_ctrl_c_stops_every_server(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "fedgate", "demo", "--workdir", str(tmp_path), "--rows", ROWS,
                             "--keep-running"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    seen = ""
    while "press Ctrl-C" not in seen:
        line = proc.stdout.readline()
        assert line and time.monotonic() < deadline, f"demo never came up:\n{seen}"
        seen += line
    pids = _pids(tmp_path)
    assert len(pids) == 6 and all(_alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, seen + rest
    assert "all servers stopped cleanly" in rest
    assert not [p for p in pids if _alive(p)]
