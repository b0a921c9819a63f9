"""The test session's own check that it leaves no process behind.

Every process the suite starts, directly or not (servers, their multiprocessing
workers and resource trackers, CLI runs), inherits a marker in its environment.
At the end of the session the check gives them a short grace period to exit,
then fails the run, naming each one still running (and kills it, so a failed
run leaves no debris either). Reading /proc needs no dependency; on a system
without it the check is skipped.

Also loadable on its own (`pytest -p leftovers`), which is how its test runs it.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

MARKER = "FEDGATE_TEST_SESSION"
GRACE_S = 15.0
_PROC = Path("/proc")


def pytest_configure(config: pytest.Config) -> None:
    # Always a fresh value: a pytest run by a test must not adopt its parent session's processes.
    os.environ[MARKER] = f"{os.getpid()}-{uuid.uuid4().hex}"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None once it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _reap_zombie_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def leftovers(marker: str) -> dict[int, str]:
    """Live processes, other than this one, that are its children or carry `marker` in their environment."""
    me, needle = os.getpid(), f"{MARKER}={marker}\0".encode()
    found: dict[int, str] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        try:
            ours = stat[1] == me or needle in (entry / "environ").read_bytes()
            if ours:
                found[pid] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or another user's
            continue
    return found


def wait_for_leftovers(marker: str, grace: float = GRACE_S) -> dict[int, str]:
    """`leftovers(marker)` once it is empty or `grace` seconds have passed."""
    deadline = time.monotonic() + grace
    while True:
        _reap_zombie_children()
        found = leftovers(marker)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    marker = os.environ.get(MARKER)
    if not marker or not _PROC.is_dir():
        return
    found = wait_for_leftovers(marker)
    if not found:
        return
    lines = "\n".join(f"  pid {pid}: {cmd[:300]}" for pid, cmd in sorted(found.items()))
    message = (f"\nthe test session left {len(found)} process(es) running {GRACE_S:.0f} s after its last test "
               f"(now killed):\n{lines}\n")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(message, red=True, bold=True)
    else:
        print(message)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    _reap_zombie_children()
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
