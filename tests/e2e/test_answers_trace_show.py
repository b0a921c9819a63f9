"""Issue 12, point 5: `fedgate trace show ID` finds the local span stores without --store, or says what to pass."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import support
from deployment import deployed


def test_trace_show_finds_the_stores_of_the_configurations_here(tmp_path: Path) -> None:
    with deployed(tmp_path) as d:
        out = d.fedgate("query", "count", "hrss.subsidies", "--purpose", "核查", "--case", "TR-1")
        assert out.returncode == 0, out.stderr
        found = d.fedgate("audit", "search", "--case", "TR-1", "--limit", "1", "--json", who=support.OFFICER)
        trace_id = json.loads(found.stdout)[0]["trace_id"]
        assert len(trace_id) == 32
        # An operator's layout: the configurations in one directory, the data directories elsewhere.
        etc = tmp_path / "etc"
        etc.mkdir()
        for name in ("gateway.toml", "adapter-hrss.toml", "adapter-samr.toml"):
            shutil.copy(tmp_path / name, etc / name)
        deadline = time.monotonic() + 60  # spans are exported in batches
        while True:
            shown = d.fedgate("trace", "show", trace_id, cwd=etc)
            if (shown.returncode == 0 and "fedgate-adapter-hrss" in shown.stdout) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert shown.returncode == 0, shown.stderr
        assert "fedgate-gateway" in shown.stdout and "fedgate-adapter-hrss" in shown.stdout
        # Named explicitly, from anywhere.
        empty = tmp_path / "empty"
        empty.mkdir()
        named = d.fedgate("trace", "show", trace_id, "--config", str(etc / "gateway.toml"), cwd=empty)
        assert named.returncode == 0 and "fedgate-gateway" in named.stdout, named.stderr
        # Nothing here: the message says what was searched and what to pass.
        lost = d.fedgate("trace", "show", trace_id, cwd=empty)
        assert lost.returncode == 1
        assert "no span store found" in lost.stderr and str(empty) in lost.stderr
        for hint in ("--store", "--config", "FEDGATE_TRACE_STORES", "data_dir"):
            assert hint in lost.stderr, lost.stderr
        missing = d.fedgate("trace", "show", "0" * 32, cwd=etc)
        assert missing.returncode == 1 and "no spans of trace" in missing.stderr
        assert str(tmp_path / "gw" / "spans.db") in missing.stderr
        for bad in (("trace", "show", "xyz"), ("trace", "show", trace_id, "--store", str(empty / "nope.db"))):
            out = d.fedgate(*bad, cwd=etc)
            assert out.returncode == 1 and "Traceback" not in out.stderr and out.stderr.strip(), out.stderr
