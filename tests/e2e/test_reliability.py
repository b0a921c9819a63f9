"""Faults: a cancelled query, an adapter killed mid-stream, a gateway killed while supervisors query.

The kill tests run the gateway and the adapters as separate processes (SIGKILL
is the point); the cancellation test runs them in this process, to look inside
the adapters afterwards.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import support
from fedgate.server import pki
from fedgate.client.gateway import GatewayClient, Side
from fedgate.demo import deployment as deployment_helper
from fedgate.demo.datagen import generate
from fedgate.demo.deployment import GatewaySpec, policy_copy
from fedgate.demo.synthetic_ids import make_dataset, people_departments
from fedgate.core.errors import RemoteCallFailed
from fedgate.core.identity import Identity
from fedgate.server.signing_key import read_vkey
from fedgate.server.tls import TlsFiles

WHY = ("可靠性测试", "DC-2026-108")
PEOPLE = Side("hrss.people", "resident_id")
OTHERS = Side("civil.people", "resident_id")


# --- a supervisor's cancelled query stops the work on every adapter ---------------------------


@pytest.mark.parametrize("how", ["cancel", "deadline"])
async def test_cancelled_query_stops_its_work_on_every_adapter_and_is_audited(servers, tmp_path, monkeypatch,
                                                                              how: str) -> None:
    from fedgate.adapters import matching as adapter_matching

    departments = generate(tmp_path, rows=1000, seed=3)
    gw = await servers.gateway(tmp_path / "gateway-data")
    adapters = await servers.demo_adapters(gw, tmp_path, departments, ("hrss", "samr"))

    calls: list[float] = []
    tokens_for = adapter_matching.tokens_for

    def slow_tokens(*args):  # type: ignore[no-untyped-def]
        calls.append(time.monotonic())
        time.sleep(0.05)  # a long match: 20 chunks a side, 50 ms each
        return tokens_for(*args)

    monkeypatch.setattr(adapter_matching, "chunk_rows", lambda rows, parallelism: 50)
    monkeypatch.setattr(adapter_matching, "tokens_for", slow_tokens)
    client = GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR))
    if how == "cancel":
        query = asyncio.create_task(client.match(left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc"),
                                                 purpose=WHY[0], case_number=WHY[1], mode="ecdh"))
        while len(calls) < 4:  # both sides are blinding
            await asyncio.sleep(0.01)
        assert all(a.sessions.active == 1 for a in adapters.values())
        query.cancel()
        with pytest.raises(asyncio.CancelledError):
            await query
    else:
        # The supervisor's own deadline: the gateway passes it on to every adapter call it makes.
        from fedgate.protos.fedgate.v1 import query_pb2

        request = query_pb2.MatchRequest(
            left=query_pb2.MatchSide(dataset="hrss.subsidies", key_field="uscc"),
            right=query_pb2.MatchSide(dataset="samr.companies", key_field="uscc"), mode="ecdh",
            purpose=WHY[0], case_number=WHY[1])
        with pytest.raises(Exception) as err:
            async for _ in client._query.Match(request, timeout=0.6):
                pass
        assert err.value.code().name == "DEADLINE_EXCEEDED"
    cancelled_at = time.monotonic()
    deadline = cancelled_at + 5
    while any(a.sessions.active for a in adapters.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert all(a.sessions.active == 0 for a in adapters.values()), "a session outlived its cancelled query"
    started_before = len(calls)
    await asyncio.sleep(0.5)
    # At most the chunks already running in threads finish; nothing new starts.
    assert len(calls) - started_before <= 2 and len(calls) < 40
    for adapter in adapters.values():
        assert adapter.disclosures.disclosures()[-1].decision == "stopped"
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER)) as officer:
        (_, outcome), (_, intent) = await officer.search(action="query.match", limit=2)
    assert (intent.status, outcome.status) == ("STARTED", "CANCELLED") and outcome.query_id == intent.query_id
    monkeypatch.setattr(adapter_matching, "tokens_for", tokens_for)
    again = await client.match(left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc"), purpose=WHY[0], case_number=WHY[1])
    assert again.cardinality > 0
    await client.close()


# --- helpers for the tests with real processes -------------------------------------------------


class Deployment(deployment_helper.Deployment):
    """A gateway and the hrss and civil adapters as separate processes, on synthetic_ids' data."""

    def __init__(self, workdir: Path, rows: int) -> None:
        self.certs = workdir / "certs"
        pki.init_dir(self.certs, [Identity.department("hrss"), Identity.department("civil"), support.SUPERVISOR,
                                  support.OFFICER])
        self.data = make_dataset(workdir, rows, 0.5)
        # The tests' policy (exact answers): they check each answer against the truth.
        policies = support.with_test_rules(policy_copy(workdir / "policies"))
        super().__init__(workdir, GatewaySpec.in_dir(Path("gateway-data"), self.certs, policy_dir=policies),
                         people_departments(self.certs, 1, [("people", self.data)]))

    def start_adapter(self, dept: str) -> None:
        self.start_adapters(dept)

    def client(self, who: Identity = support.SUPERVISOR) -> GatewayClient:
        return GatewayClient(self.address, TlsFiles.in_dir(self.certs, who), timeout=60)


@pytest.fixture
def deployment(tmp_path: Path):
    made: list[Deployment] = []

    def make(rows: int) -> Deployment:
        made.append(Deployment(tmp_path, rows))
        return made[-1]

    yield make
    for d in made:
        d.stop()


# --- an adapter killed in the middle of a streaming match --------------------------------------


async def test_adapter_killed_mid_stream_fails_promptly_is_audited_and_serves_again_after_restart(
        deployment) -> None:
    d = deployment(100_000)  # an ECDH match of 100k x 100k takes seconds on one worker a side
    d.start_gateway()
    d.start_adapter("hrss")
    d.start_adapter("civil")
    async with d.client() as client:
        query = asyncio.create_task(client.match(left=PEOPLE, right=OTHERS, purpose=WHY[0], case_number=WHY[1], mode="ecdh"))
        await asyncio.sleep(1.5)
        assert not query.done(), "the match ended before the adapter could be killed"
        d.kill("civil")
        killed_at = time.monotonic()
        with pytest.raises(RemoteCallFailed) as err:
            await query
        failed_after = time.monotonic() - killed_at
        assert err.value.code == "UNAVAILABLE" and "department 'civil'" in err.value.details
        assert failed_after < 10, f"the query took {failed_after:.1f} s to fail"
        # Other queries keep working meanwhile.
        rows, _ = await client.count_rows("hrss.people", *WHY)
        assert rows == 100_000
    async with d.client(support.OFFICER) as officer:
        outcomes = [e for _, e in await officer.search(action="query.match", limit=5) if e.status != "STARTED"]
    assert outcomes[0].status == "UNAVAILABLE" and "civil" in outcomes[0].reason
    # The department restarts its adapter (same configuration, same data directory): nothing else to do.
    d.start_adapter("civil")
    async with d.client() as client:
        again = await client.match(left=PEOPLE, right=OTHERS, purpose=WHY[0], case_number=WHY[1], mode="keyed")
    assert again.cardinality == d.data.expected


# --- the gateway killed while supervisors query ------------------------------------------------


async def test_gateway_killed_while_supervisors_query_loses_no_acknowledged_query(deployment) -> None:
    d = deployment(2_000)
    d.start_gateway()
    d.start_adapter("hrss")
    d.start_adapter("civil")
    acknowledged: list[tuple[str, int]] = []
    stop = asyncio.Event()

    async def supervisor(n: int) -> None:
        async with d.client() as client:
            i = 0
            while not stop.is_set():
                case = f"KILL-{n}-{i}"
                try:
                    _, index = await client.count_rows("hrss.people", "压力测试", case)
                except RemoteCallFailed:
                    return  # the gateway is gone
                acknowledged.append((case, index))
                i += 1

    clients = [asyncio.create_task(supervisor(n)) for n in range(6)]
    while len(acknowledged) < 30:
        await asyncio.sleep(0.02)
    d.kill("gateway")  # mid-query for most of the supervisors
    stop.set()
    await asyncio.gather(*clients)
    d.start_gateway()
    vkey = read_vkey(d.workdir / "gateway-data" / "log-signing.vkey")
    # The security officer's verification, as the CLI runs it.
    files = TlsFiles.in_dir(d.certs, support.OFFICER)
    verify = subprocess.run(
        [sys.executable, "-m", "fedgate", "audit", "verify", "--vkey", str(d.workdir / "gateway-data" / "log-signing.vkey"),
         "--gateway", d.address, "--ca", str(files.ca), "--cert", str(files.cert), "--key", str(files.key),
         "--no-state", "--json"], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["size"] > 2 * len(acknowledged)
    async with d.client(support.OFFICER) as officer:
        report = await officer.verify_log(vkey)
        entries = {}
        async for index, body in officer.entries(0, report.size):
            entries[index] = json.loads(body)
    by_case: dict[str, list[dict[str, object]]] = {}
    for entry in entries.values():
        by_case.setdefault(str(entry.get("case_number")), []).append(entry)
    for case, index in acknowledged:
        # The pre-access entry the reply named, and the outcome written before the reply left.
        assert entries[index]["case_number"] == case and entries[index]["status"] == "STARTED"
        assert any(e["status"] == "OK" and e["query_id"] == entries[index]["query_id"] for e in by_case[case]), case
    # Queries in flight at the kill were closed at restart: every STARTED entry has exactly one outcome.
    outcomes: dict[str, list[str]] = {}
    for entry in entries.values():
        if entry.get("query_id") and entry["status"] != "STARTED":
            outcomes.setdefault(str(entry["query_id"]), []).append(str(entry["status"]))
    started = [e for e in entries.values() if e["status"] == "STARTED"]
    assert all(len(outcomes.get(str(e["query_id"]), [])) == 1 for e in started)
    aborted = [e for e in entries.values() if e["status"] == "ABORTED"]
    assert all("gateway stopped before this query finished" in str(e["reason"]) for e in aborted)
    print(f"{len(acknowledged)} acknowledged, {len(aborted)} in flight at the kill and closed as ABORTED")
    async with d.client() as client:
        rows, _ = await client.count_rows("hrss.people", *WHY)
    assert rows == 2_000


# --- a department that hangs, and an audit log that cannot be written --------------------------


async def test_an_adapter_that_goes_silent_mid_stream_is_given_up_on(servers, tmp_path, monkeypatch) -> None:
    from fedgate.adapters import matching as adapter_matching

    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV.splitlines()[0] + "\n" + "".join(
        f"{support.uscc(i)},公司{i},{i}\n" for i in range(300)), encoding="utf-8")
    db = tmp_path / "samr.db"
    support.write_companies(f"sqlite:///{db}", n=300)
    gw = await servers.gateway(settings="adapter_idle_timeout_s = 1")
    await servers.adapter("hrss", gw, support.SUBSIDIES_DECL.format(path=csv))
    await servers.adapter("samr", gw, support.COMPANIES_DECL.format(kind="sqlite", where=f'path = "{db}"'))
    tokens_for = adapter_matching.tokens_for

    def hanging(*args):  # type: ignore[no-untyped-def]
        time.sleep(2.5)  # alive, connected, and silent for longer than the gateway waits
        return tokens_for(*args)

    monkeypatch.setattr(adapter_matching, "tokens_for", hanging)
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        t0 = time.monotonic()
        with pytest.raises(RemoteCallFailed) as err:
            await c.match(left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc"), purpose=WHY[0], case_number=WHY[1])
    assert err.value.code == "UNAVAILABLE" and "sent nothing for 1 s" in err.value.details
    assert time.monotonic() - t0 < 6


async def test_a_query_the_audit_log_cannot_record_is_not_served(servers, tmp_path) -> None:
    import sqlite3

    db = tmp_path / "samr.db"
    support.write_companies(f"sqlite:///{db}", n=150)
    gw = await servers.gateway(tmp_path / "gw")
    adapter = await servers.adapter("samr", gw, support.COMPANIES_DECL.format(kind="sqlite", where=f'path = "{db}"'))
    before = len(adapter.disclosures.disclosures())
    lock = sqlite3.connect(tmp_path / "gw" / "audit.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the log: no append can commit
    try:
        async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR),
                                 timeout=60) as c:
            with pytest.raises(RemoteCallFailed) as err:
                await c.count_rows("samr.companies", *WHY)
        assert err.value.code == "UNAVAILABLE" and "audit log is unavailable" in err.value.details
        assert len(adapter.disclosures.disclosures()) == before  # the department was never asked
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        rows, _ = await c.count_rows("samr.companies", *WHY)
    assert rows == 150
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER)) as officer:
        report = await officer.verify_log(read_vkey(gw.vkey_path))
    assert report.size > 0
