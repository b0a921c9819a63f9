"""Log before access: queries reach adapters only with a ticket the adapter verifies itself."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

import support
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.client.gateway import GatewayClient
from fedgate.crypto.checkpoint import Checkpoint, sign_checkpoint
from fedgate.crypto.merkle import RFC6962_SHA256, CompactRange, consistency_proof, inclusion_proof
from fedgate.crypto.ticket import Ticket, TicketClaims, sign_claims
from fedgate.core.errors import RemoteCallFailed
from fedgate.gateway.adapter_links import ticket_to_proto
from fedgate.gateway.tickets import TicketIssuer
from fedgate.core.identity import GATEWAY, Identity
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.server.tls import TlsFiles, secure_channel

ORIGIN = "fedgate.local/audit"


async def _setup(servers, tmp_path: Path):
    gw = await servers.gateway(tmp_path / "gw")
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    hrss = await servers.adapter("hrss", gw, support.SUBSIDIES_DECL.format(path=csv))
    return gw, hrss


def _key(tmp_path: Path):
    return serialization.load_pem_private_key((tmp_path / "gw" / "log-signing.key").read_bytes(), password=None)


async def _count(servers, gw, **kw) -> tuple[int, int]:
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        return await c.count_rows(**{"dataset": "hrss.subsidies", "purpose": "核查稳岗补贴发放",
                                     "case_number": "DC-2026-017", **kw})


async def test_count_is_logged_before_access_and_served_with_a_ticket(servers, tmp_path: Path) -> None:
    gw, hrss = await _setup(servers, tmp_path)
    rows, index = await _count(servers, gw)
    assert rows == 20
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER)) as c:
        found = await c.search(case_number="DC-2026-017")
    (outcome_index, outcome), (intent_index, intent) = found
    assert intent_index == index < outcome_index
    assert (intent.status, intent.decision, intent.action) == ("STARTED", "allow", "query.count")
    assert (outcome.status, dict(outcome.result_sizes)) == ("OK", {"rows": 20})
    assert intent.query_id == outcome.query_id != ""
    assert intent.purpose == "核查稳岗补贴发放" and intent.datasets == ("hrss.subsidies",)
    served = hrss.disclosures.disclosures()
    assert [(d.decision, d.query_id, d.entry_index, d.result_rows) for d in served] == [
        ("admitted", intent.query_id, index, None), ("served", intent.query_id, index, 20)]
    # A second query proves consistency from the checkpoint the adapter accepted first.
    assert (await _count(servers, gw))[0] == 20
    assert [d.decision for d in hrss.disclosures.disclosures()] == ["admitted", "served"] * 2


@pytest.mark.parametrize("kw, words", [
    ({"purpose": ""}, "a purpose"),
    ({"case_number": ""}, "a case number"),
    ({"dataset": "hrss"}, "department.dataset"),
])
async def test_query_without_purpose_or_case_is_refused_and_audited(servers, tmp_path: Path, kw, words) -> None:
    gw, hrss = await _setup(servers, tmp_path)
    with pytest.raises(RemoteCallFailed) as err:
        await _count(servers, gw, **kw)
    assert err.value.code == "INVALID_ARGUMENT" and words in err.value.details
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER)) as c:
        (_, entry), = await c.search(action="query.count")
    assert entry.decision == "error" and words in entry.reason
    assert hrss.disclosures.disclosures() == []  # the adapter was never asked


async def test_unknown_dataset_is_not_found(servers, tmp_path: Path) -> None:
    gw, _ = await _setup(servers, tmp_path)
    with pytest.raises(RemoteCallFailed) as err:
        await _count(servers, gw, dataset="hrss.nope")
    assert err.value.code == "NOT_FOUND"


async def _logged_entry(gw, dataset: str = "hrss.subsidies") -> tuple[int, bytes, str]:
    query_id = secrets.token_hex(16)
    entry = AuditEntry(utc_now(), "spiffe://fedgate/supervisor/dcb/alice", "supervisor", "query.count",
                       "/fedgate.v1.QueryService/CountRows", "allow", "STARTED", datasets=(dataset,),
                       purpose="p", case_number="C-1", query_id=query_id)
    appended = await gw.audit_log.append(entry)
    return appended.index, entry.canonical(), query_id


async def _send(servers, hrss, ticket: Ticket, dataset: str = "subsidies") -> int:
    async with secure_channel(hrss.endpoint, TlsFiles.in_dir(servers.certs, GATEWAY),
                              Identity.department("hrss")) as ch:
        reply = await adapter_pb2_grpc.AdapterServiceStub(ch).CountRows(
            adapter_pb2.AdapterCountRequest(ticket=ticket_to_proto(ticket), dataset=dataset), timeout=10)
    return reply.rows


def _flip(text: str) -> str:
    """Change one base64 character of the signature line."""
    head, sig = text.rstrip("\n").rsplit(" ", 1)
    i = len(sig) // 2
    return f"{head} {sig[:i]}{'A' if sig[i] != 'A' else 'B'}{sig[i + 1:]}\n"


async def _issue(gw, tmp_path, index, entry, query_id, base: int = 0, audience: str = "hrss") -> Ticket:
    return await TicketIssuer(gw.audit_log, _key(tmp_path)).issue(audience, query_id, index, entry, base)


async def test_valid_hand_made_ticket_is_served(servers, tmp_path: Path) -> None:
    gw, hrss = await _setup(servers, tmp_path)
    index, entry, qid = await _logged_entry(gw)
    assert await _send(servers, hrss, await _issue(gw, tmp_path, index, entry, qid)) == 20


async def _refused(servers, hrss, ticket: Ticket, words: str, dataset: str = "subsidies") -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _send(servers, hrss, ticket, dataset)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value.details()
    assert words in err.value.details()
    last = hrss.disclosures.disclosures()[-1]
    assert last.decision == "refused" and words in last.reason


async def test_adapter_refuses_a_ticket_with_a_bad_signature(servers, tmp_path: Path) -> None:
    gw, hrss = await _setup(servers, tmp_path)
    index, entry, qid = await _logged_entry(gw)
    ticket = await _issue(gw, tmp_path, index, entry, qid)
    await _refused(servers, hrss, dataclasses.replace(ticket, claims_note=_flip(ticket.claims_note)),
                   "signature does not verify")


async def test_adapter_refuses_an_expired_ticket(servers, tmp_path: Path) -> None:
    gw, hrss = await _setup(servers, tmp_path)
    index, entry, qid = await _logged_entry(gw)
    ticket = await _issue(gw, tmp_path, index, entry, qid)
    claims = TicketClaims("hrss", qid, index, hashlib.sha256(entry).digest(), int(time.time()) - 5,
                          int(time.time()) - 65)
    await _refused(servers, hrss, dataclasses.replace(ticket, claims_note=sign_claims(claims, ORIGIN, _key(tmp_path))),
                   "ticket expired")


async def test_adapter_refuses_a_ticket_whose_inclusion_proof_does_not_match(servers, tmp_path: Path) -> None:
    gw, hrss = await _setup(servers, tmp_path)
    index, entry, qid = await _logged_entry(gw)
    ticket = await _issue(gw, tmp_path, index, entry, qid)
    bad = list(ticket.inclusion)
    bad[0] = bytes(32)
    await _refused(servers, hrss, dataclasses.replace(ticket, inclusion=tuple(bad)), "not proven to be in the log")


async def test_adapter_refuses_a_ticket_for_another_department_or_dataset(servers, tmp_path: Path) -> None:
    gw, hrss = await _setup(servers, tmp_path)
    index, entry, qid = await _logged_entry(gw)
    await _refused(servers, hrss, await _issue(gw, tmp_path, index, entry, qid, audience="samr"),
                   "ticket is for department 'samr'")
    index, entry, qid = await _logged_entry(gw, dataset="hrss.pensions")
    await _refused(servers, hrss, await _issue(gw, tmp_path, index, entry, qid),
                   "does not name dataset 'hrss.subsidies'")


async def test_adapter_refuses_a_checkpoint_inconsistent_with_one_it_saw(servers, tmp_path: Path) -> None:
    """The gateway (holding the real key) forks its log: the adapter notices the rewritten history."""
    gw, hrss = await _setup(servers, tmp_path)
    index, entry, qid = await _logged_entry(gw)
    accepted = await _issue(gw, tmp_path, index, entry, qid)
    assert await _send(servers, hrss, accepted) == 20
    seen = index + 1

    # A forked history: the same number of entries, but different ones, plus our new entry.
    forged = [RFC6962_SHA256.hash_leaf(b"rewritten %d" % i) for i in range(seen)]
    index2, entry2, qid2 = seen, *(await _logged_entry(gw))[1:]
    forged.append(RFC6962_SHA256.hash_leaf(entry2))
    tree = CompactRange(RFC6962_SHA256)
    tree.extend(forged)
    note = sign_checkpoint(Checkpoint(ORIGIN, len(forged), tree.root()), ORIGIN, _key(tmp_path))
    claims = TicketClaims("hrss", qid2, index2, hashlib.sha256(entry2).digest(), int(time.time()) + 60,
                          int(time.time()))
    ticket = Ticket(sign_claims(claims, ORIGIN, _key(tmp_path)), entry2, note,
                    tuple(inclusion_proof(forged, index2, len(forged))), seen,
                    tuple(consistency_proof(forged, seen, len(forged))))
    await _refused(servers, hrss, ticket, "history was rewritten")
