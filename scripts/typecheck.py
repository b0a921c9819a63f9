"""Run mypy --strict over the whole fedgate package.

The card's top-level folders (gateway, adapters, crypto, protos, policies) are
installed as fedgate.* subpackages, and mypy does not follow that folder
mapping (nor the editable install's import hook), so this builds a throwaway
tree of symlinks laid out as the installed package and checks that. The
settings (strict, the generated protobuf modules excluded, untyped
third-party libraries) are in pyproject.toml's [tool.mypy].
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Folders that setuptools maps onto fedgate.<name> (pyproject.toml's package-dir).
SUBPACKAGES = ("gateway", "adapters", "crypto", "protos", "policies")


def build_tree(tmp: Path) -> None:
    """Lay the repository out as the installed package under tmp/fedgate."""
    root = tmp / "fedgate"
    root.mkdir()
    for entry in (REPO / "fedgate").iterdir():
        if entry.name != "__pycache__":
            (root / entry.name).symlink_to(entry)
    for name in SUBPACKAGES:
        (root / name).symlink_to(REPO / name)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        build_tree(Path(tmp))
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
             "--cache-dir", str(REPO / ".mypy_cache"), "-p", "fedgate"],
            cwd=tmp, env={"MYPYPATH": tmp, "PATH": os.defpath},
        ).returncode


if __name__ == "__main__":
    sys.exit(main())
