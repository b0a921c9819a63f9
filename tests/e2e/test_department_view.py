"""Issue 15, part 3: a department reads the gateway's entries about its own datasets (and no others), and
`fedgate department requests` reconciles them with its own disclosure log, flagging what one record lacks."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import support
from deployment import Deployment, deployed
from fedgate.cli.department_view import MISSING_AT_DEPARTMENT, MISSING_AT_GATEWAY
from fedgate.client.gateway import GatewayClient
from fedgate.core.errors import RemoteCallFailed
from fedgate.core.identity import Identity
from fedgate.server.tls import TlsFiles

HRSS, SAMR = Identity.department("hrss"), Identity.department("samr")


def _search(d: Deployment, who: Identity, *args: str) -> list[dict[str, Any]]:
    out = d.fedgate("audit", "search", "--limit", "10000", "--json", *args, who=who)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def _read_whole_log(d: Deployment) -> None:
    async with GatewayClient(f"127.0.0.1:{d.gateway.port}", TlsFiles.in_dir(d.certs, HRSS)) as client:
        [e async for e in client.entries()]


def _names(entry: dict[str, Any], department: str) -> bool:
    return any(ds.partition(".")[0] == department for ds in entry["datasets"])


def _requests(d: Deployment, *args: str) -> tuple[int, dict[str, Any]]:
    out = d.fedgate("department", "requests", "--json", *args, who=HRSS)
    assert out.returncode in (0, 2), out.stderr
    return out.returncode, json.loads(out.stdout)


def test_a_department_reads_its_own_requests_and_the_records_are_reconciled(tmp_path: Path) -> None:
    with deployed(tmp_path) as d:
        def ask(*args: str, ok: bool = True) -> None:
            out = d.fedgate("query", *args)
            assert (out.returncode == 0) == ok, out.stdout + out.stderr

        ask("count", "hrss.subsidies", "--purpose", "稳岗核查", "--case", "C-1")
        ask("disclose", "hrss.subsidies", "--field", "company_name", "--field", "uscc", "--limit", "5",
            "--purpose", "名单抽查", "--case", "C-2")
        # Refused by the department: the filtered set is under the minimum set size (10).
        ask("disclose", "hrss.subsidies", "--field", "company_name", "--filter", "amount_fen >= 15000",
            "--purpose", "小集合", "--case", "C-3", ok=False)
        # Refused at the gateway before any ticket: no such dataset. Never reached the department.
        ask("count", "hrss.pensions", "--purpose", "不存在", "--case", "C-4", ok=False)
        ask("count", "samr.companies", "--purpose", "企业核查", "--case", "S-1")
        ask("match", "hrss.subsidies.uscc", "samr.companies.uscc", "--purpose", "交叉比对", "--case", "C-5")

        # The officer sees everything; each department exactly the entries naming one of its datasets.
        everything = _search(d, support.OFFICER)
        for dept, code in ((HRSS, "hrss"), (SAMR, "samr")):
            mine = _search(d, dept)
            assert {e["index"] for e in mine} == {e["index"] for e in everything if _names(e, code)}
            assert mine and all(_names(e, code) for e in mine)
        samr_only = {e["index"] for e in everything if _names(e, "samr") and not _names(e, "hrss")}
        assert samr_only and not samr_only & {e["index"] for e in _search(d, HRSS)}
        # Asking for another department's dataset is refused on its name alone, as is the rest of the log.
        other = d.fedgate("audit", "search", "--dataset", "samr.companies", who=HRSS)
        assert other.returncode != 0 and "own datasets only" in other.stderr, other.stderr
        with pytest.raises(RemoteCallFailed) as refused:
            asyncio.run(_read_whole_log(d))
        assert refused.value.code == "PERMISSION_DENIED"
        # Each of those reads is itself in the log, under the department's name.
        reads = _search(d, support.OFFICER, "--subject", "dept/hrss", "--action", "audit.search")
        assert len(reads) >= 3 and {e["decision"] for e in reads} == {"allow", "deny"}

        code, view = _requests(d, "--config", str(tmp_path / "adapter-hrss.toml"))
        assert code == 0 and view["department"] == "hrss", view
        by_case = {r["case_number"]: r for r in view["requests"]}
        assert set(by_case) == {"C-1", "C-2", "C-3", "C-4", "C-5"}  # nothing of samr's alone (S-1)
        for case, kind in (("C-1", "count"), ("C-2", "disclose"), ("C-3", "disclose"), ("C-4", "count"),
                           ("C-5", "match")):
            r = by_case[case]
            assert (r["kind"], r["agency"], r["supervisor"]) == (kind, "dcb", "supervisor/dcb/alice"), r
            assert r["flags"] == [], r
        assert (by_case["C-1"]["gateway"], by_case["C-1"]["department"], by_case["C-1"]["rows"]) == \
            ("served", "served", 20)
        assert by_case["C-1"]["purpose"] == "稳岗核查"
        disclosed = by_case["C-2"]
        assert disclosed["rows"] == 5 and disclosed["department"] == "served"
        assert sorted(disclosed["fields"]) == ["hrss.subsidies.company_name:plaintext", "hrss.subsidies.uscc:masked"]
        assert (by_case["C-3"]["gateway"], by_case["C-3"]["department"]) == ("refused", "refused")
        assert (by_case["C-4"]["gateway"], by_case["C-4"]["department"], by_case["C-4"]["query_id"]) == \
            ("refused", "-", "")
        assert by_case["C-5"]["department"] == "served"
        # The department's own log now names who asked, why and under which case.
        log = tmp_path / "hrss" / "disclosures.db"
        with sqlite3.connect(log) as conn:
            asked = set(conn.execute("SELECT subject, case_number FROM disclosures WHERE decision = 'served'"))
        assert asked == {(support.SUPERVISOR.spiffe_id, c) for c in ("C-1", "C-2", "C-5")}

        # Remove the department's record of C-1, and add one for a query the gateway never logged.
        gone = by_case["C-1"]["query_id"]
        with sqlite3.connect(log) as conn:
            conn.execute("DELETE FROM disclosures WHERE query_id = ?", (gone,))
            conn.execute("INSERT INTO disclosures (time, query_id, action, dataset, decision, reason, result_rows,"
                         " subject, purpose, case_number) VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?,"
                         " 'query.disclose', 'hrss.subsidies', 'served', '', 7, ?, '伪造', 'X-9')",
                         ("f" * 32, support.SUPERVISOR.spiffe_id))
        code, view = _requests(d, "--log", str(log), "--flagged")
        assert code == 2
        flagged = {r["query_id"]: r["flags"] for r in view["requests"]}
        assert flagged == {gone: [MISSING_AT_DEPARTMENT], "f" * 32: [MISSING_AT_GATEWAY]}
        table = d.fedgate("department", "requests", "--log", str(log), who=HRSS)
        assert table.returncode == 2 and "X-9" in table.stdout, table.stdout + table.stderr

        # Another department's certificate is not the one this log's reader runs with.
        assert d.fedgate("department", "requests", "--log", str(log)).returncode == 1
