"""`fedgate query match` as a supervisor runs it, against real server processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import support
from fedgate import pki
from fedgate.classification import policies_dir
from fedgate.demo import processes
from fedgate.identity import Identity
from fedgate.tls import TlsFiles


def test_query_match_cli(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    pki.init_dir(certs, [Identity.department("hrss"), Identity.department("samr"), support.SUPERVISOR])
    pol = tmp_path / "policies"
    shutil.copytree(policies_dir(), pol, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (pol / "safeguards.toml").write_text("min_set_size = 10\n")  # the sets here are small
    (tmp_path / "gateway.toml").write_text(support.gateway_toml(tmp_path / "gw", certs).replace(
        "[tls]", f'policy_dir = "{pol}"\n\n[tls]'))
    started: list[processes.ServerProcess] = []
    try:
        gw = processes.start("gateway", ["gateway", "serve", "--config", str(tmp_path / "gateway.toml")], tmp_path)
        started.append(gw)
        processes.wait_ready(gw)
        csv = tmp_path / "s.csv"
        csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
        db = tmp_path / "samr.db"
        support.write_companies(f"sqlite:///{db}", n=15)
        for dept, decl in (("hrss", support.SUBSIDIES_DECL.format(path=csv)),
                           ("samr", support.COMPANIES_DECL.format(kind="sqlite", where=f'path = "{db}"'))):
            cfg = tmp_path / f"{dept}.toml"
            cfg.write_text(support.adapter_toml(dept, f"127.0.0.1:{gw.port}", certs, decl,
                                                vkey=tmp_path / "gw" / "log-signing.vkey")
                           .replace("workers = 0", "workers = 1")
                           .replace("[tls]", f'data_dir = "{tmp_path / dept}"\n\n[tls]'))
            started.append(processes.start(dept, ["adapter", "serve", "--config", str(cfg)], tmp_path))
        for proc in started[1:]:
            processes.wait_ready(proc)
        files = TlsFiles.in_dir(certs, support.SUPERVISOR)
        env = {**os.environ, "FEDGATE_GATEWAY": f"127.0.0.1:{gw.port}", "FEDGATE_CA": str(files.ca),
               "FEDGATE_CERT": str(files.cert), "FEDGATE_KEY": str(files.key)}
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
    finally:
        for proc in reversed(started):
            processes.stop(proc)
