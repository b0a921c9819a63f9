"""`fedgate query match` as a supervisor runs it, against real server processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from deployment import deployed


def test_query_match_cli(tmp_path: Path) -> None:
    with deployed(tmp_path, workers=1) as d:
        env = d.env()
        for mode in ("keyed", "ecdh"):
            out = subprocess.run(
                [sys.executable, "-m", "fedgate", "query", "match", "hrss.subsidies.uscc", "samr.companies.uscc",
                 "--purpose", "核查", "--case", "CLI-9", "--mode", mode, "--disclose", "company_name",
                 "--limit", "3", "--json"], capture_output=True, text=True, env=env, timeout=120)
            assert out.returncode == 0, out.stderr
            result = json.loads(out.stdout)
            # Subsidies 1..20 against companies 0..14: companies 1..14 match.
            assert result["cardinality"] == 14 and result["left"]["rows"] == 20 and result["right"]["rows"] == 15
            assert len(result["rows"]) == 3 and result["fields"][0]["form"] == "plaintext"
        table = subprocess.run(
            [sys.executable, "-m", "fedgate", "query", "match", "hrss.subsidies.uscc", "samr.companies.uscc",
             "--purpose", "核查", "--case", "CLI-9"], capture_output=True, text=True, env=env, timeout=120)
        assert table.returncode == 0 and "14 matching left rows" in table.stdout, table.stderr
        bad = subprocess.run(
            [sys.executable, "-m", "fedgate", "query", "match", "hrss.subsidies", "samr.companies.uscc",
             "--purpose", "核查", "--case", "CLI-9"], capture_output=True, text=True, env=env, timeout=120)
        assert bad.returncode != 0 and "department.dataset.key_field" in bad.stderr + bad.stdout

        def fedgate(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "fedgate", "query", *args, "--purpose", "核查",
                                   "--case", "CLI-9"], capture_output=True, text=True, env=env, timeout=120)

        summed = fedgate("sum", "hrss.subsidies.uscc", "samr.companies.uscc", "--field", "amount_fen", "--json")
        assert summed.returncode == 0, summed.stderr
        got = json.loads(summed.stdout)
        assert (got["totals"], got["cardinality"]) == ({"amount_fen": sum(1000 * i for i in range(1, 15))}, 14)
        shown = fedgate("sum", "hrss.subsidies.uscc", "samr.companies.uscc", "--field", "amount_fen")
        assert shown.returncode == 0 and "105,000" in shown.stdout, shown.stderr
        # A dataset against itself: 2·x > 1·x for every positive amount, and x > x never.
        for weights, flagged in (("2:1", 20), ("1:1", 0)):
            compared = fedgate("compare", "hrss.subsidies.uscc", "hrss.subsidies.uscc", "--left-value",
                               "amount_fen", "--right-value", "amount_fen", "--weights", weights,
                               "--disclose", "company_name", "--json")
            assert compared.returncode == 0, compared.stderr
            got = json.loads(compared.stdout)
            assert got["pairs"] == 20 and len(got["flagged_pairs"]) == flagged and len(got["rows"]) == flagged
        refused = fedgate("sum", "hrss.subsidies.uscc", "samr.companies.uscc", "--field", "company_name")
        assert refused.returncode != 0 and "only integer fields" in refused.stderr + refused.stdout
