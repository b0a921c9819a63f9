"""Start fedgate servers as separate processes and stop them cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedgate.core.errors import FailedPrecondition


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    ready_file: Path
    info: dict[str, object] = field(default_factory=dict)

    @property
    def port(self) -> int:
        port = self.info["port"]
        if not isinstance(port, int):
            raise FailedPrecondition(f"{self.name} wrote a ready file without a port: {self.ready_file}")
        return port

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(name: str, args: list[str], workdir: Path) -> ServerProcess:
    """Run `python -m fedgate ARGS --ready-file …` in its own session, logging to workdir/logs."""
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ready = workdir / "run" / f"{name}.ready.json"
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.unlink(missing_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        # A session of its own: Ctrl-C reaches only the demo, which then stops
        # the servers in order instead of all of them dying at once.
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedgate", *args, "--ready-file", str(ready)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return ServerProcess(name, proc, log_path, ready)


def wait_ready(server: ServerProcess, timeout: float = 60.0) -> None:
    """Wait for the server's ready file; fail with its log tail if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.ready_file.exists():
            server.info = json.loads(server.ready_file.read_text())
            return
        if server.proc.poll() is not None:
            raise FailedPrecondition(
                f"{server.name} exited with code {server.proc.returncode} before it was ready; "
                f"last lines of {server.log_path}:\n{server.log_tail()}")
        time.sleep(0.05)
    raise FailedPrecondition(f"{server.name} not ready after {timeout:.0f} s; see {server.log_path}")


def stop(server: ServerProcess, timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode
