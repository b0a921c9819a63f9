"""Foundation, end to end: real gateway and adapter servers on loopback with mTLS."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

import support
from fedgate.server import pki
from fedgate.client.gateway import GatewayClient
from fedgate.core.errors import RemoteCallFailed
from fedgate.core.identity import GATEWAY, Identity
from fedgate.protos.fedgate.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from fedgate.server.tls import TlsFiles, secure_channel


def subsidies(tmp: Path) -> str:
    path = tmp / "subsidies.csv"
    path.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    return support.SUBSIDIES_DECL.format(path=path)


def companies_sqlite(tmp: Path) -> str:
    db = tmp / "samr.db"
    support.write_companies(f"sqlite:///{db}", n=15)
    return support.COMPANIES_DECL.format(kind="sqlite", where=f'path = "{db}"')


async def list_as(gw_port: int, certs: Path, who: Identity) -> list[str]:
    async with GatewayClient(f"127.0.0.1:{gw_port}", TlsFiles.in_dir(certs, who)) as client:
        return [f"{d.decl.qualified_name}:{d.decl.row_count}" for d in await client.list_datasets()]


async def test_register_list_and_survive_restart(servers, tmp_path: Path) -> None:
    data_dir = tmp_path / "gw-data"
    gw = await servers.gateway(data_dir)
    await servers.adapter("hrss", gw, subsidies(tmp_path))
    await servers.adapter("samr", gw, companies_sqlite(tmp_path))

    listed = await list_as(gw.port, servers.certs, support.SUPERVISOR)
    assert listed == ["hrss.subsidies:20", "samr.companies:15"]

    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        (sub,) = [d for d in await c.list_datasets("hrss")]
    assert [(f.name, f.level, f.key) for f in sub.decl.fields] == [
        ("uscc", "L3", "uscc"), ("company_name", "L2", None), ("amount_fen", "L3", None)]
    assert sub.department_display_name == "hrss"

    # A department sees only its own datasets.
    assert await list_as(gw.port, servers.certs, Identity.department("samr")) == ["samr.companies:15"]

    await servers.stop_gateway(gw)
    gw2 = await servers.gateway(data_dir)
    assert await list_as(gw2.port, servers.certs, support.OFFICER) == listed


async def test_reregistration_replaces_the_department_set(servers, tmp_path: Path) -> None:
    gw = await servers.gateway()
    await servers.adapter("samr", gw, companies_sqlite(tmp_path) + subsidies(tmp_path))
    assert len(await list_as(gw.port, servers.certs, support.SUPERVISOR)) == 2
    await servers.adapters.pop().stop(0)
    await servers.adapter("samr", gw, companies_sqlite(tmp_path))
    assert await list_as(gw.port, servers.certs, support.SUPERVISOR) == ["samr.companies:15"]


async def _call_list(channel: grpc.aio.Channel) -> None:
    await registry_pb2_grpc.RegistryServiceStub(channel).ListDatasets(
        registry_pb2.ListDatasetsRequest(), timeout=5)


async def test_client_without_certificate_cannot_connect(servers) -> None:
    gw = await servers.gateway()
    creds = grpc.ssl_channel_credentials(root_certificates=(servers.certs / "ca.pem").read_bytes())
    async with grpc.aio.secure_channel(f"127.0.0.1:{gw.port}", creds,
                                       options=[("grpc.ssl_target_name_override", GATEWAY.dns_name)]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _call_list(ch)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_certificate_from_another_ca_cannot_connect(servers, tmp_path: Path) -> None:
    gw = await servers.gateway()
    rogue = tmp_path / "rogue"
    pki.init_dir(rogue, [support.SUPERVISOR])
    # The rogue client trusts our CA (so it could verify the server) but its
    # own certificate is signed by another CA: the server must refuse it.
    own = TlsFiles.in_dir(rogue, support.SUPERVISOR)
    files = TlsFiles(servers.certs / "ca.pem", own.cert, own.key)
    async with secure_channel(f"127.0.0.1:{gw.port}", files, GATEWAY) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _call_list(ch)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_client_cannot_connect(servers) -> None:
    gw = await servers.gateway()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _call_list(ch)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def _register_request(dept: str, endpoint: str, fields: list[common_pb2.FieldSpec],
                      name: str = "people") -> registry_pb2.RegisterDatasetsRequest:
    return registry_pb2.RegisterDatasetsRequest(
        department=dept, adapter_endpoint=endpoint,
        datasets=[common_pb2.DatasetSpec(department=dept, name=name, fields=fields, row_count=3)])


GOOD_FIELDS = [common_pb2.FieldSpec(name="resident_id", type="string", level="L4", key_kind="resident_id"),
               common_pb2.FieldSpec(name="name", type="string", level="L3")]


async def _register_as(certs: Path, who: Identity, gw_port: int, request: registry_pb2.RegisterDatasetsRequest) -> None:
    async with secure_channel(f"127.0.0.1:{gw_port}", TlsFiles.in_dir(certs, who), GATEWAY) as ch:
        await registry_pb2_grpc.RegistryServiceStub(ch).RegisterDatasets(request, timeout=10)


async def test_department_cannot_register_for_another(servers, tmp_path: Path) -> None:
    gw = await servers.gateway()
    samr = await servers.adapter("samr", gw, companies_sqlite(tmp_path))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _register_as(servers.certs, Identity.department("hrss"), gw.port,
                           _register_request("samr", samr.endpoint, GOOD_FIELDS))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'hrss'" in err.value.details() and "'samr'" in err.value.details()
    # Supervisors cannot register anything at all.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _register_as(servers.certs, support.SUPERVISOR, gw.port,
                           _register_request("samr", samr.endpoint, GOOD_FIELDS))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await list_as(gw.port, servers.certs, support.SUPERVISOR) == ["samr.companies:15"]


async def test_endpoint_must_be_served_by_the_registering_department(servers, tmp_path: Path) -> None:
    """hrss cannot point the gateway at samr's adapter: TLS pins the dialled server to hrss."""
    gw = await servers.gateway()
    samr = await servers.adapter("samr", gw, companies_sqlite(tmp_path))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _register_as(servers.certs, Identity.department("hrss"), gw.port,
                           _register_request("hrss", samr.endpoint, GOOD_FIELDS))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "department 'hrss'" in err.value.details()


@pytest.mark.parametrize("fields, needle", [
    ([common_pb2.FieldSpec(name="resident_id", type="string", level="L9", key_kind="resident_id")],
     "unknown classification level 'L9'"),
    ([*GOOD_FIELDS, common_pb2.FieldSpec(name="name", type="string", level="L2")], "duplicate field 'name'"),
    ([common_pb2.FieldSpec(name="name", type="string", level="L3")], "no key field"),
    ([common_pb2.FieldSpec(name="rid", type="string", level="L3", key_kind="passport")], "key kind"),
    ([common_pb2.FieldSpec(name="rid", type="blob", level="L3", key_kind="plain")], "type"),
], ids=["unknown-level", "duplicate-field", "missing-key-field", "unknown-key-kind", "unknown-type"])
async def test_bad_declaration_is_refused_and_changes_nothing(servers, tmp_path: Path, fields, needle) -> None:
    gw = await servers.gateway()
    hrss = await servers.adapter("hrss", gw, subsidies(tmp_path))
    before = await list_as(gw.port, servers.certs, support.SUPERVISOR)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _register_as(servers.certs, Identity.department("hrss"), gw.port,
                           _register_request("hrss", hrss.endpoint, fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()
    assert await list_as(gw.port, servers.certs, support.SUPERVISOR) == before


async def test_adapter_refuses_callers_other_than_the_gateway(servers, tmp_path: Path) -> None:
    from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc

    gw = await servers.gateway()
    hrss = await servers.adapter("hrss", gw, subsidies(tmp_path))
    async with secure_channel(hrss.endpoint, TlsFiles.in_dir(servers.certs, support.SUPERVISOR),
                              Identity.department("hrss")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await adapter_pb2_grpc.AdapterServiceStub(ch).Describe(adapter_pb2.DescribeRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_client_library_reports_status(servers) -> None:
    gw = await servers.gateway()
    with pytest.raises(RemoteCallFailed) as err:
        await list_as(gw.port, servers.certs, GATEWAY)
    assert err.value.code == "PERMISSION_DENIED"


async def test_health_and_reflection_on_every_server(servers, tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    gw = await servers.gateway()
    hrss = await servers.adapter("hrss", gw, subsidies(tmp_path))
    tls = TlsFiles.in_dir(servers.certs, support.OFFICER)
    for address, server, service in ((f"127.0.0.1:{gw.port}", GATEWAY, "fedgate.v1.RegistryService"),
                                     (hrss.endpoint, Identity.department("hrss"), "fedgate.v1.AdapterService")):
        async with secure_channel(address, tls, server) as ch:
            health = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            call = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
            names = [s.name async for reply in call for s in reply.list_services_response.service]
            assert service in names and "grpc.health.v1.Health" in names
