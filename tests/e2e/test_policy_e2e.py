"""Graded classification and Casbin policy through real servers: gateway decides, adapter decides again."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

import support
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.core.classification import policies_dir
from fedgate.client.gateway import FewerThan, GatewayClient
from fedgate.core.errors import RemoteCallFailed
from fedgate.gateway.config import GatewayConfig
from fedgate.gateway.server import build_gateway
from fedgate.gateway.tickets import TicketIssuer
from fedgate.gateway.adapter_links import ticket_to_proto
from fedgate.core.identity import GATEWAY, Identity
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.server.tls import TlsFiles, secure_channel

WHY = {"purpose": "核查冒领养老金", "case_number": "DC-2026-042"}


async def _setup(servers, tmp_path: Path, policy_text: str | None = None, watch: int = 0, safeguards: str | None = None):
    pol = tmp_path / "policies"
    shutil.copytree(policies_dir(), pol, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    if safeguards:
        (pol / "safeguards.toml").write_text(safeguards)
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(support.gateway_toml(tmp_path / "gw", servers.certs).replace(
        "[tls]", f'policy_dir = "{pol}"\npolicy_watch_s = {watch}\n\n[tls]'))
    gw = await build_gateway(GatewayConfig.load(cfg))
    servers.gateways.append(gw)
    csv = tmp_path / "pensions.csv"
    csv.write_text(support.pensions_csv(150), encoding="utf-8")
    hrss = await servers.adapter("hrss", gw, support.PENSIONS_DECL.format(path=csv))
    return gw, hrss, pol


def _as(servers, gw, who=support.SUPERVISOR) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, who))


async def _last_entry(servers, gw, **criteria) -> AuditEntry:
    async with _as(servers, gw, support.OFFICER) as c:
        return (await c.search(limit=1, **criteria))[0][1]


async def test_l3_masked_l2_plain_l4_refused(servers, tmp_path: Path) -> None:
    # 100 of the 150 rows are selected: a minimum of 50 lets the 50 left out pass the check both ways.
    gw, hrss, _ = await _setup(servers, tmp_path, safeguards="min_set_size = 50\n")
    async with _as(servers, gw) as c:
        got = await c.disclose("hrss.pensions", ["name", "district"], filter="district = '西湖区'", limit=5, **WHY)
        assert [(f.name, f.level, f.form) for f in got.fields] == [("name", "L3", "masked"),
                                                                    ("district", "L2", "plaintext")]
        assert got.matched_rows == 100 and len(got.rows) == 5
        for name, district in got.rows:
            assert name.startswith("张") and set(name[1:]) == {"*"}  # 张***: masked by the department
            assert district == "西湖区"
        with pytest.raises(RemoteCallFailed) as err:
            await c.disclose("hrss.pensions", ["resident_id"], **WHY)
    assert err.value.code == "PERMISSION_DENIED"
    assert "hrss.pensions.resident_id (level L4)" in err.value.details and "count, sum or flag" in err.value.details
    entry = await _last_entry(servers, gw, decision="deny")
    assert entry.action == "query.disclose" and "hrss.pensions.resident_id" in entry.reason
    served = [d for d in hrss.disclosures.disclosures() if d.decision == "served"]
    assert [d.result_rows for d in served] == [5]


async def test_edited_policy_takes_effect_after_reload_without_restart(servers, tmp_path: Path) -> None:
    gw, _, pol = await _setup(servers, tmp_path)
    async with _as(servers, gw) as c:
        before = await c.disclose("hrss.pensions", ["name"], limit=1, **WHY)
        assert before.fields[0].form == "masked"
        # The governance office withdraws masked L3 disclosure from supervisors of agency dcb...
        path = pol / "policy.csv"
        path.write_text(path.read_text().replace("p, supervisor, *, *, disclose.masked, L3\n", ""))
        async with _as(servers, gw, support.SUPERVISOR) as sup:
            with pytest.raises(RemoteCallFailed) as err:
                await sup.reload_policy()
            assert err.value.code == "PERMISSION_DENIED"  # reloading is for officers
        async with _as(servers, gw, support.OFFICER) as officer:
            rules, digest = await officer.reload_policy()
        with pytest.raises(RemoteCallFailed) as err:
            await c.disclose("hrss.pensions", ["name"], limit=1, **WHY)
        assert err.value.code == "PERMISSION_DENIED"
    reload = await _last_entry(servers, gw, action="policy.reload")
    assert reload.subject == support.OFFICER.spiffe_id and reload.decision == "allow"
    assert dict(reload.result_sizes) == {"rules": rules}


async def test_policy_file_change_is_picked_up_and_audited(servers, tmp_path: Path) -> None:
    gw, _, pol = await _setup(servers, tmp_path, watch=1)
    path = pol / "policy.csv"
    # A rule granting plaintext L3 is capped by the L3 ceiling (masked): nothing changes for the caller.
    path.write_text(path.read_text() + "p, supervisor, dcb, hrss.pensions.name, disclose.plain, L3\n")
    for _ in range(50):
        await asyncio.sleep(0.1)
        if gw.policy.decide_for(support.SUPERVISOR, "hrss.pensions.name", "disclose.plain", "L3").allowed:
            break
    else:
        pytest.fail("the policy file change was not picked up")
    async with _as(servers, gw) as c:
        got = await c.disclose("hrss.pensions", ["name"], limit=1, **WHY)
    assert got.fields[0].form == "masked"
    entry = await _last_entry(servers, gw, action="policy.reload")
    assert entry.subject == GATEWAY.spiffe_id and entry.method == "(policy file change)"
    assert entry.decision == "allow"
    # A broken edit is audited as an error and the previous rules stay in force.
    path.write_text(path.read_text() + "p, supervisor, *, *, fly, L1\n")
    for _ in range(50):
        await asyncio.sleep(0.1)
        entry = await _last_entry(servers, gw, action="policy.reload")
        if entry.decision == "error":
            break
    assert "unknown action 'fly'" in entry.reason
    assert gw.policy.decide_for(support.SUPERVISOR, "hrss.pensions.name", "disclose.masked", "L3").allowed


async def test_small_filtered_set_is_refused_and_audited(servers, tmp_path: Path) -> None:
    gw, hrss, _ = await _setup(servers, tmp_path)
    async with _as(servers, gw) as c:
        with pytest.raises(RemoteCallFailed) as err:
            await c.disclose("hrss.pensions", ["district"], filter="district = '上城区'", **WHY)
    assert err.value.code == "FAILED_PRECONDITION"
    assert "fewer than 100 rows" in err.value.details and "min_set_size" in err.value.details
    entry = await _last_entry(servers, gw, action="query.disclose")
    assert entry.decision == "deny" and "min_set_size" in entry.reason
    assert dict(entry.params)["filter.hrss.pensions"] == "district = ?"  # the value itself is not in the log
    assert hrss.disclosures.disclosures()[-1].decision == "refused"


async def test_small_counts_are_suppressed_and_l4_fields_cannot_filter(servers, tmp_path: Path) -> None:
    gw, _, _ = await _setup(servers, tmp_path)
    async with _as(servers, gw) as c:
        # Issue 14: a filter leaving out fewer than k rows (here none of the 150) is refused both ways.
        with pytest.raises(RemoteCallFailed) as err:
            await c.count_rows("hrss.pensions", filter="monthly_amount_fen >= 150000", **WHY)
        assert err.value.code == "FAILED_PRECONDITION" and "leaves out fewer than 5 rows" in err.value.details
        # L3 field: k = 5; below it the count is only "fewer than 5", for 0 rows as for 4.
        assert (await c.count_rows("hrss.pensions", filter="monthly_amount_fen < 150300", **WHY))[0] == FewerThan(5)
        assert (await c.count_rows("hrss.pensions", filter="monthly_amount_fen < 0", **WHY))[0] == FewerThan(5)
        rid = support.pensions_csv(1).splitlines()[1].split(",")[0]
        with pytest.raises(RemoteCallFailed) as err:
            await c.count_rows("hrss.pensions", filter=f"resident_id = '{rid}'", **WHY)
        assert err.value.code == "PERMISSION_DENIED" and "filter hrss.pensions.resident_id" in err.value.details
        assert rid not in err.value.details
        with pytest.raises(RemoteCallFailed) as err:
            await c.count_rows("hrss.pensions", filter="district = '西湖区' and (", **WHY)
        assert err.value.code == "INVALID_ARGUMENT" and "position" in err.value.details
    entry = await _last_entry(servers, gw, action="query.count")
    assert rid not in entry.canonical().decode()


async def test_daily_quota(servers, tmp_path: Path) -> None:
    quota = "min_set_size = 100\n[quotas.supervisor]\nqueries_per_day = 2\ndisclosed_rows_per_day = 3\n"
    gw, _, _ = await _setup(servers, tmp_path, safeguards=quota)
    async with _as(servers, gw) as c:
        got = await c.disclose("hrss.pensions", ["district"], limit=10, **WHY)
        assert len(got.rows) == 3  # capped by the remaining row allowance
        await c.count_rows("hrss.pensions", **WHY)
        with pytest.raises(RemoteCallFailed) as err:
            await c.count_rows("hrss.pensions", **WHY)
    assert err.value.code == "RESOURCE_EXHAUSTED" and "quotas.supervisor.queries_per_day" in err.value.details
    entry = await _last_entry(servers, gw, decision="deny")
    assert "queries_per_day" in entry.reason


def _key(tmp_path: Path):
    return serialization.load_pem_private_key((tmp_path / "gw" / "log-signing.key").read_bytes(), password=None)


async def _signed_disclosure(gw, tmp_path: Path, field: str, level: str, form: str):
    """A request the gateway signed and logged, asking for more than the department allows."""
    query_id = secrets.token_hex(16)
    entry = AuditEntry(utc_now(), support.SUPERVISOR.spiffe_id, "supervisor", "query.disclose",
                       "/fedgate.v1.QueryService/Disclose", "allow", "STARTED", datasets=("hrss.pensions",),
                       fields=(f"hrss.pensions.{field}",), purpose="p", case_number="C-1", query_id=query_id,
                       params=((f"form.hrss.pensions.{field}", form), (f"level.hrss.pensions.{field}", level),
                               ("min_set_size", "100"), ("limit", "5")))
    appended = await gw.audit_log.append(entry)
    ticket = await TicketIssuer(gw.audit_log, _key(tmp_path)).issue("hrss", query_id, appended.index,
                                                                     entry.canonical(), 0)
    return adapter_pb2.AdapterDiscloseRequest(
        ticket=ticket_to_proto(ticket), dataset="pensions", min_set_size=100, limit=5,
        fields=[adapter_pb2.FieldRequest(name=field, level=level, form=form)])


@pytest.mark.parametrize("field, level, form, words", [
    ("resident_id", "L4", "plaintext", "at most as aggregate, not plaintext"),
    ("name", "L3", "plaintext", "at most as masked, not plaintext"),
    ("name", "L2", "plaintext", "is L3 here, not L2"),
], ids=["l4-plaintext", "l3-plaintext", "level-understated"])
async def test_adapter_refuses_more_than_its_declarations_allow_even_if_signed(
        servers, tmp_path: Path, field: str, level: str, form: str, words: str) -> None:
    gw, hrss, _ = await _setup(servers, tmp_path)
    request = await _signed_disclosure(gw, tmp_path, field, level, form)
    async with secure_channel(hrss.endpoint, TlsFiles.in_dir(servers.certs, GATEWAY),
                              Identity.department("hrss")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await adapter_pb2_grpc.AdapterServiceStub(ch).Disclose(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert words in err.value.details()
    last = hrss.disclosures.disclosures()[-1]
    assert last.decision == "refused" and words in last.reason
