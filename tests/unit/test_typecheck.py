"""The whole fedgate package stays mypy --strict clean (scripts/typecheck.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Every folder installed as part of the fedgate package (pyproject.toml's package-dir).
PACKAGE_FOLDERS = ("fedgate", "gateway", "adapters", "crypto", "protos", "policies")


def _modules() -> set[Path]:
    """Each module of the package once (a generated *_pb2.py and its .pyi stub are one module)."""
    return {p.with_suffix("") for folder in PACKAGE_FOLDERS for pattern in ("*.py", "*.pyi")
            for p in (REPO / folder).rglob(pattern) if "__pycache__" not in p.parts}


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy (dev extra) not installed")
def test_whole_package_is_strictly_typed() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "typecheck.py")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    checked = re.search(r"no issues found in (\d+) source files", result.stdout)
    assert checked, result.stdout
    # Every module, not a subset: a check that skips a folder passes too easily.
    assert int(checked.group(1)) == len(_modules()), result.stdout
