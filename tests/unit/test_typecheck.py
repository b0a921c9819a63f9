"""fedgate.crypto stays mypy --strict clean."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy (dev extra) not installed")
def test_crypto_is_strictly_typed() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "typecheck.py")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
