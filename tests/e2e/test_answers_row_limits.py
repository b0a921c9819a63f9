"""Issue 12, point 5: an answer a limit or a safeguard cut short says so, in the table and in --json."""

from __future__ import annotations

import json
from pathlib import Path

import support
from deployment import deployed

QUOTA = "min_set_size = 10\n[quotas.supervisor]\nqueries_per_day = 100\ndisclosed_rows_per_day = 40\n"
WHY = ("--purpose", "核查", "--case", "ROWS-1")


def test_shortened_answers_say_how_and_by_what(tmp_path: Path) -> None:
    with deployed(tmp_path, QUOTA) as d:
        def run_json(*args: str) -> dict[str, object]:
            out = d.fedgate("query", *args, *WHY, "--json")
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)  # type: ignore[no-any-return]

        # The caller's own limit: 3 of 20 matching rows.
        got = run_json("disclose", "hrss.subsidies", "--field", "company_name", "--limit", "3")
        assert (got["rows_returned"], got["rows_available"], got["limited_by"]) == (3, 20, "limit")
        assert len(got["rows"]) == 3  # type: ignore[arg-type]
        # Nothing cut: every matching row, and no cause.
        got = run_json("disclose", "hrss.subsidies", "--field", "company_name", "--limit", "100")
        assert (got["rows_returned"], got["rows_available"], got["limited_by"]) == (20, 20, None)
        # A match: 2 of its 14 matched left rows.
        got = run_json("match", "hrss.subsidies.uscc", "samr.companies.uscc", "--disclose", "company_name",
                       "--limit", "2")
        assert (got["rows_returned"], got["rows_available"], got["limited_by"]) == (2, 14, "limit")
        # A comparison: every pair flagged (2·x > x), 5 of the 20 flagged left rows shown.
        got = run_json("compare", "hrss.subsidies.uscc", "hrss.subsidies.uscc", "--left-value", "amount_fen",
                       "--right-value", "amount_fen", "--weights", "2:1", "--disclose", "company_name",
                       "--limit", "5")
        assert (got["rows_returned"], got["rows_available"], got["limited_by"]) == (5, 20, "limit")
        assert len(got["flagged_pairs"]) == 20  # type: ignore[arg-type]
        # 30 of the day's 40 rows are used: a limit of 20 is cut to 10 by the quota, and the answer says so.
        table = d.fedgate("query", "disclose", "hrss.subsidies", "--field", "company_name", "--limit", "20", *WHY)
        assert table.returncode == 0, table.stderr
        assert "10 of 20 matching rows" in table.stdout
        assert "daily disclosed-row quota (safeguard quotas.supervisor.disclosed_rows_per_day)" in table.stdout
        assert "20 asked for, 10 left today" in table.stdout
        # The table of a limited match says of how many.
        table = d.fedgate("query", "match", "hrss.subsidies.uscc", "samr.companies.uscc", "--disclose",
                          "company_name", "--limit", "20", *WHY)
        assert table.returncode != 0 and "quotas.supervisor.disclosed_rows_per_day" in table.stderr


def test_quota_cut_in_json_and_table_of_a_match(tmp_path: Path) -> None:
    quota = QUOTA.replace("disclosed_rows_per_day = 40", "disclosed_rows_per_day = 6")
    with deployed(tmp_path, quota) as d:
        out = d.fedgate("query", "match", "hrss.subsidies.uscc", "samr.companies.uscc", "--disclose",
                        "company_name", "--limit", "4", *WHY)
        assert out.returncode == 0, out.stderr
        assert "4 of 14 matched rows" in out.stdout and "cut by the limit (--limit 4)" in out.stdout
        got = d.fedgate("query", "match", "hrss.subsidies.uscc", "samr.companies.uscc", "--disclose",
                        "company_name", "--limit", "10", *WHY, "--json")
        assert got.returncode == 0, got.stderr
        result = json.loads(got.stdout)
        assert len(result["rows"]) == 2
        assert result["rows_returned"] == 2 and result["rows_available"] == 14
        assert result["limit_requested"] == 10 and result["limit_applied"] == 2
        assert result["limited_by"] == "quotas.supervisor.disclosed_rows_per_day"
        # The audit entry keeps what was asked for next to the limit applied.
        log = d.fedgate("audit", "search", "--action", "query.match", "--limit", "1", "--json",
                        who=support.OFFICER)
        assert log.returncode == 0, log.stderr
        params = dict(json.loads(log.stdout)[0]["params"])
        assert (params["limit"], params["limit_requested"]) == ("2", "10")
