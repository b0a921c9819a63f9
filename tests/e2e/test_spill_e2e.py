"""A gateway that spills (spill_above_rows = 0 in its gateway.toml) answers as one that keeps matches in memory,
leaves no spill file behind however a query ends, and spills no identifier. Real gateway and adapters, in process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

import support
from fedgate.client.gateway import GatewayClient, Side
from fedgate.core.errors import RemoteCallFailed
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.demo.datagen import generate
from fedgate.gateway import spill
from fedgate.server.tls import TlsFiles

ROWS = 1000
WHY = ("核查稳岗补贴发放对象", "DC-2026-116")
SPILLING = "spill_above_rows = 0\nspill_buckets = 4"
SUBSIDIES = Side("hrss.subsidies", "uscc")
CLOSED = Side("samr.companies", "uscc", "status in ('吊销', '注销')")
TAX = Side("tax.insured_employees", "uscc")


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("spill")
    departments = generate(workdir, rows=ROWS, seed=16)
    return workdir, departments, json.loads((workdir / "ground_truth.json").read_text())


def _identifiers(workdir: Path) -> set[str]:
    """Every identifier the departments hold (the demo's CSV and SQLite files, read as text)."""
    ids: set[str] = set()
    for path in (workdir / "data").rglob("*.csv"):
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            ids.update(cell for cell in line.split(",") if len(cell) == 18 and cell[:2].isalnum())
    return ids


def _spill_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / spill.SPILL_DIR).rglob("*") if p.is_file()]


async def _spill_gone(data_dir: Path, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        root = data_dir / spill.SPILL_DIR
        if not root.exists() or not any(root.iterdir()):
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch, demo_data) -> dict[str, Any]:
    """Each spilled intersection's files, scanned for identifiers just before it runs (every token is in by then)."""
    out: dict[str, Any] = {"spilled": 0, "files": 0, "leaks": []}
    ids = _identifiers(demo_data[0])
    assert len(ids) > 100
    finish = spill.SpillingIntersector.finish

    def scanning(self: spill.SpillingIntersector, **kw: Any) -> Any:
        if self.spilled:
            self._flush()
            for fh in self._spill._files:
                fh.flush()
            files = [p for p in self._spill.directory.iterdir() if p.stat().st_size]
            out["spilled"] += 1
            out["files"] += len(files)
            out["leaks"] += support.identifier_leaks(files, ids)
        return finish(self, **kw)

    monkeypatch.setattr(spill.SpillingIntersector, "finish", scanning)
    return out


async def _answers(c: GatewayClient, key: SupervisorKey) -> list[Any]:
    """Order-dependent answers: disclosed rows are the first matched left rows, flags index pairs in order."""
    out: list[Any] = []
    for mode in ("keyed", "ecdh"):
        out.append(await c.match(left=SUBSIDIES, right=CLOSED, purpose=WHY[0], case_number=WHY[1], mode=mode,
                                 disclose=["uscc", "company_name", "amount_fen"], limit=7))
    out.append(await c.intersection_sum(values=SUBSIDIES, value_fields=["amount_fen", "claimed_insured"],
                                        other=CLOSED, purpose=WHY[0], case_number=WHY[1], key=key))
    out.append(await c.compare(left=SUBSIDIES, left_value="claimed_insured", right=TAX,
                               right_value="insured_employees", purpose=WHY[0], case_number=WHY[1],
                               disclose=["uscc", "company_name"], limit=100, key=key))
    return [dataclasses.replace(a, audit_index=0) for a in out]


async def test_spilled_answers_equal_the_in_memory_ones_and_hold_no_identifier(servers, demo_data, seen,
                                                                                monkeypatch) -> None:
    workdir, departments, truth = demo_data
    data_dir = workdir / "gw-spill"
    gw = await servers.gateway(data_dir, SPILLING)
    await servers.demo_adapters(gw, workdir, departments, ("hrss", "samr", "tax"))
    key = SupervisorKey.generate()
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR),
                             timeout=120) as c:
        spilled = await _answers(c, key)
        assert seen["spilled"] == 4 and seen["files"] > 0 and seen["leaks"] == []
        assert _spill_files(data_dir) == []
        # The same gateway, adapters and data with the threshold out of reach: the in-memory answers.
        for_query = spill.SpillConfig.for_query
        monkeypatch.setattr(spill.SpillConfig, "for_query",
                            lambda self, q: for_query(dataclasses.replace(self, above_rows=10**9), q))
        in_memory = await _answers(c, key)
        assert seen["spilled"] == 4
    assert spilled == in_memory
    assert spilled[0].cardinality == truth["subsidies_to_closed_companies"]["rows"] and spilled[0].rows
    assert spilled[2].totals["amount_fen"] == truth["subsidies_to_closed_companies"]["amount_fen"]
    assert spilled[3].pairs == truth["overclaim"]["compared_rows"] and spilled[3].flagged


@pytest.fixture
def slow_stream(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Adapters send 50 rows a chunk, 50 ms each: a match long enough to stop in the middle."""
    from fedgate.adapters import matching as adapter_matching

    calls: list[float] = []
    tokens_for = adapter_matching.tokens_for

    def slow_tokens(*args: Any) -> Any:
        calls.append(time.monotonic())
        time.sleep(0.05)
        return tokens_for(*args)

    monkeypatch.setattr(adapter_matching, "chunk_rows", lambda rows, parallelism: 50)
    monkeypatch.setattr(adapter_matching, "tokens_for", slow_tokens)
    return calls


async def _mid_stream(data_dir: Path, query: asyncio.Task[Any]) -> list[Path]:
    """Wait until the match has spilled tokens (and is still streaming); the files then."""
    deadline = time.monotonic() + 30
    while not (files := [p for p in _spill_files(data_dir) if p.stat().st_size]) and time.monotonic() < deadline:
        assert not query.done(), "the match ended before it spilled"
        await asyncio.sleep(0.01)
    assert files and not query.done()
    return files


@pytest.mark.parametrize("how", ["cancelled", "adapter stopped"])
async def test_a_match_stopped_mid_stream_leaves_no_spill_file(servers, demo_data, slow_stream, how: str) -> None:
    workdir, departments, _ = demo_data
    data_dir = workdir / f"gw-{how.replace(' ', '-')}"
    gw = await servers.gateway(data_dir, SPILLING)
    adapters = await servers.demo_adapters(gw, workdir, departments, ("hrss", "samr"))
    client = GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR), timeout=60)
    query = asyncio.create_task(client.match(left=SUBSIDIES, right=Side("samr.companies", "uscc"), purpose=WHY[0],
                                             case_number=WHY[1], mode="ecdh"))
    files = await _mid_stream(data_dir, query)
    # Paused mid-stream: what is on disk so far holds no identifier.
    assert support.identifier_leaks(files, _identifiers(workdir)) == []
    if how == "cancelled":
        query.cancel()
        with pytest.raises(asyncio.CancelledError):
            await query
    else:
        await adapters["samr"].stop(0)
        with pytest.raises(RemoteCallFailed):
            await query
    assert await _spill_gone(data_dir), f"spill files left after the match was {how}: {_spill_files(data_dir)}"
    await client.close()


async def test_a_gateway_starting_removes_spill_files_a_crash_left(servers, tmp_path: Path) -> None:
    left = tmp_path / "gw" / spill.SPILL_DIR / "0123abcd"
    left.mkdir(parents=True)
    (left / "left-bucket-1.bin").write_bytes(b"\x00" * 24)
    await servers.gateway(tmp_path / "gw")
    assert not (tmp_path / "gw" / spill.SPILL_DIR).exists()


async def test_an_adapter_killed_mid_stream_leaves_no_spill_file(tmp_path: Path) -> None:
    """The gateway and adapters as processes, and the right adapter SIGKILLed while the gateway spills."""
    from fedgate.core.identity import Identity
    from fedgate.demo.deployment import Deployment, GatewaySpec, policy_copy
    from fedgate.demo.synthetic_ids import make_dataset, people_departments
    from fedgate.server import pki

    certs = tmp_path / "certs"
    pki.init_dir(certs, [Identity.department("hrss"), Identity.department("civil"), support.SUPERVISOR])
    data = make_dataset(tmp_path, 100_000, 0.5)  # an ECDH match of 100k x 100k takes seconds on one worker a side
    policies = support.with_test_rules(policy_copy(tmp_path / "policies"))
    gateway = GatewaySpec.in_dir(Path("gateway-data"), certs, policy_dir=policies,
                                 options={"spill_above_rows": 0, "spill_buckets": 4})
    d = Deployment(tmp_path, gateway, people_departments(certs, 1, [("people", data)]))
    try:
        d.start_gateway()
        d.start_adapters()
        data_dir = tmp_path / "gateway-data"
        async with GatewayClient(d.address, TlsFiles.in_dir(certs, support.SUPERVISOR), timeout=60) as client:
            query = asyncio.create_task(client.match(left=Side("hrss.people", "resident_id"),
                                                     right=Side("civil.people", "resident_id"), purpose=WHY[0],
                                                     case_number=WHY[1], mode="ecdh"))
            await _mid_stream(data_dir, query)
            d.kill("civil")
            with pytest.raises(RemoteCallFailed) as err:
                await query
            assert err.value.code == "UNAVAILABLE"
            assert await _spill_gone(data_dir), f"spill files left after the adapter was killed: {_spill_files(data_dir)}"
    finally:
        d.stop()
