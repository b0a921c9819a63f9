"""Private matching end to end: real gateway and adapters, demo data with ground truth."""

from __future__ import annotations

import json
import time
import unicodedata
from pathlib import Path

import pytest

import support
from fedgate.client.gateway import GatewayClient, MatchResult, Side
from fedgate.demo.datagen import generate
from fedgate.core.errors import RemoteCallFailed
from fedgate.server.tls import TlsFiles

ROWS = 1000
WHY = ("核查稳岗补贴发放对象", "DC-2026-101")
CLOSED = "status in ('吊销', '注销')"


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("match")
    departments = generate(workdir, rows=ROWS, seed=7)
    return workdir, departments, json.loads((workdir / "ground_truth.json").read_text())


async def _deploy(servers, demo_data, codes: tuple[str, ...] = ("hrss", "samr", "civil", "vehicle")):
    workdir, departments, truth = demo_data
    gw = await servers.gateway(workdir / "gateway-data")
    return gw, await servers.demo_adapters(gw, workdir, departments, codes), truth


def _client(servers, gw) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR))


async def _match(servers, gw, left, right, mode, **kw) -> MatchResult:
    async with _client(servers, gw) as c:
        return await c.match(left=Side(*left), right=Side(*right), purpose=WHY[0], case_number=WHY[1], mode=mode, **kw)


@pytest.mark.parametrize("mode", ["keyed", "ecdh"])
async def test_scenarios_match_ground_truth(servers, demo_data, mode: str) -> None:
    gw, _, truth = await _deploy(servers, demo_data)
    closed = await _match(servers, gw, ("hrss.subsidies", "uscc", ""), ("samr.companies", "uscc", CLOSED), mode)
    assert closed.cardinality == truth["subsidies_to_closed_companies"]["rows"]
    assert closed.distinct_matches == truth["subsidies_to_closed_companies"]["companies"]
    assert closed.left.rows == ROWS and closed.left.invalid_identifiers == truth["invalid_identifiers"]["hrss.subsidies"]
    assert closed.left.tokens == ROWS - closed.left.invalid_identifiers

    deceased = await _match(servers, gw, ("hrss.pensions", "resident_id", ""),
                            ("civil.deaths", "resident_id", ""), mode)
    assert deceased.cardinality == truth["pensions_to_deceased"]["pensioners_in_deaths"]
    assert deceased.right.invalid_identifiers == truth["invalid_identifiers"]["civil.deaths"]

    cars = await _match(servers, gw, ("civil.allowances", "resident_id", ""),
                        ("vehicle.vehicles", "owner_id", ""), mode)
    assert cars.cardinality == truth["allowance_vehicle_owners"]["count"]


async def test_matched_rows_are_disclosed_masked_by_policy(servers, demo_data) -> None:
    gw, adapters, truth = await _deploy(servers, demo_data, ("hrss", "samr"))
    got = await _match(servers, gw, ("hrss.subsidies", "uscc", ""), ("samr.companies", "uscc", CLOSED), "ecdh",
                       disclose=["uscc", "company_name", "amount_fen"], limit=5)
    assert [(f.name, f.form) for f in got.fields] == [("uscc", "masked"), ("company_name", "plaintext"),
                                                       ("amount_fen", "masked")]
    assert len(got.rows) == 5 and got.cardinality == truth["subsidies_to_closed_companies"]["rows"]
    for uscc, name, amount in got.rows:
        assert "*" in uscc and len(uscc) == 18 and "*" in amount and name
    served = [d for d in adapters["hrss"].disclosures.disclosures() if d.decision == "served"]
    assert served[-1].result_rows == 5


async def test_bad_requests(servers, demo_data) -> None:
    gw, _, _ = await _deploy(servers, demo_data, ("hrss", "samr"))
    cases = [
        ((("hrss.subsidies", "company_name", ""), ("samr.companies", "uscc", "")), "keyed", "INVALID_ARGUMENT",
         "is not a key field"),
        ((("hrss.subsidies", "uscc", ""), ("samr.companies", "legal_rep_id", "")), "keyed", "INVALID_ARGUMENT",
         "different identifier kinds"),
        ((("hrss.subsidies", "uscc", "amount_fen >"), ("samr.companies", "uscc", "")), "keyed",
         "INVALID_ARGUMENT", "position 13"),
        ((("hrss.subsidies", "uscc", ""), ("samr.companies", "uscc", "")), "rot13", "INVALID_ARGUMENT", "mode"),
    ]
    for (left, right), mode, code, words in cases:
        with pytest.raises(RemoteCallFailed) as err:
            await _match(servers, gw, left, right, mode)
        assert err.value.code == code and words in err.value.details, err.value
    # An empty side is refused like a side of one (issue 14): answering it would tell 0 from 1.
    with pytest.raises(RemoteCallFailed) as err:
        await _match(servers, gw, ("hrss.subsidies", "uscc", ""), ("samr.companies", "uscc", "status = '不存在'"),
                     "keyed")
    assert err.value.code == "FAILED_PRECONDITION" and "right set has fewer than" in err.value.details


async def test_gateway_sees_no_identifier_and_tokens_are_unlinkable(servers, demo_data, monkeypatch) -> None:
    from fedgate.gateway import matching

    received: list[tuple[str, bytes]] = []
    original = matching._Session.read

    async def recording_read(self):  # type: ignore[no-untyped-def]
        msg = await original(self)
        received.append((self.side.department, msg.SerializeToString()))
        return msg

    monkeypatch.setattr(matching._Session, "read", recording_read)
    gw, _, _ = await _deploy(servers, demo_data, ("hrss", "samr"))
    for mode in ("keyed", "ecdh", "keyed"):
        await _match(servers, gw, ("hrss.subsidies", "uscc", ""), ("samr.companies", "uscc", ""), mode)
    blob = b"".join(data for _, data in received)
    assert len(blob) > 50_000
    ids = _identifier_variants(demo_data[0])
    leaked = [i for i in ids if i in blob]
    assert not leaked, f"{len(leaked)} identifiers reached the gateway"
    # The same companies' tokens in the two keyed queries share nothing.
    from fedgate.protos.fedgate.v1 import adapter_pb2
    runs: list[set[bytes]] = []
    for dept, data in received:
        msg = adapter_pb2.MatchOut.FromString(data)
        if dept == "samr" and msg.WhichOneof("msg") == "own_tokens" and len(msg.own_tokens.data) % 16 == 0:
            tokens = {msg.own_tokens.data[i:i + 16] for i in range(0, len(msg.own_tokens.data), 16)}
            runs.append(tokens)
    assert len(runs) >= 2 and not (runs[0] & runs[-1])


def _identifier_variants(workdir: Path) -> set[bytes]:
    import csv
    import sqlite3

    values: set[str] = set()
    for path in (workdir / "data").rglob("*.csv"):
        with path.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                values.update(v for k, v in row.items() if k in ("uscc", "resident_id") and v)
    for path in (workdir / "data").rglob("*.db"):
        db = sqlite3.connect(path)
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            cols = {c[1] for c in db.execute(f"PRAGMA table_info({table})")}
            for col in cols & {"uscc", "legal_rep_id", "owner_id"}:
                values.update(v for (v,) in db.execute(f"SELECT {col} FROM {table}") if v)
        db.close()
    out: set[bytes] = set()
    for v in values:
        canon = unicodedata.normalize("NFKC", v).replace(" ", "").upper()
        fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in canon)
        for form in (v, canon, canon.lower(), fullwidth):
            out.add(form.encode())
    return out


async def test_adapter_gone_mid_stream_is_unavailable_and_audited(servers, demo_data, monkeypatch) -> None:
    from fedgate.gateway import matching

    gw, adapters, _ = await _deploy(servers, demo_data, ("hrss", "samr"))
    original = matching._Session.read
    killed = []

    async def read_then_kill(self):  # type: ignore[no-untyped-def]
        msg = await original(self)
        if self.side.department == "samr" and msg.WhichOneof("msg") == "own_tokens" and not killed:
            killed.append(True)
            adapter = adapters["samr"]
            servers.adapters.remove(adapter)
            await adapter.stop(0)  # the department's adapter goes away while tokens flow
        return msg

    from fedgate.adapters import matching as adapter_matching

    def slow_tokens(*args):  # type: ignore[no-untyped-def]
        time.sleep(0.05)  # keep tokens flowing long enough to pull the plug mid-stream
        return tokens_for(*args)

    tokens_for = adapter_matching.tokens_for
    monkeypatch.setattr(adapter_matching, "chunk_rows", lambda rows, parallelism: 50)
    monkeypatch.setattr(adapter_matching, "tokens_for", slow_tokens)
    monkeypatch.setattr(matching._Session, "read", read_then_kill)
    with pytest.raises(RemoteCallFailed) as err:
        await _match(servers, gw, ("hrss.subsidies", "uscc", ""), ("samr.companies", "uscc", ""), "ecdh")
    assert killed and err.value.code == "UNAVAILABLE"
    assert "department 'samr'" in err.value.details
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER)) as c:
        (_, outcome), (_, intent) = await c.search(action="query.match", limit=2)
    assert intent.status == "STARTED" and outcome.status == "UNAVAILABLE"
    assert outcome.query_id == intent.query_id and "samr" in outcome.reason
    # Other queries keep working.
    monkeypatch.setattr(matching._Session, "read", original)
    async with _client(servers, gw) as c:
        assert (await c.count_rows("hrss.subsidies", *WHY))[0] == ROWS
