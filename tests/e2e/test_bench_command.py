"""`python -m bench` end to end on small sets: the command users run to compare fedgate with its peers."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_runs_every_mode_and_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--sizes", "2000", "--modes", "keyed,ecdh,sum,compare", "--queries", "50",
         "--workdir", str(tmp_path / "work"), "--out", str(out), "--openmined-path", str(tmp_path / "none")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    rows = {r["mode"]: r for r in doc["rows"]}
    assert set(rows) == {"keyed", "ecdh", "sum", "compare"}
    for row in rows.values():
        assert row["ok"] and row["wall_s"] > 0 and row["floor_s"] > 0 and row["wire_bytes_per_row"] > 0
        assert set(row["peak_mib"]) == {"gateway", "hrss", "civil"}
    assert "phe encrypt (scaled)" in rows["sum"]["peers"]
    assert doc["machine"]["cores"] >= 1 and doc["decide_and_append"]["decide_and_append"]["median_ms"] > 0
    markdown = (out / "results.md").read_text()
    assert "| keyed | 2,000 |" in markdown and "Per-query overhead" in markdown
    assert "not importable" in doc["openmined"]
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert (out / "time_vs_rows.png").exists() == has_matplotlib
