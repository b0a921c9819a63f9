"""Issue 15, part 2, through the command line and real processes: a supervisor's request held by a
department's rule, listed, inspected and approved (or denied) with `fedgate approvals`, collected once with
`fedgate query collect`, and shown pending, then served, in `fedgate department requests`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import support
from deployment import Deployment, deployed
from fedgate.core.identity import Identity
from fedgate.server.signing_key import load_or_create

HRSS = Identity.department("hrss")
TABLES = support.APPROVAL_TABLES
ASK = ("query", "disclose", "hrss.subsidies", "--field", "company_name", "--limit", "5",
       "--purpose", "稳岗补贴抽查", "--case", "DC-2026-120")


def _held_id(d: Deployment) -> str:
    (pending,) = (d.tmp / "state-supervisor-dcb-alice" / "pending").glob("*.json")
    return pending.stem


def _requests(d: Deployment) -> dict[str, Any]:
    out = d.fedgate("department", "requests", "--json", "--config", str(d.tmp / "adapter-hrss.toml"), who=HRSS)
    assert out.returncode == 0, out.stdout + out.stderr  # 2 would mean a flag: the records disagree
    return {r["query_id"]: r for r in json.loads(out.stdout)["requests"]}


def test_a_held_request_is_approved_and_collected_once_from_the_command_line(tmp_path: Path) -> None:
    keys = tmp_path / "approvers"
    load_or_create(keys / "hrss-zhang.key", "hrss-zhang")
    with deployed(tmp_path, tables={"hrss": TABLES.format(dir=keys)}) as d:
        asked = d.fedgate(*ASK)
        assert asked.returncode == 3, asked.stdout + asked.stderr
        assert "names-leave-with-approval" in asked.stderr and "fedgate query collect" in asked.stderr
        assert "公司" not in asked.stdout  # no rows before approval
        qid = _held_id(d)
        assert _requests(d)[qid]["gateway"] == "pending"

        listed = d.fedgate("approvals", "list", "--json", who=HRSS)
        assert listed.returncode == 0, listed.stderr
        (item,) = json.loads(listed.stdout)
        assert (item["query_id"], item["purpose"], item["case_number"], item["kind"]) == (
            qid, "稳岗补贴抽查", "DC-2026-120", "disclose")
        assert item["fields"] == ["hrss.subsidies.company_name:plaintext"] and item["limit"] == 5
        shown = d.fedgate("approvals", "show", qid, "--json", who=HRSS)
        assert shown.returncode == 0 and json.loads(shown.stdout)["rows"] == {"hrss.subsidies": 20}, shown.stderr
        # A supervisor cannot approve, nor list the queue.
        assert d.fedgate("approvals", "list").returncode == 1

        early = d.fedgate("query", "collect", qid)
        assert early.returncode == 3 and "公司" not in early.stdout, early.stdout + early.stderr
        approved = d.fedgate("approvals", "approve", qid, "--approver-key", str(keys / "hrss-zhang.key"),
                             "--reason", "立案审批表 2026-120", who=HRSS)
        assert approved.returncode == 0 and "approved" in approved.stdout, approved.stderr
        collected = d.fedgate("query", "collect", qid, "--wait", "30")
        assert collected.returncode == 0, collected.stdout + collected.stderr
        assert collected.stdout.count("公司") == 5
        again = d.fedgate("query", "collect", qid)
        assert again.returncode == 1  # collected once: the request is no longer kept to send again
        served = _requests(d)[qid]
        assert served["gateway"] == "served" and served["department"] == "served" and served["rows"] == 5
        assert any("approve by hrss-zhang" in n for n in served["notes"])

        # A denial: the supervisor sees the reason, and nothing is served.
        assert d.fedgate(*ASK[:-1], "DC-2026-121").returncode == 3
        second = next(p.stem for p in (d.tmp / "state-supervisor-dcb-alice" / "pending").glob("*.json"))
        denied = d.fedgate("approvals", "deny", second, "--approver-key", str(keys / "hrss-zhang.key"),
                           "--reason", "未见立案文书", who=HRSS)
        assert denied.returncode == 0 and "denied" in denied.stdout, denied.stderr
        refused = d.fedgate("query", "collect", second)
        assert refused.returncode == 1 and "未见立案文书" in refused.stderr and "公司" not in refused.stdout
        assert _requests(d)[second]["department"] == "-"
