"""Issue 15, part 4: a subject report lists exactly the cases whose answers covered or disclosed one record, holds
covert cases back until their delay passes, records itself, and leaves no identifier in any store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import support
from deployment import Deployment, deployed
from fedgate.adapters.config import AdapterConfig
from fedgate.adapters.subject_rules import DAY_S
from fedgate.adapters.subject_uses import SubjectUses
from fedgate.adapters.subject_report import make_report

# hrss.subsidies holds uscc(1..20) with amount_fen 1000 * i; samr.companies uscc(0..14).
COVERT = """
[subject_reports]
[[subject_reports.rules]]
name = "covert"
case = "^JC-"
delay_days = 30
"""


def _report(d: Deployment, config: Path, identifier: str, *args: str) -> list[dict[str, Any]]:
    # The identifier on stdin: it never appears in the process list.
    out = subprocess.run([sys.executable, "-m", "fedgate", "department", "subject-report", "-", "--config",
                          str(config), "--json", *args], input=identifier + "\n", capture_output=True, text=True,
                         env=d.env(), timeout=120, cwd=d.tmp)
    assert out.returncode == 0, out.stderr
    entries: list[dict[str, Any]] = json.loads(out.stdout)["entries"]
    return entries


def test_a_subject_report_lists_exactly_the_cases_that_used_a_record(tmp_path: Path) -> None:
    with deployed(tmp_path) as d:
        def ask(*args: str) -> None:
            out = d.fedgate("query", *args, "--purpose", "核查")
            assert out.returncode == 0, out.stdout + out.stderr

        ask("count", "hrss.subsidies", "--filter", "amount_fen >= 11000", "--case", "C-1")  # 11..20
        ask("count", "hrss.subsidies", "--filter", "amount_fen <= 10000", "--case", "C-2")  # 1..10
        ask("count", "hrss.subsidies", "--case", "C-3")                                       # all
        ask("disclose", "hrss.subsidies", "--field", "company_name", "--field", "uscc", "--limit", "5",
            "--case", "C-4")                                                                  # 1..5 leave
        ask("disclose", "hrss.subsidies", "--field", "company_name", "--field", "uscc", "--limit", "5",
            "--filter", "amount_fen >= 11000", "--case", "C-5")                               # 11..15 leave
        ask("match", "hrss.subsidies.uscc", "samr.companies.uscc", "--disclose", "company_name",
            "--case", "C-6")                                                                  # 1..14 leave
        ask("sum", "hrss.subsidies.uscc", "samr.companies.uscc", "--field", "amount_fen",
            "--values-filter", "amount_fen <= 10000", "--case", "C-7")                        # 1..10
        ask("count", "samr.companies", "--case", "S-1")                                       # not hrss's
        ask("count", "hrss.subsidies", "--case", "JC-1")                                      # covert, all

        config = tmp_path / "adapter-hrss.toml"
        with sqlite3.connect(tmp_path / "hrss" / "disclosures.db") as conn:
            served = dict(conn.execute("SELECT case_number, query_id FROM disclosures WHERE decision = 'served'"))
        assert set(served) == {"C-1", "C-2", "C-3", "C-4", "C-5", "C-6", "C-7", "JC-1"}

        def cases(entries: list[dict[str, Any]]) -> dict[str, tuple[str, bool]]:
            assert all(e["query_id"] == served[e["case_number"]] for e in entries), entries
            assert all((e["agency"], e["supervisor"]) == ("dcb", "supervisor/dcb/alice") for e in entries)
            return {e["case_number"]: (e["kind"], e["disclosed"]) for e in entries}

        # Before the rules exist, every use is listed: uscc(15) was counted, disclosed by C-5, a match input.
        fifteen = support.uscc(15)
        assert cases(_report(d, config, fifteen)) == {
            "C-1": ("count", False), "C-3": ("count", False), "C-4": ("disclose", False),
            "C-5": ("disclose", True), "C-6": ("match", False), "JC-1": ("count", False)}
        # uscc(3), written as a clerk might: left in C-4's rows and C-6's matched rows, a sum input in C-7.
        three = support.uscc(3)
        entries = _report(d, config, f"{three[:9].lower()} {three[9:]}")
        assert cases(entries) == {
            "C-2": ("count", False), "C-3": ("count", False), "C-4": ("disclose", True),
            "C-6": ("match", True), "C-7": ("sum", False), "JC-1": ("count", False)}
        forms = {e["case_number"]: e["form"] for e in entries}
        assert forms["C-4"] == "company_name:plaintext, uscc:masked"
        assert forms["C-7"] == "sum input (encrypted)" and forms["C-2"] == "counted (aggregate)"
        assert {e["side"] for e in entries if e["kind"] in ("match", "sum")} == {"left"}
        # One dataset only; a record no answer used has no entry.
        assert {e["dataset"] for e in _report(d, config, three, "--dataset", "subsidies")} == {"hrss.subsidies"}
        assert _report(d, config, support.uscc(99)) == []

        # A covert-case rule holds JC-1 back, unannounced, until 30 days after the use.
        config.write_text(config.read_text() + COVERT)
        assert "JC-1" not in cases(_report(d, config, fifteen))
        table = d.fedgate("department", "subject-report", fifteen, "--config", str(config))
        assert table.returncode == 0 and "C-5" in table.stdout and "JC-1" not in table.stdout, table.stdout
        assert "held back" not in table.stdout
        later = make_report(AdapterConfig.load(config), fifteen, now=time.time() + 31 * DAY_S)
        assert "JC-1" in {e.case_number for e in later.entries}
        # An invalid identifier is refused without being repeated.
        bad = d.fedgate("department", "subject-report", fifteen[:-1] + "0", "--config", str(config))
        assert bad.returncode == 1 and fifteen[:-1] not in bad.stderr and "neither" in bad.stderr

        # Each report is recorded, with a keyed hash of its subject and what each rule held back.
        store = SubjectUses.open(tmp_path / "hrss", create_key=False)
        reports = store.reports()
        store.close()
        assert len(reports) == 7  # the invalid identifier made none
        assert [(r[3], r[5]) for r in reports[-3:]] == [(5, "covert:1"), (5, "covert:1"), (6, "")]

    # No identifier of either dataset, in any form, in anything the gateway or the adapters wrote.
    ids = {support.uscc(i) for i in range(0, 100)}
    sources = {tmp_path / "s.csv", tmp_path / "samr.db"}
    scanned = [p for p in tmp_path.rglob("*") if p.is_file() and p not in sources and "certs" not in p.parts]
    assert {"subject_uses.db", "disclosures.db", "audit.db", "row_sets.db"} <= {p.name for p in scanned}
    leaks = support.identifier_leaks(scanned, ids)
    assert not leaks, f"identifiers found in {sorted(set(leaks))}"
