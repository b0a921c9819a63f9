"""`fedgate demo --keep-running` stopped the way systemd, `docker stop` and CI runners stop it: SIGTERM."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROWS = "300"


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _descendants(roots: set[int]) -> set[int]:
    parents = {int(e.name): s[1] for e in Path("/proc").iterdir() if e.name.isdigit()
               if (s := _stat(int(e.name))) is not None}
    found = set(roots)
    while True:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        if not more:
            return found
        found |= more


def test_sigterm_stops_every_server_of_a_kept_running_demo(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "fedgate", "demo", "--workdir", str(tmp_path), "--rows", ROWS,
                             "--keep-running"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout
    assert out is not None
    # Read in a thread: a demo that hangs without a word must fail the test at the deadline, not block it.
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in iter(out.readline, ""):
            lines.put(line)
        lines.put(None)  # end of output: the demo exited

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        seen = ""
        while "press Ctrl-C" not in seen:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                line = None
            assert line is not None, f"demo never came up:\n{seen}"
            seen += line
        servers = {json.loads(p.read_text())["pid"] for p in (tmp_path / "run").glob("*.ready.json")}
        assert len(servers) == 6 and all(_alive(p) for p in servers)  # gateway + five departments
        everything = _descendants(servers)  # and their worker pools and resource trackers
        assert len(everything) > len(servers)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        reader.join(30)
        rest = "".join(iter(lines.get_nowait, None))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, seen + rest
    assert "all servers stopped cleanly" in rest
    deadline = time.monotonic() + 30
    while [p for p in everything if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in everything if _alive(p)], "processes of the demo still running after SIGTERM"
    # Stopped in order, as Ctrl-C does: each server logged its own orderly shutdown.
    for log in (tmp_path / "logs").glob("*.log"):
        assert "shutting down" in log.read_text(errors="replace"), log.name
