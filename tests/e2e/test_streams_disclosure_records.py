"""Every adapter session of a query the gateway logged OK is recorded by its department as `served`, once.

Before, the gateway cancelled both adapter streams as soon as it had its
result, racing each adapter's own record: a session was recorded `served`
and then "stopped: cancelled by the gateway", or only `stopped`. Now the
gateway half-closes each stream and reads it to its end; the adapter records
`served` and only then ends the stream.
"""

from __future__ import annotations

from collections import Counter

import support
from fedgate.client.gateway import GatewayClient, Side
from fedgate.demo.datagen import generate
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.server.tls import TlsFiles

WHY = ("核查部门披露记录", "DC-2026-802")
CLOSED = "status in ('吊销', '注销')"
SUBSIDIES = Side("hrss.subsidies", "uscc")
COMPANIES = Side("samr.companies", "uscc", CLOSED)
TAX = Side("tax.insured_employees", "uscc")


async def test_every_session_of_an_ok_query_is_recorded_served_exactly_once(servers, tmp_path) -> None:
    departments = generate(tmp_path, rows=1000, seed=13)
    gw = await servers.gateway(tmp_path / "gateway-data")
    adapters = await servers.demo_adapters(gw, tmp_path, departments, ("hrss", "samr", "tax"))
    key = SupervisorKey.generate()
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR),
                             timeout=120) as c:
        for i in range(24):
            mode = ("keyed", "ecdh")[i % 2]
            await c.match(left=SUBSIDIES, right=COMPANIES, purpose=WHY[0], case_number=WHY[1], mode=mode,
                          disclose=["company_name"] if i % 3 == 0 else None, limit=5)
        for _ in range(6):
            await c.intersection_sum(values=SUBSIDIES, value_fields=["amount_fen"], other=COMPANIES, purpose=WHY[0], case_number=WHY[1], key=key)
        for i in range(6):
            await c.compare(left=SUBSIDIES, left_value="claimed_insured", right=TAX, right_value="insured_employees",
                            purpose=WHY[0], case_number=WHY[1], key=key,
                            disclose=["company_name"] if i % 2 == 0 else None, limit=5)
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER)) as officer:
        entries = [e for _, e in await officer.search(limit=500) if e.query_id]
    ok = {e.query_id for e in entries if e.status == "OK"}
    assert len(ok) == 36 and not any(e.status not in ("STARTED", "OK") for e in entries)
    sessions = 0
    wrong: Counter[tuple[str, ...]] = Counter()
    for code, adapter in adapters.items():
        by_query: dict[str, list[str]] = {}
        for d in adapter.disclosures.disclosures():
            if d.query_id in ok:
                by_query.setdefault(d.query_id, []).append(d.decision)
        for decisions in by_query.values():
            sessions += 1
            if decisions != ["admitted", "served"]:
                wrong[(code, *decisions)] += 1
    assert sessions == 72, sessions  # two sessions per query
    assert not wrong, f"{sum(wrong.values())} of {sessions} sessions misrecorded: {dict(wrong)}"
