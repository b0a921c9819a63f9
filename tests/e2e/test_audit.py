"""The audit log on real servers: every request logged, tampering detected and located."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import support
from fedgate.cli.audit_snapshot import verify_store
from fedgate.client.audit_verify import LogTampered, TrustedState
from fedgate.client.gateway import GatewayClient
from fedgate.crypto.checkpoint import Checkpoint, sign_checkpoint
from fedgate.core.errors import RemoteCallFailed, VerificationError
from fedgate.gateway.config import GatewayConfig
from fedgate.gateway.server import build_gateway
from fedgate.core.identity import GATEWAY, Identity
from fedgate.protos.fedgate.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from fedgate.server.signing_key import read_vkey
from fedgate.server.tls import TlsFiles, secure_channel

ORIGIN = "fedgate.local/audit"


def _client(servers, gw, who: Identity = support.OFFICER) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, who))


async def _populate(servers, tmp_path: Path):
    """A gateway with an adapter, some listings and one denied registration."""
    gw = await servers.gateway(tmp_path / "gw")
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    await servers.adapter("hrss", gw, support.SUBSIDIES_DECL.format(path=csv))
    async with _client(servers, gw, support.SUPERVISOR) as c:
        for _ in range(3):
            await c.list_datasets()
    async with secure_channel(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, Identity.department("hrss")),
                              GATEWAY) as ch:
        with pytest.raises(grpc.aio.AioRpcError, match="PERMISSION_DENIED"):
            await registry_pb2_grpc.RegistryServiceStub(ch).RegisterDatasets(registry_pb2.RegisterDatasetsRequest(
                department="samr", adapter_endpoint="127.0.0.1:1",
                datasets=[common_pb2.DatasetSpec(name="x", fields=[common_pb2.FieldSpec(
                    name="k", type="string", level="L1", key_kind="plain")])]), timeout=5)
    return gw


def _db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "gw" / "audit.db", isolation_level=None)


async def test_every_request_is_logged_and_a_denial_has_its_reason(servers, tmp_path: Path) -> None:
    gw = await _populate(servers, tmp_path)
    async with _client(servers, gw) as c:
        entries = [e for _, e in await c.search(limit=100)]
        denied = [e for _, e in await c.search(decision="deny")]
    actions = [e.action for e in reversed(entries)]
    assert actions == ["registry.register", "registry.list", "registry.list", "registry.list", "registry.register"]
    (deny,) = denied
    assert deny.subject == "spiffe://fedgate/dept/hrss"
    assert deny.status == "PERMISSION_DENIED"
    assert "cannot register datasets for 'samr'" in deny.reason
    assert deny.datasets == ("samr.x",)
    assert deny.rule == "invariant: a department certificate registers its own department's datasets only"
    listing = entries[1]
    assert listing.subject == support.SUPERVISOR.spiffe_id and listing.role == "supervisor"
    assert dict(listing.result_sizes) == {"datasets": 1}


async def test_audit_service_is_for_officers_only_and_refusals_are_logged(servers, tmp_path: Path) -> None:
    gw = await servers.gateway()
    async with _client(servers, gw, support.SUPERVISOR) as c:
        with pytest.raises(RemoteCallFailed) as err:
            await c.search(limit=5)
    assert err.value.code == "PERMISSION_DENIED"
    async with _client(servers, gw) as c:
        (_, entry), = await c.search(decision="deny")
    assert entry.action == "audit.search" and entry.subject == support.SUPERVISOR.spiffe_id


async def test_untouched_log_verifies_and_proofs_check(servers, tmp_path: Path) -> None:
    gw = await _populate(servers, tmp_path)
    vkey = read_vkey(tmp_path / "gw" / "log-signing.vkey")
    async with _client(servers, gw) as c:
        report = await c.verify_log(vkey)
        assert report.size >= 5 and report.checkpoints_checked == report.size
        again = await c.verify_log(vkey, TrustedState(report.latest_note, report.leaf_hashes))
        assert again.size > report.size  # the first verify call was itself logged
        proof = await c.inclusion_proof(2)
    from fedgate.client.audit_verify import check_inclusion
    cp = check_inclusion(2, proof.body, list(proof.hashes), proof.checkpoint, vkey)
    assert cp.size == proof.size


def _edit(db: sqlite3.Connection, index: int) -> None:
    (body,) = db.execute("SELECT body FROM fedgate_audit_entries WHERE idx = ?", (index,)).fetchone()
    entry = json.loads(body)
    entry["subject"] = "spiffe://fedgate/supervisor/dcb/mallory"
    new = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    db.execute("UPDATE fedgate_audit_entries SET body = ? WHERE idx = ?", (new, index))


def _delete(db: sqlite3.Connection, index: int) -> None:
    db.execute("DELETE FROM fedgate_audit_entries WHERE idx = ?", (index,))


def _swap(db: sqlite3.Connection, index: int) -> None:
    a, b = index, index + 2
    (ba,) = db.execute("SELECT body FROM fedgate_audit_entries WHERE idx = ?", (a,)).fetchone()
    (bb,) = db.execute("SELECT body FROM fedgate_audit_entries WHERE idx = ?", (b,)).fetchone()
    db.execute("UPDATE fedgate_audit_entries SET body = ? WHERE idx = ?", (bb, a))
    db.execute("UPDATE fedgate_audit_entries SET body = ? WHERE idx = ?", (ba, b))


def _truncate(db: sqlite3.Connection, index: int) -> None:
    # A careful operator removes the tail with its checkpoints and tree nodes, leaving a
    # self-consistent shorter log that the running gateway simply extends.
    db.execute("DELETE FROM fedgate_audit_entries WHERE idx >= ?", (index,))
    db.execute("DELETE FROM fedgate_audit_checkpoints WHERE size > ?", (index,))
    db.execute("DELETE FROM fedgate_audit_nodes WHERE ((idx + 1) << level) > ?", (index,))


def _resign(db: sqlite3.Connection, index: int) -> None:
    """Rewrite entry `index` and re-sign every checkpoint with a new key: a replaced signing key."""
    from fedgate.crypto.merkle import RFC6962_SHA256, CompactRange

    _edit(db, index)
    key = Ed25519PrivateKey.generate()
    tree = CompactRange(RFC6962_SHA256)
    for idx, body in db.execute("SELECT idx, body FROM fedgate_audit_entries ORDER BY idx").fetchall():
        tree.append(RFC6962_SHA256.hash_leaf(body))
        note = sign_checkpoint(Checkpoint(ORIGIN, idx + 1, tree.root()), ORIGIN, key)
        db.execute("UPDATE fedgate_audit_checkpoints SET note = ? WHERE size = ?", (note, idx + 1))


@pytest.mark.parametrize("tamper, index, words", [
    (_edit, 2, "do not hash to the root signed at size 3"),
    (_delete, 1, "expected entry 1, found entry 2"),
    (_swap, 1, "do not hash to the root signed at size 2"),
    (_truncate, 3, None),
    (_resign, 0, "does not verify with the pinned key"),
], ids=["edit-field", "delete", "swap", "truncate-tail", "replace-signing-key"])
async def test_tampering_is_detected_and_located(servers, tmp_path: Path, tamper, index: int,
                                                 words: str | None) -> None:
    gw = await _populate(servers, tmp_path)
    vkey = read_vkey(tmp_path / "gw" / "log-signing.vkey")
    async with _client(servers, gw) as c:
        report = await c.verify_log(vkey)
    trusted = TrustedState(report.latest_note, report.leaf_hashes)

    db = _db(tmp_path)
    tamper(db, index)
    db.close()

    async with _client(servers, gw) as c:
        if words is None:
            # A tail removed together with its checkpoints is a consistent shorter log:
            # only what the officer verified before can show it is gone.
            await c.verify_log(vkey)
        else:
            with pytest.raises(LogTampered) as err:
                await c.verify_log(vkey)
            assert err.value.index == index, str(err.value)
            assert words in str(err.value)
        with pytest.raises(LogTampered) as err:
            await c.verify_log(vkey, trusted)
    assert err.value.index == index, str(err.value)
    # The offline check on the database file reaches the same verdict.
    with pytest.raises(LogTampered) as offline:
        verify_store(str(tmp_path / "gw" / "audit.db"), vkey, trusted)
    assert offline.value.index == index


async def test_truncated_tail_of_a_stopped_gateway(servers, tmp_path: Path) -> None:
    gw = await _populate(servers, tmp_path)
    vkey = read_vkey(tmp_path / "gw" / "log-signing.vkey")
    async with _client(servers, gw) as c:
        report = await c.verify_log(vkey)
    await servers.stop_gateway(gw)
    db = _db(tmp_path)
    _truncate(db, 3)
    db.close()
    audit_db = str(tmp_path / "gw" / "audit.db")
    assert verify_store(audit_db, vkey).size == 3  # consistent on its own...
    with pytest.raises(LogTampered) as err:        # ...but not with what was verified before
        verify_store(audit_db, vkey, TrustedState(report.latest_note, report.leaf_hashes))
    assert err.value.index == 3
    assert f"log truncated: it has 3 entries but a checkpoint for {report.size} was verified before" in str(err.value)


async def test_rewrite_with_the_real_key_is_caught_by_the_trusted_state(servers, tmp_path: Path) -> None:
    """Even an operator holding the signing key cannot rewrite what an officer verified before."""
    gw = await _populate(servers, tmp_path)
    key_path = tmp_path / "gw" / "log-signing.key"
    vkey = read_vkey(key_path.with_suffix(".vkey"))
    async with _client(servers, gw) as c:
        report = await c.verify_log(vkey)
    await servers.stop_gateway(gw)

    from cryptography.hazmat.primitives import serialization
    from fedgate.crypto.merkle import RFC6962_SHA256, CompactRange
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    db = _db(tmp_path)
    _edit(db, 1)
    tree = CompactRange(RFC6962_SHA256)
    for idx, body in db.execute("SELECT idx, body FROM fedgate_audit_entries ORDER BY idx").fetchall():
        tree.append(RFC6962_SHA256.hash_leaf(body))
        db.execute("UPDATE fedgate_audit_checkpoints SET note = ? WHERE size = ?",
                   (sign_checkpoint(Checkpoint(ORIGIN, idx + 1, tree.root()), ORIGIN, key), idx + 1))
    db.close()
    with pytest.raises(LogTampered) as err:
        verify_store(str(tmp_path / "gw" / "audit.db"), vkey, TrustedState(report.latest_note, report.leaf_hashes))
    assert err.value.index == 1
    assert "differs from the one verified earlier" in str(err.value)


async def test_gateway_refuses_to_start_with_a_replaced_key(servers, tmp_path: Path) -> None:
    gw = await _populate(servers, tmp_path)
    await servers.stop_gateway(gw)
    key_path = tmp_path / "gw" / "log-signing.key"
    key_path.unlink()
    cfg = tmp_path / "gateway.toml"
    with pytest.raises(VerificationError):
        await build_gateway(GatewayConfig.load(cfg))
