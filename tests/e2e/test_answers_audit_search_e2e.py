"""Issue 12, point 5: `fedgate audit search` accepts the forms fedgate prints and refuses criteria that cannot match."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import support
from deployment import deployed

WHY = ("--purpose", "核查", "--case", "AS-1")


def test_audit_search_criteria_as_people_write_them(tmp_path: Path) -> None:
    with deployed(tmp_path) as d:
        assert d.fedgate("query", "count", "hrss.subsidies", *WHY).returncode == 0
        matched = d.fedgate("query", "match", "hrss.subsidies.uscc", "samr.companies.uscc", *WHY)
        assert matched.returncode == 0, matched.stderr

        def search(*args: str) -> list[dict[str, object]]:
            out = d.fedgate("audit", "search", *args, "--json", who=support.OFFICER)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)  # type: ignore[no-any-return]

        everything = {e["index"] for e in search("--limit", "1000")}
        assert everything
        # Relative and local-offset times find today's entries; a time in the future finds none.
        an_hour_ago = (dt.datetime.now(dt.timezone(dt.timedelta(hours=8))) - dt.timedelta(hours=1)).isoformat()
        for since in ("yesterday", "today", "24h", "7d", "90m", an_hour_ago,
                      dt.datetime.now(dt.UTC).date().isoformat()):
            assert everything <= {e["index"] for e in search("--since", since, "--limit", "1000")}, since
        assert search("--until", "yesterday") == []
        # The subject as the audit table prints it, and in full.
        mine = search("--subject", "supervisor/dcb/alice")
        assert mine and {e["subject"] for e in mine} == {support.SUPERVISOR.spiffe_id}
        assert search("--subject", support.SUPERVISOR.spiffe_id) == mine
        # A bare action name.
        assert {e["action"] for e in search("--action", "match")} == {"query.match"}
        assert {e["action"] for e in search("--action", "count")} == {"query.count"}
        assert search("--dataset", "samr.companies")

        refusals = {
            ("--action", "mtch"): "query.match",
            ("--since", "yesterdy"): "24h",
            ("--until", "2026-13-01"): "ISO date",
            ("--since", "2030-01-02", "--until", "2030-01-01"): "must be later",
            ("--subject", "alice"): "supervisor/dcb/alice",
            ("--decision", "allowed"): "allow, deny, error",
            ("--dataset", "subsidies"): "department.dataset",
            ("--dataset", "hrss.subsidy"): "no dataset 'hrss.subsidy' is registered",
        }
        for args, hint in refusals.items():
            out = d.fedgate("audit", "search", *args, who=support.OFFICER)
            assert out.returncode != 0, (args, out.stdout)
            assert hint in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
