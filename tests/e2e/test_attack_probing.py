"""Issue 14, point 6: a supervisor probing with counts is flagged in the audit log; ordinary work is not.

Against real servers (gateway and adapters as processes): alice bisects the largest subsidy with
`amount_fen >= T` counts and then fires a burst of counts that are suppressed; carol, of another agency,
does ordinary varied work at the same time. An officer's `fedgate audit search --alerts` must name alice
and each pattern, point at exactly her entries, and hold none of the thresholds she tried; carol must
appear in no alert. Alerts refuse nothing (the queries' own answers are other safeguards' business).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import support
from deployment import Deployment, deployed
from fedgate.client.gateway import FewerThan, GatewayClient, Side
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import FedgateError
from fedgate.core.identity import Identity, Role
from fedgate.server import pki
from fedgate.server.tls import TlsFiles

PROBER = support.SUPERVISOR  # supervisor/dcb/alice
HONEST = Identity(Role.SUPERVISOR, "nao", "carol")
WHY = ("核查", "PA-1")


def _client(d: Deployment, who: Identity) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{d.gateway.port}", TlsFiles.in_dir(d.certs, who))


async def _count(client: GatewayClient, dataset: str, filt: str = "") -> int | None:
    """The count, or None when it was suppressed or refused."""
    try:
        got = await client.count_rows(dataset, *WHY, filt)
    except FedgateError:
        return None
    return None if isinstance(got.rows, FewerThan) else got.rows


async def _bisect_largest_amount(client: GatewayClient) -> list[int]:
    """The prober's search: 20 counts halving [0, 2^20) on `amount_fen >= T`; returns the thresholds tried."""
    lo, hi, tried = 0, 1 << 20, []
    while hi - lo > 1:
        mid = (lo + hi) // 2
        tried.append(mid)
        if await _count(client, "hrss.subsidies", f"amount_fen >= {mid}") == 0:
            hi = mid
        else:  # some rows, or suppressed: at least one row lies above
            lo = mid
    return tried


async def _honest_work(client: GatewayClient) -> None:
    assert await _count(client, "hrss.subsidies") == 20
    assert await _count(client, "samr.companies") == 15
    # Both ways within the thresholds (issue 14, part 1): 10 rows selected, 10 left out.
    assert await _count(client, "hrss.subsidies", "amount_fen >= 11000") == 10
    assert await _count(client, "hrss.subsidies", "company_name = '公司3'") is None  # suppressed, once
    result = await client.match(left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc"),
                                purpose=WHY[0], case_number=WHY[1])
    assert result.cardinality == 14


async def _attack(d: Deployment) -> list[int]:
    async with _client(d, PROBER) as alice, _client(d, HONEST) as carol:
        await _honest_work(carol)
        tried = await _bisect_largest_amount(alice)
        for i in range(1, 11):  # one company at a time: each count is 1, suppressed
            assert await _count(alice, "hrss.subsidies", f"company_name = '公司{i}'") is None
        await _honest_work(carol)
    return tried


async def _entries(d: Deployment) -> dict[int, AuditEntry]:
    async with _client(d, support.OFFICER) as officer:
        return {e.audit_index: e.entry for e in await officer.search(limit=10_000)}


def test_probing_supervisor_is_flagged_and_honest_one_is_not(tmp_path: Path) -> None:
    with deployed(tmp_path) as d:
        pki.init_dir(d.certs, [HONEST])
        tried = asyncio.run(_attack(d))

        out = d.fedgate("audit", "search", "--alerts", "--limit", "1000", "--json", who=support.OFFICER)
        assert out.returncode == 0, out.stderr
        alerts = json.loads(out.stdout)
        by_detector = {a["params"]["alert.detector"]: a for a in alerts}
        assert set(by_detector) == {"bisection", "same_filter", "refusals"}, alerts
        entries = asyncio.run(_entries(d))

        for alert in alerts:
            params = alert["params"]
            assert alert["action"] == "audit.alert" and alert["subject"] == PROBER.spiffe_id
            assert params["alert.agency"] == "dcb" and params["alert.subjects"] == PROBER.spiffe_id
            counted = [entries[int(i)] for i in params["alert.entries"].split(",")]
            assert len(counted) == alert["result_sizes"]["count"] >= alert["result_sizes"]["threshold"]
            assert all(e.subject == PROBER.spiffe_id and e.action == "query.count" for e in counted)
            assert all(alert["index"] > int(i) for i in params["alert.entries"].split(","))
            # The log keeps no literal: none of the thresholds tried is in what the alert says.
            said = alert["reason"] + json.dumps(params, ensure_ascii=False)
            assert not [t for t in tried if str(t) in said], said

        bisection = by_detector["bisection"]
        assert bisection["params"]["alert.shape"] == "amount_fen >= ?"
        assert bisection["datasets"] == ["hrss.subsidies"]
        assert bisection["result_sizes"]["threshold"] == 8  # the shipped default, with no [alerts] table
        refused = [entries[int(i)] for i in by_detector["refusals"]["params"]["alert.entries"].split(",")]
        # Refused, or answered only "fewer than k" (issue 14, part 1): each a small-set probe.
        assert all(e.status == "FAILED_PRECONDITION" or dict(e.result_sizes).get("suppressed") for e in refused)

        # The honest supervisor, querying throughout, is in no alert.
        assert not [a for a in alerts if HONEST.spiffe_id in (a["subject"], a["params"]["alert.subjects"])]
        mine = d.fedgate("audit", "search", "--alerts", "--subject", "supervisor/nao/carol", "--json",
                         who=support.OFFICER)
        assert mine.returncode == 0 and json.loads(mine.stdout) == [], mine.stderr
        # Alerts are for officers: the prober cannot read them, and --alerts does not mix with another action.
        assert d.fedgate("audit", "search", "--alerts", who=PROBER).returncode != 0
        mixed = d.fedgate("audit", "search", "--alerts", "--action", "count", who=support.OFFICER)
        assert mixed.returncode != 0 and "--alerts" in mixed.stderr
