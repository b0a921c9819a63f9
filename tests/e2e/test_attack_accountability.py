"""Accountability against a probing supervisor, on real servers (issue 14, point 5).

A supervisor singles out a person by name in count filters. The audit log must
let a security officer see exactly who was targeted, and nobody else: the
entry shows only the redacted filter, the exact one is sealed to the officers'
X25519 key, and no key or file the gateway holds opens it. And one event is
described the same way by the gateway and by every department, even when the
client hangs up on a comparison's results.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sys
from pathlib import Path

import grpc
import nacl.bindings
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

import support
from fedgate.client.gateway import GatewayClient, IndexedEntry, Side
from fedgate.core.errors import NotFound, RemoteCallFailed
from fedgate.core.identity import GATEWAY, Identity
from fedgate.core.officer_seal import CannotOpen, OpenKey
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.demo.datagen import generate
from fedgate.protos.fedgate.v1 import query_pb2, query_pb2_grpc
from fedgate.query.audit_params import decode
from fedgate.server.signing_key import read_vkey
from fedgate.server.tls import TlsFiles, secure_channel

WHY = ("核查养老金冒领", "DC-2026-914")
TARGET = "张伟0"  # a pensioner in support.pensions_csv
# Probes as a supervisor would send them; the canonical text the department runs is what an officer reads.
PROBES = {
    f"name = '{TARGET}'": "name = ?",
    f"not name = '{TARGET}'": "not name = ?",
    f"name = '{TARGET}' and monthly_amount_fen >= 150000": "name = ? and monthly_amount_fen >= ?",
}


async def _fedgate(who: Identity, certs: Path, gw_port: int, *args: str) -> tuple[int, str]:
    """Run the `fedgate` CLI as `who` without blocking the event loop the servers run in; (exit code, output)."""
    files = TlsFiles.in_dir(certs, who)
    env = {**os.environ, "FEDGATE_GATEWAY": f"127.0.0.1:{gw_port}", "FEDGATE_CA": str(files.ca),
           "FEDGATE_CERT": str(files.cert), "FEDGATE_KEY": str(files.key), "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "fedgate", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def _client(servers, gw, who: Identity) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, who), timeout=120)


async def _probed(servers, tmp_path: Path, settings: str):
    """A gateway (with `settings`) and hrss.pensions; the supervisor's probes sent; their entries, by probe."""
    gw = await servers.gateway(tmp_path / "gw", settings=settings)
    csv = tmp_path / "pensions.csv"
    csv.write_text(support.pensions_csv(), encoding="utf-8")
    await servers.adapter("hrss", gw, support.PENSIONS_DECL.format(path=csv))
    async with _client(servers, gw, support.SUPERVISOR) as c:
        for probe in PROBES:
            try:
                await c.count_rows("hrss.pensions", *WHY, filter=probe)
            except RemoteCallFailed:
                pass  # refused or suppressed: the probe is logged all the same
    async with _client(servers, gw, support.OFFICER) as officer:
        counts = await officer.search(action="query.count", limit=100)
    started: list[IndexedEntry] = sorted(item for item in counts if item.entry.status == "STARTED")
    assert len(started) == len(PROBES), [e.status for _, e in counts]
    return gw, dict(zip(PROBES, started, strict=True))


def _key_material(path: Path) -> list[bytes]:
    """Every 32-byte X25519 private key one could make of a key file the gateway holds."""
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:  # a public key: try its bytes as if they were private
        public = serialization.load_pem_public_key(data)
        return [public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [key.private_numbers().private_value.to_bytes(32, "big")]
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    seed = key.private_bytes_raw()
    public = key.public_key().public_bytes_raw()
    # The seed itself, and the Curve25519 key libsodium derives from an Ed25519 key.
    return [seed, nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(seed + public)]


async def test_an_officer_reads_exactly_who_was_probed_and_the_gateway_cannot(servers, tmp_path: Path) -> None:
    seal_pub, seal_key = servers.certs / "officer-seal.pub", servers.certs / "officer-seal.key"
    gw, entries = await _probed(servers, tmp_path, f'officer_seal_key = "{seal_pub}"')
    vkey = read_vkey(gw.vkey_path)

    # 1. The log shows the shape of each probe, never its values, anywhere in any entry.
    async with _client(servers, gw, support.OFFICER) as officer:
        every = await officer.search(limit=500)
    dumped = json.dumps([e.to_dict() for _, e in every], ensure_ascii=False)
    assert TARGET not in dumped and "150000" not in dumped
    for probe, (_, entry) in entries.items():
        logged = decode(dict(entry.params)).logged_side("hrss.pensions").filter
        assert logged is not None and logged.redacted == PROBES[probe] and logged.sealed

    # 2. The officer opens each entry with the officers' key and reads exactly the filter the department ran.
    async with _client(servers, gw, support.OFFICER) as officer:
        for probe, (index, _) in entries.items():
            opened = await officer.open_entry(index, vkey, OpenKey.load(seal_key))
            assert [(f.dataset, f.redacted, f.text) for f in opened.filters] == [
                ("hrss.pensions", PROBES[probe], probe)]
    first = next(iter(PROBES))
    code, out = await _fedgate(support.OFFICER, servers.certs, gw.port, "audit", "open", str(entries[first][0]),
                               "--vkey", str(gw.vkey_path), "--seal-key", str(seal_key), "--json")
    assert code == 0, out
    assert json.loads(out)["filters"] == [{"dataset": "hrss.pensions", "role": "", "redacted": "name = ?",
                                           "filter": first}]

    # 3. No key the gateway holds opens it: its TLS key, its log-signing key, the officers' public key it is
    #    configured with, nor any X25519 key made of their bytes.
    sealed = decode(dict(entries[first][1].params)).logged_side("hrss.pensions").filter
    assert sealed is not None
    held = [servers.certs / "gateway.key", tmp_path / "gw" / "log-signing.key", seal_pub]
    for path in held:
        for raw in _key_material(path):
            with pytest.raises(CannotOpen):
                OpenKey(raw).open(base64.b64decode(sealed.sealed))
        code, out = await _fedgate(support.OFFICER, servers.certs, gw.port, "audit", "open",
                                   str(entries[first][0]), "--vkey", str(gw.vkey_path), "--seal-key", str(path))
        assert code == 1 and "error" in out and TARGET not in out, out
    # Nor anything the gateway wrote: its stores, spans and config hold no trace of the literal.
    written = [p for p in (tmp_path / "gw").rglob("*") if p.is_file()] + [tmp_path / "gateway.toml"]
    assert any(p.name == "audit.db" for p in written)
    for path in written:
        assert TARGET.encode() not in path.read_bytes(), path

    # 4. A supervisor may neither read the entry nor open it.
    async with _client(servers, gw, support.SUPERVISOR) as supervisor:
        with pytest.raises(RemoteCallFailed, match="PERMISSION_DENIED"):
            await supervisor.inclusion_proof(entries[first][0])
        with pytest.raises(RemoteCallFailed, match="PERMISSION_DENIED"):
            await supervisor.search(limit=10)
    code, out = await _fedgate(support.SUPERVISOR, servers.certs, gw.port, "audit", "open", str(entries[first][0]),
                               "--vkey", str(gw.vkey_path), "--seal-key", str(seal_key))
    assert code == 1 and "PERMISSION_DENIED" in out and TARGET not in out, out


async def test_a_gateway_without_the_officer_key_serves_and_says_so_once(servers, tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fedgate.gateway.config")
    gw, entries = await _probed(servers, tmp_path, "")
    warnings = [r for r in caplog.records if "officer_seal_key" in r.getMessage()]
    assert len(warnings) == 1 and TARGET not in caplog.text
    index, entry = entries[next(iter(PROBES))]
    assert not any(k.startswith("sealed_filter.") for k, _ in entry.params)
    async with _client(servers, gw, support.OFFICER) as officer:
        with pytest.raises(NotFound, match="without officer_seal_key, redacted only"):
            await officer.open_entry(index, read_vkey(gw.vkey_path), OpenKey.load(servers.certs / "officer-seal.key"))


# --- one event, one description: the gateway's OK and every department's `served` ---

SUBSIDIES = Side("hrss.subsidies", "uscc")
TAX = Side("tax.insured_employees", "uscc")


async def test_a_comparison_the_client_hangs_up_on_is_served_at_every_department(servers, tmp_path: Path) -> None:
    # Enough pairs that the flags leave in several batches: the client hangs up after the first.
    departments = generate(tmp_path, rows=3000, seed=13)
    gw = await servers.gateway(tmp_path / "gateway-data")
    adapters = await servers.demo_adapters(gw, tmp_path, departments, ("hrss", "tax"))
    key = SupervisorKey.generate()
    tls = TlsFiles.in_dir(servers.certs, support.SUPERVISOR)
    async with _client(servers, gw, support.SUPERVISOR) as c:
        read_to_end = await c.compare(left=SUBSIDIES, left_value="claimed_insured", right=TAX,
                                      right_value="insured_employees", purpose=WHY[0], case_number=WHY[1], key=key)
        request = query_pb2.CompareRequest(
            left=SUBSIDIES.to_proto(), left_value="claimed_insured", right=TAX.to_proto(),
            right_value="insured_employees", left_weight=1, right_weight=1, paillier_key=key.public_bytes,
            purpose=WHY[0], case_number=WHY[1], **c._vouch(key))
    async with secure_channel(f"127.0.0.1:{gw.port}", tls, GATEWAY) as channel:
        call = query_pb2_grpc.QueryServiceStub(channel).Compare(iter([query_pb2.CompareIn(request=request)]),
                                                                timeout=120)
        async for event in call:
            if event.WhichOneof("event") == "flags":
                call.cancel()  # it has its first results: it hangs up
                break
        assert call.cancelled() or await call.code() is grpc.StatusCode.CANCELLED
    await asyncio.sleep(1)  # the gateway notices the hang-up; the departments' records are written by now
    async with _client(servers, gw, support.OFFICER) as officer:
        compares = [e for _, e in await officer.search(action="query.compare", limit=20)]
    finals = {e.query_id: e.status for e in compares if e.status != "STARTED"}
    assert len(finals) == 2 and set(finals.values()) == {"OK"}, finals
    assert compares[-1].query_id != compares[0].query_id
    for code, adapter in adapters.items():
        records: dict[str, list[str]] = {}
        for d in adapter.disclosures.disclosures():
            records.setdefault(d.query_id, []).append(d.decision)
        assert {q: records.get(q) for q in finals} == {q: ["admitted", "served"] for q in finals}, (code, records)
    assert read_to_end.pairs > 0
