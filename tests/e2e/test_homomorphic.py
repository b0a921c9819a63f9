"""Intersection-sum and flag-only comparison end to end: real gateway and adapters, demo data with ground truth."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

import support
from fedgate.client.gateway import GatewayClient, Side
from fedgate.crypto.ids import normalise
from fedgate.demo.datagen import generate
from fedgate.core.errors import InvalidIdentifier, RemoteCallFailed
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.server.tls import TlsFiles

ROWS = 1000
WHY = ("核查稳岗补贴发放对象", "DC-2026-106")
CLOSED = "status in ('吊销', '注销')"
SUBSIDIES = Side("hrss.subsidies", "uscc")
CLOSED_COMPANIES = Side("samr.companies", "uscc", CLOSED)
TAX = Side("tax.insured_employees", "uscc")


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("homomorphic")
    departments = generate(workdir, rows=ROWS, seed=11)
    return workdir, departments, json.loads((workdir / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def key() -> SupervisorKey:
    return SupervisorKey.generate()


async def _deploy(servers, demo_data, codes: tuple[str, ...] = ("hrss", "samr", "tax")):
    workdir, departments, truth = demo_data
    gw = await servers.gateway(workdir / "gateway-data")
    return gw, await servers.demo_adapters(gw, workdir, departments, codes), truth


def _client(servers, gw, who=support.SUPERVISOR) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, who), timeout=120)


def _plain_subsidies(workdir: Path) -> list[dict[str, object]]:
    rows = []
    with (workdir / "data" / "hrss" / "subsidies.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                row["uscc"] = normalise("uscc", row["uscc"])
            except InvalidIdentifier:
                continue
            rows.append(row)
    return rows


def _closed_usccs(workdir: Path) -> set[str]:
    db = sqlite3.connect(workdir / "data" / "samr" / "registry.db")
    try:
        return {u for (u,) in db.execute("SELECT uscc FROM companies WHERE status IN ('吊销', '注销')")}
    finally:
        db.close()


@pytest.mark.parametrize("mode", ["keyed", "ecdh"])
async def test_sum_to_closed_companies_equals_ground_truth(servers, demo_data, key, mode: str) -> None:
    gw, _, truth = await _deploy(servers, demo_data, ("hrss", "samr"))
    async with _client(servers, gw) as c:
        got = await c.intersection_sum(values=SUBSIDIES, value_fields=["amount_fen", "claimed_insured"],
                                       other=CLOSED_COMPANIES, purpose=WHY[0], case_number=WHY[1], mode=mode, key=key)
    expected = truth["subsidies_to_closed_companies"]
    assert got.totals["amount_fen"] == expected["amount_fen"]
    assert (got.cardinality, got.distinct_matches) == (expected["rows"], expected["companies"])
    closed = _closed_usccs(demo_data[0])
    plain = [r for r in _plain_subsidies(demo_data[0]) if r["uscc"] in closed]
    assert got.totals["claimed_insured"] == sum(int(r["claimed_insured"]) for r in plain)
    assert got.values.rows == ROWS and got.values.missing_values == 0


async def test_compare_flags_exactly_the_planted_overclaimers(servers, demo_data, key) -> None:
    gw, adapters, truth = await _deploy(servers, demo_data, ("hrss", "tax"))
    async with _client(servers, gw) as c:
        got = await c.compare(left=SUBSIDIES, left_value="claimed_insured", right=TAX,
                              right_value="insured_employees", purpose=WHY[0], case_number=WHY[1],
                              disclose=["uscc", "company_name"], limit=100, key=key)
    overclaim = truth["overclaim"]
    assert got.pairs == overclaim["compared_rows"]
    assert len(got.flagged) == overclaim["flagged_rows"]
    assert [(f.name, f.form) for f in got.fields] == [("uscc", "masked"), ("company_name", "plaintext")]
    assert len(got.rows) == overclaim["flagged_rows"]
    masked = sorted(u[:6] + "*" * 8 + u[-4:] for u in overclaim["usccs"])
    assert sorted({row[0] for row in got.rows}) == sorted(set(masked))
    served = [d for d in adapters["hrss"].disclosures.disclosures() if d.decision == "served"]
    assert served[-1].action == "query.compare" and served[-1].result_rows == overclaim["flagged_rows"]


async def test_compare_with_weights_and_flags_only(servers, demo_data, key) -> None:
    gw, _, truth = await _deploy(servers, demo_data, ("hrss", "tax"))
    async with _client(servers, gw) as c:
        # claimed > 2 × insured: a subset of the over-claimers; and 1·x > 1·x never flags a tie.
        doubled = await c.compare(left=SUBSIDIES, left_value="claimed_insured", right=TAX,
                                  right_value="insured_employees", purpose=WHY[0], case_number=WHY[1], weights=(1, 2), key=key)
        reverse = await c.compare(left=TAX, left_value="insured_employees", right=SUBSIDIES,
                                  right_value="claimed_insured", purpose=WHY[0], case_number=WHY[1], key=key)
    assert doubled.rows == [] and len(doubled.flagged) <= truth["overclaim"]["flagged_rows"]
    # insured > claimed: every compared pair that is neither a tie nor an over-claim.
    overclaim = truth["overclaim"]
    assert len(reverse.flagged) == overclaim["compared_rows"] - overclaim["tied_rows"] - overclaim["flagged_rows"]


async def test_gateway_receives_only_ciphertexts_it_cannot_read(servers, demo_data, key, monkeypatch) -> None:
    from fedgate.gateway import matching
    from fedgate.protos.fedgate.v1 import adapter_pb2

    received: list[bytes] = []
    original = matching._Session.read

    async def recording_read(self):  # type: ignore[no-untyped-def]
        msg = await original(self)
        received.append(msg.SerializeToString())
        return msg

    monkeypatch.setattr(matching._Session, "read", recording_read)
    gw, _, truth = await _deploy(servers, demo_data, ("hrss", "samr"))
    async with _client(servers, gw) as c:
        got = await c.intersection_sum(values=SUBSIDIES, value_fields=["amount_fen"], other=CLOSED_COMPANIES,
                                       purpose=WHY[0], case_number=WHY[1], key=key)
    n = key.public_key.n
    width = (n * n).bit_length() // 8 + 1
    ciphertexts = []
    for data in received:
        msg = adapter_pb2.MatchOut.FromString(data)
        if msg.WhichOneof("msg") == "own_values":
            blob = msg.own_values.data
            ciphertexts += [int.from_bytes(blob[i:i + width], "big") for i in range(0, len(blob), width)]
    assert len(ciphertexts) == got.values.tokens
    # Not one trivial (unrandomised) encryption 1 + m·n, and no two alike although amounts repeat.
    assert all((c - 1) % n for c in ciphertexts)
    assert len(set(ciphertexts)) == len(ciphertexts)
    # Neither the total nor any amount is in what the gateway logged.
    async with _client(servers, gw, support.OFFICER) as c:
        entries = [e for _, e in await c.search(action="query.sum", limit=5)]
    assert entries and all(str(truth["subsidies_to_closed_companies"]["amount_fen"]) not in e.canonical().decode()
                           for e in entries)
    assert all(dict(e.params).get("paillier_key_sha256") for e in entries)


async def test_bad_sum_and_compare_requests_are_refused_and_audited(servers, demo_data, key) -> None:
    import phe

    from fedgate.protos.fedgate.v1 import query_pb2

    gw, _, _ = await _deploy(servers, demo_data, ("hrss", "samr", "tax"))
    small = phe.generate_paillier_keypair(n_length=1024)[0]
    sum_cases = [
        (b"not a key", ["amount_fen"], "INVALID_ARGUMENT", "does not start with the fedgate Paillier prefix"),
        (b"FGPK1" + small.n.to_bytes(128, "big"), ["amount_fen"], "INVALID_ARGUMENT", "below the 2048-bit floor"),
        (key.public_bytes, ["company_name"], "INVALID_ARGUMENT", "only integer fields"),
        (key.public_bytes, ["paid_on"], "INVALID_ARGUMENT", "only integer fields"),
        (key.public_bytes, [], "INVALID_ARGUMENT", "name 1 to 4"),
    ]
    async with _client(servers, gw) as c:
        for public, fields, code, words in sum_cases:
            vouched = c._vouch(key) if public == key.public_bytes else {}
            request = query_pb2.SumRequest(
                values=query_pb2.MatchSide(dataset="hrss.subsidies", key_field="uscc"), value_fields=fields,
                other=query_pb2.MatchSide(dataset="samr.companies", key_field="uscc", filter=CLOSED),
                mode="keyed", paillier_key=public, purpose=WHY[0], case_number=WHY[1], **vouched)
            with pytest.raises(Exception) as err:
                async for _ in c._query.IntersectionSum(request):
                    pass
            assert err.value.code().name == code and words in err.value.details(), err.value
        with pytest.raises(RemoteCallFailed) as refused:
            await c.compare(left=SUBSIDIES, left_value="claimed_insured", right=TAX, right_value="insured_employees",
                            purpose=WHY[0], case_number=WHY[1], weights=(0, 1), key=key)
        assert refused.value.code == "INVALID_ARGUMENT" and "weights" in refused.value.details
    async with _client(servers, gw, support.OFFICER) as c:
        refusals = [e for _, e in await c.search(action="query.sum", limit=20) if e.decision != "allow"]
        compares = [e for _, e in await c.search(action="query.compare", limit=5) if e.decision != "allow"]
    assert len(refusals) >= len(sum_cases) and compares
    assert all(e.reason and e.status == "INVALID_ARGUMENT" for e in refusals)


VALUES_DECL = """
[[datasets]]
name = "payments"
source = {{ kind = "csv", path = "{path}" }}

[[datasets.fields]]
name = "uscc"
type = "string"
level = "L2"
key = "uscc"

[[datasets.fields]]
name = "amount_fen"
type = "int"
level = "L2"
"""


async def _payments(servers, amounts: list[int | str], others: int) -> tuple[object, object]:
    path = servers.tmp / "payments.csv"
    path.write_text("uscc,amount_fen\n" + "".join(f"{support.uscc(i)},{a}\n" for i, a in enumerate(amounts)))
    gw = await servers.gateway()
    await servers.adapter("hrss", gw, VALUES_DECL.format(path=path))
    db = servers.tmp / "samr.db"
    support.write_companies(f"sqlite:///{db}", n=others)
    await servers.adapter("samr", gw, support.COMPANIES_DECL.format(kind="sqlite", where=f'path = "{db}"'))
    return gw, path


async def test_negative_zero_and_missing_values_sum_exactly(servers, key) -> None:
    amounts: list[int | str] = [(-1) ** i * 37 * i for i in range(150)]
    amounts[3] = 0
    amounts[5] = ""  # missing: left out and counted
    amounts[7] = -(2 ** 62)
    gw, _ = await _payments(servers, amounts, others=120)
    async with _client(servers, gw) as c:
        got = await c.intersection_sum(values=Side("hrss.payments", "uscc"), value_fields=["amount_fen"],
                                       other=Side("samr.companies", "uscc"), purpose=WHY[0], case_number=WHY[1], key=key)
    expected = [a for a in amounts[:120] if a != ""]
    assert got.totals["amount_fen"] == sum(expected)  # type: ignore[arg-type]
    assert (got.cardinality, got.values.missing_values) == (len(expected), 1)


async def test_value_outside_64_bits_is_refused_not_wrapped(servers, key) -> None:
    amounts: list[int | str] = list(range(150))
    amounts[42] = 2 ** 70
    gw, _ = await _payments(servers, amounts, others=120)
    async with _client(servers, gw) as c:
        with pytest.raises(RemoteCallFailed) as err:
            await c.intersection_sum(values=Side("hrss.payments", "uscc"), value_fields=["amount_fen"],
                                     other=Side("samr.companies", "uscc"), purpose=WHY[0], case_number=WHY[1], key=key)
    assert err.value.code == "FAILED_PRECONDITION" and "64-bit" in err.value.details
    assert str(2 ** 70) not in err.value.details
    async with _client(servers, gw, support.OFFICER) as c:
        (_, outcome), *_ = await c.search(action="query.sum", limit=1)
    assert outcome.decision != "allow" and "64-bit" in outcome.reason


async def test_an_empty_side_of_a_sum_is_refused_like_a_side_of_one(servers, key) -> None:
    # Issue 14: an empty set is answered as a small one is (refused), never as an exact zero total.
    gw, _ = await _payments(servers, [5] * 150, others=120)
    async with _client(servers, gw) as c:
        with pytest.raises(RemoteCallFailed) as err:
            await c.intersection_sum(values=Side("hrss.payments", "uscc"), value_fields=["amount_fen"],
                                     other=Side("samr.companies", "uscc", "status = '注销'"), purpose=WHY[0],
                                     case_number=WHY[1], key=key)
    assert err.value.code == "FAILED_PRECONDITION" and "right set has fewer than" in err.value.details


async def test_a_dataset_compared_with_itself_keeps_its_sides_apart(servers, demo_data, key) -> None:
    # Same dataset both sides, different value fields and filters: each side's adapter checks its own.
    gw, _, _ = await _deploy(servers, demo_data, ("hrss",))
    async with _client(servers, gw) as c:
        got = await c.compare(left=Side("hrss.subsidies", "uscc", "claimed_insured >= 10"), left_value="claimed_insured",
                              right=SUBSIDIES, right_value="amount_fen", purpose=WHY[0], case_number=WHY[1],
                              weights=(100_000, 1), disclose=["company_name"], key=key)
    rows = _plain_subsidies(demo_data[0])
    by_key: dict[object, list[int]] = {}
    for r in rows:
        by_key.setdefault(r["uscc"], []).append(int(r["amount_fen"]))
    left = [r for r in rows if int(r["claimed_insured"]) >= 10]
    expected = [100_000 * int(r["claimed_insured"]) > y for r in left for y in by_key[r["uscc"]]]
    assert got.pairs == len(expected) and len(got.flagged) == sum(expected) > 0
    assert got.rows and len(got.rows) <= sum(expected)


async def test_a_non_integer_stored_in_an_int_column_is_refused_and_audited(servers, key) -> None:
    import sqlite3

    db = servers.tmp / "hrss.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE payments (uscc TEXT, amount_fen INTEGER)")
    conn.executemany("INSERT INTO payments VALUES (?, ?)", [(support.uscc(i), i) for i in range(150)])
    conn.commit()
    gw = await servers.gateway()
    await servers.adapter("hrss", gw, VALUES_DECL.replace('kind = "csv", path = "{path}"',
                                                          'kind = "sqlite", path = "{path}", table = "payments"')
                          .format(path=db))
    companies = servers.tmp / "samr.db"
    support.write_companies(f"sqlite:///{companies}", n=120)
    await servers.adapter("samr", gw, support.COMPANIES_DECL.format(kind="sqlite", where=f'path = "{companies}"'))
    # Stored after the adapter checked its source at start (a non-integer then is refused at start):
    # SQLite keeps 12.5 as a float even in an INTEGER column.
    conn.execute("UPDATE payments SET amount_fen = 12.5 WHERE amount_fen = 9")
    conn.commit()
    conn.close()
    async with _client(servers, gw) as c:
        with pytest.raises(RemoteCallFailed) as err:
            await c.intersection_sum(values=Side("hrss.payments", "uscc"), value_fields=["amount_fen"],
                                     other=Side("samr.companies", "uscc"), purpose=WHY[0], case_number=WHY[1], key=key)
    assert err.value.code == "FAILED_PRECONDITION" and "not an integer" in err.value.details
    assert "12.5" not in err.value.details
    async with _client(servers, gw, support.OFFICER) as c:
        (_, outcome), *_ = await c.search(action="query.sum", limit=1)
    assert outcome.decision != "allow" and "not an integer" in outcome.reason


async def test_a_client_that_never_sends_its_flags_times_out_and_nothing_is_disclosed(
        servers, demo_data, key, monkeypatch) -> None:
    import asyncio

    from fedgate.protos.fedgate.v1 import query_pb2

    workdir, departments, _ = demo_data
    gw = await servers.gateway(workdir / "gateway-data", settings="flags_timeout_s = 1")
    adapters = await servers.demo_adapters(gw, workdir, departments, ("hrss", "tax"))
    hold = asyncio.Event()

    async def requests():  # type: ignore[no-untyped-def]
        yield query_pb2.CompareIn(request=request)
        await hold.wait()  # the stream stays open, but no flags ever come

    async with _client(servers, gw) as c:
        request = query_pb2.CompareRequest(
            left=query_pb2.MatchSide(dataset="hrss.subsidies", key_field="uscc"), left_value="claimed_insured",
            right=query_pb2.MatchSide(dataset="tax.insured_employees", key_field="uscc"),
            right_value="insured_employees", left_weight=1, right_weight=1, mode="keyed",
            paillier_key=key.public_bytes, disclose_fields=["company_name"], limit=10, purpose=WHY[0],
            case_number=WHY[1], **c._vouch(key))
        call = c._query.Compare(requests())
        kinds = []
        with pytest.raises(Exception) as err:
            async for event in call:
                kinds.append(event.WhichOneof("event"))
        hold.set()
    assert "result" in kinds and "rows" not in kinds
    assert err.value.code().name == "DEADLINE_EXCEEDED" and "no flagged pairs" in err.value.details()
    assert not [d for d in adapters["hrss"].disclosures.disclosures() if d.decision == "served"]


async def test_values_are_encrypted_only_under_a_key_the_asking_supervisor_signed(servers, demo_data, key,
                                                                                  monkeypatch) -> None:
    from fedgate.core import certified
    from fedgate.core.identity import Identity, Role
    from fedgate.protos.fedgate.v1 import query_pb2

    gw, adapters, _ = await _deploy(servers, demo_data, ("hrss", "samr"))
    # Another supervisor's signature over the same key, as a gateway substituting keys would have to present.
    other = Identity(Role.SUPERVISOR, "dcb", "mallory")
    from fedgate.server import pki

    other_dir = servers.tmp / "other-certs"
    other_dir.mkdir()
    for name in ("ca.pem", "ca.key"):
        (other_dir / name).write_bytes((servers.certs / name).read_bytes())
    pki.init_dir(other_dir, [other])
    from fedgate.core.supervisor_keys import key_statement

    signature, cert = certified.sign(TlsFiles.in_dir(other_dir, other), key_statement(other.spiffe_id, key.public_bytes))
    request = query_pb2.SumRequest(
        values=query_pb2.MatchSide(dataset="hrss.subsidies", key_field="uscc"), value_fields=["amount_fen"],
        other=query_pb2.MatchSide(dataset="samr.companies", key_field="uscc", filter=CLOSED), mode="keyed",
        paillier_key=key.public_bytes, purpose=WHY[0], case_number=WHY[1], paillier_key_signature=signature,
        supervisor_certificate=cert)
    async with _client(servers, gw) as c:
        with pytest.raises(Exception) as err:
            async for _ in c._query.IntersectionSum(request):
                pass
        assert err.value.code().name == "PERMISSION_DENIED" and "the Paillier key" in err.value.details()
        # Defence in depth: had the gateway not checked, the department refuses before encrypting anything.
        from fedgate.gateway import planning as gateway_planning

        from types import SimpleNamespace

        monkeypatch.setattr(gateway_planning, "certified", SimpleNamespace(verify=lambda *args, **kwargs: None))
        with pytest.raises(Exception) as err:
            async for _ in c._query.IntersectionSum(request):
                pass
        assert "department 'hrss' refused" in err.value.details() and "the Paillier key" in err.value.details()
    refused = [d for d in adapters["hrss"].disclosures.disclosures() if d.decision == "refused"]
    assert refused and "the Paillier key" in refused[-1].reason
