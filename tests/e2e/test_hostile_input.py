"""Hostile input against real servers: refused with a clear status, audited when it reached a service,
and nothing changed afterwards (registry, department data, audit log, normal queries).

One deployment per test: a gateway with its own policy copy (min_set_size 10, max_match_rows 50),
samr's companies in SQLite (40 rows) and hrss's subsidies (CSV, with invalid identifiers in the
data) and pensions (CSV, an L4 resident-ID key).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

import support
from fedgate.adapters.server import Adapter
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.classification import policies_dir
from fedgate.client.gateway import GatewayClient, Side
from fedgate.crypto.ids import USCC_ALPHABET
from fedgate.core.errors import RemoteCallFailed
from fedgate.gateway.config import GatewayConfig
from fedgate.gateway.server import Gateway, build_gateway
from fedgate.core.identity import GATEWAY, Identity
from fedgate.protos.fedgate.v1 import query_pb2
from fedgate.server.signing_key import read_vkey
from fedgate.server.tls import TlsFiles, secure_channel

WHY = {"purpose": "核查稳岗补贴", "case_number": "DC-2026-666"}
COMPANIES = 40
COUNT_ROWS = "/fedgate.v1.QueryService/CountRows"
MAX_MATCH_ROWS = 50


def _wrong_check_char(uscc: str) -> str:
    return uscc[:-1] + next(c for c in USCC_ALPHABET if c != uscc[-1])


def _full_width_spaced(uscc: str) -> str:
    return " ".join(chr(ord(c) + 0xFEE0) for c in uscc.lower())


# Subsidies 1..20 with valid codes, plus one more spelling of company 3 (matches) and two
# identifiers that must be counted as invalid, never matched: a wrong check character and an
# injection attempt sitting in the data itself.
SUBSIDIES_CSV = support.SUBSIDIES_CSV + (
    f"{_full_width_spaced(support.uscc(3))},公司3乙,300\n"
    f"{_wrong_check_char(support.uscc(5))},公司5乙,500\n"
    "'; DROP TABLE companies; --,公司X,700\n")


@dataclass
class Deployment:
    gw: Gateway
    samr: Adapter
    hrss: Adapter
    certs: Path
    db: Path
    csvs: tuple[Path, ...]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gw.port}"

    def client(self, who: Identity = support.SUPERVISOR) -> GatewayClient:
        return GatewayClient(self.address, TlsFiles.in_dir(self.certs, who))


async def _deploy(servers, tmp_path: Path) -> Deployment:
    pol = tmp_path / "policies"
    shutil.copytree(policies_dir(), pol, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    support.exact_aggregates(pol)  # these tests read the sides' exact counts, which noisy answers withhold
    (pol / "safeguards.toml").write_text(f"min_set_size = 10\nmax_match_rows = {MAX_MATCH_ROWS}\n")
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(support.gateway_toml(tmp_path / "gw", servers.certs).replace(
        "[tls]", f'policy_dir = "{pol}"\n\n[tls]'))
    gw = await build_gateway(GatewayConfig.load(cfg))
    servers.gateways.append(gw)
    db = tmp_path / "samr.db"
    support.write_companies(f"sqlite:///{db}", n=COMPANIES)
    samr = await servers.adapter("samr", gw, support.COMPANIES_DECL.format(kind="sqlite", where=f'path = "{db}"'))
    subsidies, pensions = tmp_path / "subsidies.csv", tmp_path / "pensions.csv"
    subsidies.write_text(SUBSIDIES_CSV, encoding="utf-8")
    pensions.write_text(support.pensions_csv(150), encoding="utf-8")
    hrss = await servers.adapter("hrss", gw, support.SUBSIDIES_DECL.format(path=subsidies)
                                 + support.PENSIONS_DECL.format(path=pensions))
    return Deployment(gw, samr, hrss, servers.certs, db, (subsidies, pensions))


@dataclass
class Snapshot:
    listing: list[str]
    tables: list[str]
    companies: list[tuple[str, str]]
    csv_digests: list[str]
    served: dict[str, int]


async def _snapshot(dep: Deployment) -> Snapshot:
    async with dep.client() as c:
        listing = sorted(f"{d.decl.qualified_name}:{d.decl.row_count}" for d in await c.list_datasets())
    con = sqlite3.connect(dep.db)
    try:
        tables = sorted(name for (name,) in con.execute("SELECT name FROM sqlite_master"))
        companies = list(con.execute("SELECT uscc, status FROM companies ORDER BY uscc"))
    finally:
        con.close()
    served = {name: sum(d.decision == "served" for d in a.disclosures.disclosures())
              for name, a in (("samr", dep.samr), ("hrss", dep.hrss))}
    return Snapshot(listing, tables, companies,
                    [hashlib.sha256(p.read_bytes()).hexdigest() for p in dep.csvs], served)


async def _entries(dep: Deployment, **criteria: str | int) -> list[AuditEntry]:
    """Audit entries, newest first, as a security officer reads them."""
    async with dep.client(support.OFFICER) as c:
        return [e for _, e in await c.search(limit=10_000, **criteria)]


async def _log_verifies_and_queries_still_work(dep: Deployment) -> None:
    async with dep.client(support.OFFICER) as officer:
        report = await officer.verify_log(read_vkey(dep.gw.vkey_path))
    assert report.size > 0
    async with dep.client() as c:
        assert (await c.count_rows("samr.companies", **WHY))[0] == COMPANIES
        assert (await c.count_rows("samr.companies", filter="status = '存续'", **WHY))[0] == COMPANIES


def _assert_no_echo(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, (secret[:40], text[:300])


# ---------------------------------------------------------------------------
# Oversized messages
# ---------------------------------------------------------------------------


async def test_oversized_messages_are_refused_and_the_gateway_keeps_serving(servers, tmp_path: Path) -> None:
    dep = await _deploy(servers, tmp_path)
    before = await _snapshot(dep)
    counts_before = len(await _entries(dep, action="query.count"))
    huge = "毒" * (2 * 2**20)  # 6 MB of UTF-8, over gRPC's 4 MB receive limit
    async with dep.client() as c:
        for request in ({"filter": f"status = '{huge}'"}, {"purpose": huge}, {"case_number": huge}):
            with pytest.raises(RemoteCallFailed) as err:
                await c.count_rows("samr.companies", **{**WHY, **request})
            assert err.value.code == "RESOURCE_EXHAUSTED", err.value
            assert "larger than max" in err.value.details
            _assert_no_echo(err.value.details, "毒毒")
    # Refused by the transport: the service never saw them, so there is nothing to audit.
    assert len(await _entries(dep, action="query.count")) == counts_before

    # Just under the transport limit, the service refuses them itself, by its own bounds.
    big = "毒" * (2**20)  # 3 MB
    async with dep.client() as c:
        with pytest.raises(RemoteCallFailed) as err:
            await c.count_rows("samr.companies", **WHY, filter=f"status = '{big}'")
        assert err.value.code == "INVALID_ARGUMENT" and "longer than 4096 characters" in err.value.details
        _assert_no_echo(err.value.details, "毒毒")
        with pytest.raises(RemoteCallFailed) as err:
            await c.count_rows("samr.companies", purpose=big, case_number=WHY["case_number"])
        assert err.value.code == "INVALID_ARGUMENT" and "purpose (1–256 characters)" in err.value.details
        _assert_no_echo(err.value.details, "毒毒")
    refused = [e for e in await _entries(dep, action="query.count") if e.status == "INVALID_ARGUMENT"]
    assert len(refused) == 2 and "longer than 4096 characters" in refused[1].reason
    _assert_no_echo(refused[1].canonical().decode(), "毒毒")  # the filter's value is not in the log
    assert not any(e.status == "STARTED" for e in await _entries(dep, action="query.count"))
    # A 1 MB dataset name is refused too (see test_an_oversized_dataset_name_is_refused_with_a_bounded_message).
    async with dep.client() as c:
        with pytest.raises(RemoteCallFailed):
            await c.count_rows("samr." + "x" * 2**20, **WHY)

    assert await _snapshot(dep) == before
    await _log_verifies_and_queries_still_work(dep)


async def test_refused_oversized_fields_are_not_stored_whole_in_the_audit_log(servers, tmp_path: Path) -> None:
    dep = await _deploy(servers, tmp_path)
    big = "x" * (3 * 2**20)
    async with dep.client() as c:
        for request in ({"purpose": big, "case_number": "DC-1"}, {"purpose": "p", "case_number": big}):
            with pytest.raises(RemoteCallFailed) as err:
                await c.count_rows("samr.companies", **request)
            assert err.value.code == "INVALID_ARGUMENT"
    refused = await _entries(dep, action="query.count")
    assert len(refused) == 2
    for entry in refused:
        assert len(entry.canonical()) < 64 * 1024, f"audit entry of {len(entry.canonical())} bytes"


async def test_an_oversized_dataset_name_is_refused_with_a_bounded_message(servers, tmp_path: Path) -> None:
    dep = await _deploy(servers, tmp_path)
    async with dep.client() as c:
        # No dataset name is this long, so both are refused as invalid, without echoing the name.
        for name, code in (("x" * 2**20, "INVALID_ARGUMENT"), ("samr." + "x" * 2**20, "INVALID_ARGUMENT")):
            with pytest.raises(RemoteCallFailed) as err:
                await c.count_rows(name, **WHY)
            assert err.value.code == code, err.value.code
            assert len(err.value.details) < 1000
    for entry in await _entries(dep, action="query.count"):
        assert len(entry.canonical()) < 64 * 1024, f"audit entry of {len(entry.canonical())} bytes"


# ---------------------------------------------------------------------------
# Malformed protobuf and non-UTF-8 strings
# ---------------------------------------------------------------------------


def _valid_request(purpose: str = WHY["purpose"], filter: str = "status = '存续'") -> bytes:
    return query_pb2.CountRowsRequest(dataset="samr.companies", purpose=purpose, case_number=WHY["case_number"],
                                      filter=filter).SerializeToString()


def _non_utf8(marker: str, **fields: str) -> bytes:
    """A valid request whose `marker` text is patched, in place, to bytes that are not UTF-8."""
    data = _valid_request(**fields)
    raw = marker.encode()
    assert data.count(raw) == 1
    return data.replace(raw, b"\xc3\x28" + b"\xff" + raw[3:])


async def test_malformed_protobuf_and_non_utf8_strings_are_refused_cleanly(servers, tmp_path: Path) -> None:
    dep = await _deploy(servers, tmp_path)
    before = await _snapshot(dep)
    counts_before = [e for e in await _entries(dep) if e.method == COUNT_ROWS]
    valid = _valid_request()
    undecodable = {
        "garbage": b"\xff\xff\xff\xff",
        "truncated": valid[:-3],
        "length-beyond-end": b"\x0a\xff\xff\xff\xff\x0f" + b"a" * 16,
        "field-zero": b"\x00\x00",
        "non-utf8-purpose": _non_utf8("PURPOSE-MARK", purpose="PURPOSE-MARK"),
        "non-utf8-filter": _non_utf8("FILTER-MARK", filter="status = 'FILTER-MARK'"),
    }
    refused: dict[str, tuple[grpc.StatusCode, str]] = {}
    async with secure_channel(dep.address, TlsFiles.in_dir(dep.certs, support.SUPERVISOR), GATEWAY) as ch:
        count_rows = ch.unary_unary(COUNT_ROWS, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        for name, payload in undecodable.items():
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await count_rows(payload, timeout=10)
            refused[name] = (err.value.code(), err.value.details() or "")
        # Field 1 (a string) sent as fixed32 is an unknown field to protobuf: the request decodes
        # as an empty one, reaches the service and is refused there, like any request without purpose.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await count_rows(b"\x0d\x00\x00\x00\x00", timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "a purpose (1–256 characters) is required" in (err.value.details() or "")
        # Not a crash: the same connection serves the next well-formed request.
        reply = query_pb2.CountRowsResponse.FromString(await count_rows(valid, timeout=10))
        assert reply.rows == COMPANIES
    # A clean refusal of the request itself, never a dead server or a dropped connection,
    # and the bytes sent are not echoed back.
    for name, (code, details) in refused.items():
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (name, code, details)
        assert len(details) < 300, (name, details)
        _assert_no_echo(details, "PURPOSE-MARK", "FILTER-MARK", "MARK", "\ufffd", "\\x")
    # Undecodable requests never reach the service, but each refusal is audited: newest first, the
    # valid query (STARTED, then OK), the empty request's refusal, and one refusal per undecodable one.
    after = [e for e in await _entries(dep) if e.method == COUNT_ROWS]
    assert [e.status for e in after] == ["OK", "STARTED", *["INVALID_ARGUMENT"] * (1 + len(undecodable))], \
        [e.status for e in after]
    assert len(after) == len(counts_before) + 3 + len(undecodable)
    assert all("not a valid message for CountRows" in e.reason for e in after[3:])
    snapshot = await _snapshot(dep)
    assert (snapshot.listing, snapshot.tables, snapshot.companies, snapshot.csv_digests) == \
        (before.listing, before.tables, before.companies, before.csv_digests)
    await _log_verifies_and_queries_still_work(dep)


async def test_undecodable_requests_get_invalid_argument_and_are_audited(servers, tmp_path: Path) -> None:
    dep = await _deploy(servers, tmp_path)
    async with secure_channel(dep.address, TlsFiles.in_dir(dep.certs, support.SUPERVISOR), GATEWAY) as ch:
        count_rows = ch.unary_unary(COUNT_ROWS, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        for payload in (b"\xff\xff\xff\xff", _non_utf8("PURPOSE-MARK", purpose="PURPOSE-MARK")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await count_rows(payload, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
            assert "class" not in (err.value.details() or "")
    refused = [e for e in await _entries(dep) if e.method == COUNT_ROWS]
    assert [e.status for e in refused] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]


# ---------------------------------------------------------------------------
# Hostile filters
# ---------------------------------------------------------------------------

RID = support.pensions_csv(1).splitlines()[1].split(",")[0]
# (dataset, filter, status, words in the message, strings that must appear neither in the
# message nor in the audit entry)
HOSTILE_FILTERS = [
    ("samr.companies", "'; DROP TABLE companies; --", "INVALID_ARGUMENT", "unterminated string at position 1",
     ["DROP"]),
    ("samr.companies", "status = '存续'; DROP TABLE companies", "INVALID_ARGUMENT", "unexpected character ';'",
     ["存续", "DROP"]),
    ("samr.companies", "1=1 OR status = 'x'", "INVALID_ARGUMENT", "expected a field name", ["1=1"]),
    ("samr.companies", "status = '秘密' OR 1=1", "INVALID_ARGUMENT", "position 18", ["秘密", "1=1"]),
    ("samr.companies", "status = '秘密' UNION SELECT uscc FROM companies", "INVALID_ARGUMENT",
     "expected 'and', 'or' or the end", ["秘密", "UNION", "SELECT"]),
    ("samr.companies", "status = '秘密\x00'", "INVALID_ARGUMENT", "control or invisible formatting character",
     ["秘密"]),
    ("samr.companies", "status = '秘密", "INVALID_ARGUMENT", "unterminated string", ["秘密"]),
    ("samr.companies", "(" * 5000 + "status = '秘密'" + ")" * 5000, "INVALID_ARGUMENT",
     "longer than 4096 characters", ["秘密", "(((("]),
    ("samr.companies", "(" * 2000 + "status = '秘密'" + ")" * 2000, "INVALID_ARGUMENT",
     "nesting deeper than 32 levels", ["秘密", "(((("]),
    ("samr.companies", "status = '" + "秘" * 2**20 + "'", "INVALID_ARGUMENT", "longer than 4096 characters",
     ["秘秘"]),
    ("hrss.subsidies", "amount_fen = 27182818" + "2" * 9992, "INVALID_ARGUMENT", "longer than 4096 characters",
     ["27182818", "2222"]),
    ("hrss.subsidies", "amount_fen = 27182818" + "2" * 3992, "INVALID_ARGUMENT",
     "integer literal longer than 18 digits", ["27182818", "2222"]),
    ("hrss.subsidies", "amount_fen = '秘密'", "INVALID_ARGUMENT", "is an integer", ["秘密"]),
    ("samr.companies", "owner_secret = '秘密'", "INVALID_ARGUMENT", "unknown field 'owner_secret'", ["秘密"]),
    ("hrss.pensions", f"resident_id = '{RID}'", "PERMISSION_DENIED", "filter hrss.pensions.resident_id",
     [RID, RID[:10]]),
    ("hrss.pensions", f"district = '西湖区' or resident_id in ('{RID}')", "PERMISSION_DENIED",
     "filter hrss.pensions.resident_id", [RID, RID[:10]]),
]


async def test_hostile_filters_are_refused_audited_and_change_nothing(servers, tmp_path: Path) -> None:
    dep = await _deploy(servers, tmp_path)
    before = await _snapshot(dep)
    started = sum(e.status == "STARTED" for e in await _entries(dep))
    async with dep.client() as c, dep.client(support.OFFICER) as officer:
        for dataset, text, code, words, secrets in HOSTILE_FILTERS:
            case = f"{dataset}: {text[:50]!r}"
            with pytest.raises(RemoteCallFailed) as err:
                await c.count_rows(dataset, filter=text, **WHY)
            assert err.value.code == code, (case, err.value)
            assert words in err.value.details, (case, err.value.details)
            assert len(err.value.details) < 300, case
            _assert_no_echo(err.value.details, *secrets)
            (_, entry), = await officer.search(action="query.count", limit=1)
            assert (entry.status, entry.decision) == (code, "deny" if code == "PERMISSION_DENIED" else "error"), case
            assert entry.reason == err.value.details and entry.datasets == (dataset,), case
            _assert_no_echo(entry.canonical().decode(), *secrets)
        # An injection attempt written as a proper literal is just a value: it selects nothing.
        rows, index = await c.count_rows("samr.companies", filter="status = 'x'' OR ''1''=''1'", **WHY)
        assert rows == 0
        (_, entry), = await officer.search(action="query.count", limit=1)
        assert entry.status == "OK" and dict(entry.params)["filter.samr.companies"] == "status = ?"
        _assert_no_echo(entry.canonical().decode(), "OR '1'")
    # No refused filter got as far as a department: one STARTED entry, for the harmless literal.
    assert sum(e.status == "STARTED" for e in await _entries(dep)) == started + 1
    after = await _snapshot(dep)
    assert after.tables == before.tables == ["companies"] and len(after.companies) == COMPANIES
    assert after.served == {**before.served, "samr": before.served["samr"] + 1}
    assert (after.listing, after.companies, after.csv_digests) == (before.listing, before.companies,
                                                                   before.csv_digests)
    await _log_verifies_and_queries_still_work(dep)


# ---------------------------------------------------------------------------
# Streams beyond their bound; invalid identifiers in the data
# ---------------------------------------------------------------------------


async def test_match_streams_beyond_max_match_rows_are_refused(servers, tmp_path: Path) -> None:
    dep = await _deploy(servers, tmp_path)
    before = await _snapshot(dep)
    pensions = Side("hrss.pensions", "resident_id")  # 150 rows, three times max_match_rows
    async with dep.client() as c:
        for mode in ("keyed", "ecdh"):
            with pytest.raises(RemoteCallFailed) as err:
                await c.match(left=pensions, right=pensions, **WHY, mode=mode)
            assert err.value.code == "FAILED_PRECONDITION", (mode, err.value)
            assert f"more than {MAX_MATCH_ROWS:,} rows (safeguard max_match_rows)" in err.value.details, (mode, err.value)
            _assert_no_echo(err.value.details, RID, RID[:10])
            outcome, intent = (await _entries(dep, action="query.match"))[:2]
            assert intent.status == "STARTED" and outcome.query_id == intent.query_id, mode
            assert outcome.status == "FAILED_PRECONDITION" and outcome.reason == err.value.details, mode
            assert dict(outcome.params)["mode"] == mode

        # Both departments are free again, and invalid identifiers in the data are counted,
        # never matched: the wrong check character and the injection text in subsidies.csv.
        got = await c.match(left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc"), **WHY,
                            mode="keyed")
    assert (got.left.rows, got.left.invalid_identifiers, got.left.tokens) == (23, 2, 21)
    assert (got.right.rows, got.right.invalid_identifiers) == (COMPANIES, 0)
    assert (got.cardinality, got.distinct_matches) == (21, 20)  # company 3 matches in both spellings
    outcome = (await _entries(dep, action="query.match"))[0]
    assert outcome.status == "OK" and dict(outcome.result_sizes)["left_invalid"] == 2
    after = await _snapshot(dep)
    assert (after.listing, after.companies, after.csv_digests) == (before.listing, before.companies,
                                                                   before.csv_digests)
    await _log_verifies_and_queries_still_work(dep)
