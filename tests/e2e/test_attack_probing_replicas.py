"""Issue 14, point 6, with replicas: a probe spread over two gateway replicas is still flagged, once.

Two gateway processes share one audit log and registry on a real PostgreSQL (a fresh schema, dropped at
the end). alice asks for one company's count at a time, alternating between the replicas: every answer
is suppressed ("fewer than k"), so she learns nothing, and each replica logs fewer suppressed answers of
hers than the `refusals` threshold. Only a watch that sees both replicas' outcomes reaches it. carol, of
another agency, does ordinary work on both replicas meanwhile and must be in no alert.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import support
from fedgate.client.gateway import FewerThan, GatewayClient
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import FedgateError
from fedgate.core.identity import Identity, Role
from fedgate.demo import processes
from fedgate.demo.deployment import DepartmentSpec, GatewaySpec, adapter_toml, gateway_toml, policy_copy
from fedgate.server import pki
from fedgate.server.tls import TlsFiles

pytestmark = pytest.mark.postgres

PROBER = support.SUPERVISOR  # supervisor/dcb/alice
HONEST = Identity(Role.SUPERVISOR, "nao", "carol")
WHY = ("核查", "PA-2")
THRESHOLD = 10   # the shipped `refusals` default (no [alerts] table in the test's safeguards.toml)
PROBES = 18      # nine per replica: under the threshold on each, over it together


@dataclass(frozen=True)
class Replicas:
    certs: Path
    ports: tuple[int, int]

    def client(self, replica: int, who: Identity) -> GatewayClient:
        return GatewayClient(f"127.0.0.1:{self.ports[replica]}", TlsFiles.in_dir(self.certs, who))


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    """Two gateway replicas (processes) on one PostgreSQL schema, and hrss (20 subsidies) registered at the first."""
    with support.private_pg_schema("fg_probe_replicas") as url:
        certs = tmp_path / "certs"
        pki.init_dir(certs, [Identity.department("hrss"), PROBER, HONEST, support.OFFICER])
        policies = support.with_test_rules(policy_copy(tmp_path / "policies", "min_set_size = 10\n"))
        key = tmp_path / "log-signing.key"
        shared = {"registry_url": url, "audit_url": url, "signing_key": str(key), "policy_watch_s": 0}
        csv = tmp_path / "s.csv"
        csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
        started: list[processes.ServerProcess] = []
        try:
            for name in ("gw-a", "gw-b"):  # one after the other: the first creates the tables and the key
                spec = GatewaySpec.in_dir(tmp_path / name, certs, workers=0, policy_dir=policies, options=shared)
                cfg = tmp_path / f"{name}.toml"
                cfg.write_text(gateway_toml(spec), encoding="utf-8")
                started.append(processes.start(name, ["gateway", "serve", "--config", str(cfg)], tmp_path))
                processes.wait_ready(started[-1])
            hrss = DepartmentSpec.in_dir("hrss", [support.SUBSIDIES_DECL.spec(path=csv)], certs,
                                         data_dir=tmp_path / "hrss", workers=0, register_timeout_s=10)
            cfg = tmp_path / "adapter-hrss.toml"
            cfg.write_text(adapter_toml(hrss, f"127.0.0.1:{started[0].port}", key.with_suffix(".vkey")),
                           encoding="utf-8")
            started.append(processes.start("adapter-hrss", ["adapter", "serve", "--config", str(cfg)], tmp_path))
            processes.wait_ready(started[-1], 120)
            yield Replicas(certs, (started[0].port, started[1].port))
        finally:
            for server in reversed(started):
                processes.stop(server)


async def _count(client: GatewayClient, filt: str) -> tuple[int | None, int | None]:
    """(the count, or None when suppressed or refused; the query's audit index, when answered)."""
    try:
        got = await client.count_rows("hrss.subsidies", *WHY, filt)
    except FedgateError:
        return None, None
    return (None if isinstance(got.rows, FewerThan) else got.rows), got.audit_index


async def _probe_and_work(r: Replicas) -> dict[int, int]:
    """alice's probe, alternating replicas, with carol's work between; the replica of each of alice's queries
    by its audit index (the intent entry)."""
    served: dict[int, int] = {}
    async with r.client(0, PROBER) as a0, r.client(1, PROBER) as a1, \
            r.client(0, HONEST) as c0, r.client(1, HONEST) as c1:
        alice, carol = (a0, a1), (c0, c1)
        for i in range(1, PROBES + 1):
            replica = i % 2
            rows, index = await _count(alice[replica], f"company_name = '公司{i}'")
            assert rows is None  # one company's count: suppressed, alice learns nothing
            if index is not None:
                served[index] = replica
            if i % 6 == 0:  # carol's ordinary work, on both replicas
                assert (await _count(carol[replica], ""))[0] == 20
                assert (await _count(carol[1 - replica], "amount_fen >= 11000"))[0] == 10
    return served


async def _log(r: Replicas) -> dict[int, AuditEntry]:
    async with r.client(1, support.OFFICER) as officer:
        return {e.audit_index: e.entry for e in await officer.search(limit=10_000)}


def test_a_probe_spread_over_two_replicas_is_alerted_once(replicas: Replicas) -> None:
    served = asyncio.run(_probe_and_work(replicas))
    entries = asyncio.run(_log(replicas))

    by_replica = [sum(1 for replica in served.values() if replica == n) for n in (0, 1)]
    assert all(n < THRESHOLD for n in by_replica), by_replica  # neither replica alone saw enough
    alerts = [(i, e) for i, e in entries.items() if e.action == "audit.alert"]
    # One alert, logged by one replica only: the other, having counted the same entries, does not repeat it.
    assert len(alerts) == 1, [dict(e.params) for _, e in alerts]
    at, alert = alerts[0]
    params = dict(alert.params)
    assert (params["alert.detector"], params["alert.agency"]) == ("refusals", "dcb")
    assert alert.subject == params["alert.subjects"] == PROBER.spiffe_id
    assert dict(alert.result_sizes)["threshold"] == THRESHOLD

    counted = [int(i) for i in params["alert.entries"].split(",")]
    assert len(counted) == dict(alert.result_sizes)["count"] == THRESHOLD and max(counted) < at
    outcomes = [entries[i] for i in counted]
    assert all(e.subject == PROBER.spiffe_id and e.action == "query.count" for e in outcomes)
    assert all(e.status == "FAILED_PRECONDITION" or dict(e.result_sizes).get("suppressed") for e in outcomes)
    # The counted outcomes came through both replicas (each outcome shares its query id with the intent
    # entry whose index the replica answered with).
    intent = {entries[i].query_id: replica for i, replica in served.items()}
    assert {intent[e.query_id] for e in outcomes} == {0, 1}
    # And the log keeps no literal: no company name is in what the alert says.
    assert "公司" not in alert.reason + repr(alert.params)

    assert not [e for _, e in alerts if HONEST.spiffe_id in (e.subject, dict(e.params)["alert.subjects"])]
