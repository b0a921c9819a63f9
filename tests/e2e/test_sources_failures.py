"""A department's source failing mid-life (issue 12, point 4): its internals never leave it.

The supervisor and the gateway's audit log get "the department's source failed"
with a reference and nothing of the source (file path, table, URL, host, user);
the adapter logs the cause at ERROR under that reference; its disclosure log
records the failure. Every kind of query that reads a source: count, disclose,
match, sum.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from pathlib import Path

import pytest

import support
from fedgate.adapters.server import Adapter
from fedgate.client.gateway import GatewayClient, Side
from fedgate.core.errors import RemoteCallFailed
from fedgate.gateway.server import Gateway
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.server.tls import TlsFiles

WHY = ("核查数据源故障", "DC-2026-112")
ROWS = 150
TABLE = "registry_internal_tbl"  # not the dataset's name: the test looks for it where it must not be
REF = re.compile(r"source failed \(ref ([0-9a-f]{8})\)")

SAMR_DECL = """
[[datasets]]
name = "companies"
source = {{ kind = "{kind}", {where}, table = "{table}" }}

[[datasets.fields]]
name = "uscc"
type = "string"
level = "L2"
key = "uscc"

[[datasets.fields]]
name = "status"
type = "string"
level = "L1"

[[datasets.fields]]
name = "capital_fen"
type = "int"
level = "L2"
"""


def write_registry(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"CREATE TABLE {TABLE} (uscc TEXT, status TEXT, capital_fen INTEGER)")
    conn.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?)",
                     [(support.uscc(i), "存续", 1000 + i) for i in range(ROWS)])
    conn.commit()
    conn.close()


def break_table(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_moved")
    conn.commit()
    conn.close()


async def deploy(servers, tmp_path: Path) -> tuple[Gateway, Adapter, Path]:
    gw = await servers.gateway(tmp_path / "gw")
    csv = tmp_path / "subsidies.csv"
    csv.write_text(support.SUBSIDIES_CSV.splitlines()[0] + "\n" + "".join(
        f"{support.uscc(i)},公司{i},{i}\n" for i in range(ROWS)), encoding="utf-8")
    await servers.adapter("hrss", gw, support.SUBSIDIES_DECL.format(path=csv))
    db = tmp_path / "dept-internal-registry.db"
    write_registry(db)
    samr = await servers.adapter("samr", gw, SAMR_DECL.format(kind="sqlite", where=f'path = "{db}"', table=TABLE))
    return gw, samr, db


def client(servers, gw: Gateway, who=support.SUPERVISOR) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, who), timeout=120)


async def run_query(c: GatewayClient, kind: str, key: SupervisorKey) -> object:
    if kind == "count":
        return await c.count_rows("samr.companies", *WHY)
    if kind == "disclose":
        return await c.disclose("samr.companies", ["status"], *WHY)
    if kind == "match":  # the failing source is the right side
        return await c.match(left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc"), purpose=WHY[0], case_number=WHY[1])
    # sum: the failing source holds the values (the left side)
    return await c.intersection_sum(values=Side("samr.companies", "uscc"), value_fields=["capital_fen"],
                                    other=Side("hrss.subsidies", "uscc"), purpose=WHY[0], case_number=WHY[1], key=key)


async def wait_for(check, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return found


def assert_nothing_internal(text: str, internals: list[str]) -> None:
    leaked = [s for s in internals if s.lower() in text.lower()]
    assert not leaked, f"{leaked} left the department in: {text}"


@pytest.fixture(scope="module")
def key() -> SupervisorKey:
    return SupervisorKey.generate()


@pytest.mark.parametrize("kind", ["count", "disclose", "match", "sum"])
async def test_a_source_failing_mid_life_leaves_only_a_reference(servers, tmp_path: Path, caplog, key,
                                                                 kind: str) -> None:
    caplog.set_level(logging.ERROR)
    gw, samr, db = await deploy(servers, tmp_path)
    async with client(servers, gw) as c:
        await run_query(c, kind, key)  # the source works
        break_table(db)
        with pytest.raises(RemoteCallFailed) as err:
            await run_query(c, kind, key)

    internals = [str(db), db.name, TABLE, str(tmp_path), "sqlite", "no such table"]
    # The supervisor: UNAVAILABLE (the department's fault, may be retried), a reference, nothing internal.
    details = err.value.details
    assert err.value.code == "UNAVAILABLE", details
    assert "department 'samr'" in details
    match = REF.search(details)
    assert match, details
    ref = match.group(1)
    assert_nothing_internal(details, internals)

    # The gateway's audit log: the failed query's outcome holds the reference; no entry holds the source.
    async with client(servers, gw, support.OFFICER) as officer:
        entries = [e for _, e in await officer.search(limit=1000)]
    outcome = next(e for e in entries if e.action == f"query.{kind}" and e.status == "UNAVAILABLE")
    assert f"ref {ref}" in outcome.reason and outcome.decision == "error"
    for entry in entries:
        assert_nothing_internal(entry.canonical().decode(), internals)

    # The adapter's own log: the cause, in full, under the reference.
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and ref in r.getMessage()]
    assert logged, [r.getMessage() for r in caplog.records]
    assert TABLE in logged[0].getMessage() and str(db) in logged[0].getMessage()

    # The department's disclosure log: the failure, with the reference, as its last word on the query.
    failed = await wait_for(lambda: [d for d in samr.disclosures.disclosures() if f"ref {ref}" in d.reason],
                            "the failure in the disclosure log")
    assert (failed[-1].decision, failed[-1].reason) == ("stopped", f"source failed (ref {ref})")
    query_ids = {d.query_id for d in failed}
    last = [d for d in samr.disclosures.disclosures() if d.query_id in query_ids][-1]
    assert last.decision == "stopped"


async def test_a_source_file_gone_mid_life_leaves_only_a_reference(servers, tmp_path: Path, caplog) -> None:
    """The database itself unreachable (here: its file moved away), not just a table."""
    caplog.set_level(logging.ERROR)
    gw, samr, db = await deploy(servers, tmp_path)
    async with client(servers, gw) as c:
        await c.count_rows("samr.companies", *WHY)
        for a in servers.adapters:  # no pooled connection keeps the old file open
            for source in a.sources.values():
                getattr(source, "close", lambda: None)()
        db.rename(tmp_path / "elsewhere.db")
        with pytest.raises(RemoteCallFailed) as err:
            await c.count_rows("samr.companies", *WHY)
    assert err.value.code == "UNAVAILABLE" and REF.search(err.value.details)
    assert_nothing_internal(err.value.details, [str(db), db.name, TABLE, str(tmp_path), "sqlite", "unable to open"])
    ref = REF.search(err.value.details).group(1)  # type: ignore[union-attr]
    assert any(ref in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert any(d.decision == "stopped" and f"ref {ref}" in d.reason for d in samr.disclosures.disclosures())


async def test_a_csv_source_rewritten_mid_life_leaves_only_a_reference(servers, tmp_path: Path, caplog) -> None:
    """A CSV the department rewrites with a value that no longer fits its declaration, then removes."""
    caplog.set_level(logging.ERROR)
    gw, _, _ = await deploy(servers, tmp_path)
    hrss = servers.adapters[0]
    csv = tmp_path / "subsidies.csv"
    async with client(servers, gw) as c:
        await c.count_rows("hrss.subsidies", *WHY)
        csv.write_text(csv.read_text(encoding="utf-8").replace(",7\n", ",SEVEN\n"), encoding="utf-8")
        with pytest.raises(RemoteCallFailed) as bad_value:
            await c.count_rows("hrss.subsidies", *WHY)
        csv.unlink()
        with pytest.raises(RemoteCallFailed) as gone:
            await c.count_rows("hrss.subsidies", *WHY)
    for err in (bad_value, gone):
        assert err.value.code == "UNAVAILABLE" and (found := REF.search(err.value.details)), err.value.details
        assert_nothing_internal(err.value.details, [str(csv), csv.name, str(tmp_path), "line ", "SEVEN"])
        ref = found.group(1)
        assert any(ref in r.getMessage() and str(csv) in r.getMessage() for r in caplog.records)
        assert any(d.reason == f"source failed (ref {ref})" for d in hrss.disclosures.disclosures())
    assert not any("SEVEN" in r.getMessage() for r in caplog.records)  # not even in the department's log
