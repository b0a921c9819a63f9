"""Certificates as a deployment needs them, end to end: a department's own key signed by the CA, revoked
without restarting anything, and a renewed certificate served by a running server."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import sqlite3
import ssl
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from typer.testing import CliRunner

import support
from fedgate.adapters.server import build_adapter
from fedgate.cli.commands import app
from fedgate.client.gateway import GatewayClient
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import RemoteCallFailed
from fedgate.core.identity import GATEWAY, Identity
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.server import pki, revocation
from fedgate.server.tls import TlsFiles, secure_channel

HRSS, SAMR = Identity.department("hrss"), Identity.department("samr")
runner = CliRunner()


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _subsidies(tmp: Path) -> str:
    path = tmp / "subsidies.csv"
    path.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    return support.SUBSIDIES_DECL.format(path=path)


def _companies(tmp: Path) -> str:
    db = tmp / "samr.db"
    support.write_companies(f"sqlite:///{db}", n=15)
    return support.COMPANIES_DECL.format(kind="sqlite", where=f'path = "{db}"')


def _served_rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "disclosures.db") as db:
        return int(db.execute("SELECT count(*) FROM disclosures").fetchone()[0])


async def test_a_revoked_department_is_refused_without_a_restart(own_ca_servers, tmp_path: Path) -> None:
    s = own_ca_servers
    certs = s.certs
    # hrss makes its own key; only the request travels to the CA operator, who signs it.
    out = tmp_path / "hrss-machine"
    _cli("certs", "request", "dept/hrss", "--out", str(out))
    _cli("certs", "sign", str(out / "dept-hrss.csr"), "--ca-dir", str(certs), "--out", str(certs / "dept-hrss.pem"))
    shutil.copy(out / "dept-hrss.key", certs / "dept-hrss.key")  # the test's stand-in for the hrss machine
    gw = await s.gateway()
    hrss = await s.adapter("hrss", gw, _subsidies(tmp_path))
    await s.adapter("samr", gw, _companies(tmp_path))
    address = f"127.0.0.1:{gw.port}"

    async with GatewayClient(address, TlsFiles.in_dir(certs, HRSS)) as dept:
        assert [d.decl.qualified_name for d in await dept.list_datasets()] == ["hrss.subsidies"]
    async with GatewayClient(address, TlsFiles.in_dir(certs, support.SUPERVISOR)) as sup:
        assert (await sup.count_rows("hrss.subsidies", "核查", "C-1")).rows == 20
    served = _served_rows(hrss.config.data_dir)
    assert served >= 1

    # The CA revokes it and rewrites crl.pem: nothing is restarted.
    said = _cli("certs", "revoke", "--cert", str(certs / "dept-hrss.pem"), "--ca-dir", str(certs),
                "--reason", "keyCompromise")
    serial = pki.certificate_status((certs / "dept-hrss.pem").read_bytes()).serial
    assert f"revoked serial {serial:x}" in said.replace("\n", "")
    await asyncio.sleep(revocation.RECHECK_S + 0.2)

    # The department's next request (its own view of the registry) is refused, and gets nothing.
    with pytest.raises(RemoteCallFailed) as refused:
        async with GatewayClient(address, TlsFiles.in_dir(certs, HRSS)) as dept:
            await dept.list_datasets()
    assert refused.value.code == "UNAUTHENTICATED"
    assert f"your certificate serial {serial:x} was revoked by the CA on" in refused.value.details
    assert "ask the CA operator for a new one" in refused.value.details

    async with GatewayClient(address, TlsFiles.in_dir(certs, support.OFFICER)) as officer:
        entries = [AuditEntry.from_canonical(e.body) async for e in officer.entries()]
        # A supervisor's query that needs hrss does not reach it; samr's still do.
        async with GatewayClient(address, TlsFiles.in_dir(certs, support.SUPERVISOR)) as sup:
            with pytest.raises(RemoteCallFailed) as not_sent:
                await sup.count_rows("hrss.subsidies", "核查", "C-2")
            assert (await sup.count_rows("samr.companies", "核查", "C-3")).rows == 15
    assert not_sent.value.code == "FAILED_PRECONDITION"
    assert "department 'hrss' is sent no requests" in not_sent.value.details
    assert _served_rows(hrss.config.data_dir) == served
    # The refusal is in the audit log like any other refused request.
    refusals = [e for e in entries if e.subject == HRSS.spiffe_id and e.status == "UNAUTHENTICATED"]
    assert refusals and "was revoked by the CA" in refusals[-1].reason and refusals[-1].decision != "allow"

    # An adapter refuses a revoked caller too: hrss's certificate at samr's adapter.
    samr_endpoint = s.adapters[1].endpoint
    async with secure_channel(samr_endpoint, TlsFiles.in_dir(certs, HRSS), SAMR) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as at_adapter:
            await adapter_pb2_grpc.AdapterServiceStub(channel).Describe(adapter_pb2.DescribeRequest(), timeout=5)
    assert at_adapter.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "was revoked by the CA" in (at_adapter.value.details() or "")

    # hrss gets a new certificate; its new adapter takes over even though the revoked one still answers.
    again = tmp_path / "hrss-again"
    _cli("certs", "request", "dept/hrss", "--out", str(again))
    _cli("certs", "sign", str(again / "dept-hrss.csr"), "--ca-dir", str(certs), "--out", str(certs / "hrss2.pem"))
    shutil.copy(again / "dept-hrss.key", certs / "hrss2.key")
    config = dataclasses.replace(s.adapter_config("hrss", gw, _subsidies(tmp_path), cert_stem="hrss2"),
                                 data_dir=tmp_path / "hrss2-data")
    s.adapters.append(await build_adapter(config))
    async with GatewayClient(address, TlsFiles.in_dir(certs, support.SUPERVISOR)) as sup:
        assert (await sup.count_rows("hrss.subsidies", "核查", "C-4")).rows == 20
    assert _served_rows(hrss.config.data_dir) == served  # the new adapter answered, not the revoked one


def _served_serial(port: int, certs: Path, server: Identity = GATEWAY) -> int:
    """The serial of the certificate the server on `port` presents to a new connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(certs / "ca.pem")
    own = TlsFiles.in_dir(certs, support.SUPERVISOR)
    context.load_cert_chain(own.cert, own.key)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname=server.dns_name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_a_running_gateway_serves_its_renewed_certificate(own_ca_servers, tmp_path: Path) -> None:
    s = own_ca_servers
    certs = s.certs
    gw = await s.gateway()
    files = TlsFiles.in_dir(certs, GATEWAY)
    before = await asyncio.to_thread(_served_serial, gw.port, certs)
    assert before == pki.certificate_status(files.cert.read_bytes()).serial

    renewal = tmp_path / "renewal"
    _cli("certs", "renew", "--cert", str(files.cert), "--key", str(files.key), "--out", str(renewal))
    _cli("certs", "sign", str(renewal / "gateway.csr"), "--ca-dir", str(certs))
    new_serial = pki.certificate_status((renewal / "gateway.pem").read_bytes()).serial
    # Installed as an operator would, key first: in between, the old certificate is still served.
    shutil.copy(renewal / "gateway.key", files.key)
    assert await asyncio.to_thread(_served_serial, gw.port, certs) == before
    shutil.copy(renewal / "gateway.pem", files.cert)

    assert await asyncio.to_thread(_served_serial, gw.port, certs) == new_serial != before
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(certs, support.SUPERVISOR)) as sup:
        assert await sup.list_datasets() == []
    status = _cli("certs", "status", str(files.cert), "--ca-dir", str(certs))
    assert f"{new_serial:x}"[:8] in status


async def test_a_renewed_adapter_registers_again_so_revoking_its_old_certificate_stops_nothing(
        own_ca_servers, tmp_path: Path) -> None:
    s = own_ca_servers
    certs = s.certs
    gw = await s.gateway()
    config = dataclasses.replace(s.adapter_config("samr", gw, _companies(tmp_path)), heartbeat_s=1)
    samr = await build_adapter(config)
    s.adapters.append(samr)
    files = TlsFiles.in_dir(certs, SAMR)
    old = pki.certificate_status(files.cert.read_bytes()).serial
    port = int(samr.endpoint.rsplit(":", 1)[1])

    made, _ = pki.renewal_request(files.cert, files.key, tmp_path / "renewal")
    signed = pki.sign_request(certs, made.csr.read_bytes())
    shutil.copy(made.key, files.key)
    files.cert.write_bytes(signed.pem)
    assert await asyncio.to_thread(_served_serial, port, certs, SAMR) == signed.serial

    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(certs, support.OFFICER)) as officer:
        for _ in range(100):  # the next heartbeat registers again, with the new certificate
            registrations = [e for e in await officer.search(action="registry.register")
                             if e.entry.subject == SAMR.spiffe_id and e.entry.status == "OK"]
            if len(registrations) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(registrations) == 2
    pki.revoke(certs, old, "superseded")
    await asyncio.sleep(revocation.RECHECK_S + 0.2)
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(certs, support.SUPERVISOR)) as sup:
        assert (await sup.count_rows("samr.companies", "核查", "C-1")).rows == 15


async def test_an_adapter_refuses_a_gateway_whose_certificate_is_revoked(own_ca_servers, tmp_path: Path) -> None:
    s = own_ca_servers
    gw = await s.gateway()
    samr = await s.adapter("samr", gw, _companies(tmp_path))
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(s.certs, support.SUPERVISOR)) as sup:
        assert (await sup.count_rows("samr.companies", "核查", "C-1")).rows == 15
        served = _served_rows(samr.config.data_dir)
        pki.revoke(s.certs, pki.certificate_status((s.certs / "gateway.pem").read_bytes()).serial)
        await asyncio.sleep(revocation.RECHECK_S + 0.2)
        with pytest.raises(RemoteCallFailed) as refused:
            await sup.count_rows("samr.companies", "核查", "C-2")
    assert "department 'samr' refuses the gateway: the gateway's certificate was revoked" in refused.value.details
    assert "was revoked by the CA" in refused.value.details
    assert _served_rows(samr.config.data_dir) == served
