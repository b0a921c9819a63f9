"""Stopping an adapter mid-session: the session is recorded as stopped and nothing crashes.

The scenario runs in a child pytest so that a crash (the disclosure log used to
segfault when closed under a writer) fails this test instead of the suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCENARIO = Path(__file__).with_name("stores_shutdown_scenario.py")


def test_an_adapter_stopped_mid_match_records_the_session_as_stopped_and_does_not_crash(
        tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "run"),
         str(SCENARIO)],
        cwd=SCENARIO.parents[2], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"the scenario failed (status {proc.returncode}; -11 or 'Fatal Python "
                                  f"error' is a crash):\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
