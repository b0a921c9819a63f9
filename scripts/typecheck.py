"""Run mypy --strict on fedgate.crypto (and what it imports from the root package).

mypy does not follow the editable install's import hook that maps the card's
top-level folders onto fedgate.*, so this builds a throwaway tree of symlinks
laid out as the installed package and checks that.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fedgate"
        root.mkdir()
        for name in ("__init__.py", "errors.py", "py.typed"):
            (root / name).symlink_to(REPO / "fedgate" / name)
        (root / "crypto").symlink_to(REPO / "crypto")
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--warn-unreachable",
             "--cache-dir", str(REPO / ".mypy_cache"), "-p", "fedgate.crypto"],
            cwd=tmp, env={"MYPYPATH": tmp, "PATH": "/usr/bin:/bin"},
        ).returncode


if __name__ == "__main__":
    sys.exit(main())
