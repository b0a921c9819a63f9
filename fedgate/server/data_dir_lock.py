"""One server per data directory: an exclusive lock held for the server's lifetime.

Two gateways on one data_dir would both append to one SQLite audit log, each
believing its in-memory tree is the log's; two adapters would interleave one
disclosure log. `flock` is released by the kernel when the process dies, so a
killed server never leaves a stale lock behind; the file only names the
holder's pid for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from fedgate.core.errors import ConfigError

LOCK_NAME = "fedgate.lock"


class DataDirLock:
    """An exclusive `flock` on `<data_dir>/fedgate.lock`; `release()` (idempotent) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, data_dir: Path, server: str) -> DataDirLock:
        """Lock `data_dir` for `server` (e.g. "gateway"); ConfigError names the lock file and its holder."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: someone holds it
            holder = _holder(fd)
            os.close(fd)
            raise ConfigError(str(path), f"the data directory is in use by another {server} ({holder}); "
                              "stop it, or give this one its own data_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        # Closing the last descriptor drops the flock; the file stays, naming no one once truncated.
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    if not pid.isdigit():
        return "pid unknown"
    return f"pid {pid}, this process" if int(pid) == os.getpid() else f"pid {pid}"
