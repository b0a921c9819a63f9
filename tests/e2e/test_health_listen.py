"""The plaintext health-only port (`health_listen`): probes without mTLS get health, and nothing else.

Kubernetes' `grpc:` probes cannot present a client certificate, so a server may open a second,
plaintext port that serves grpc.health.v1 alone. Every fedgate service (and reflection) must
answer UNIMPLEMENTED there, and the main port must still refuse a caller without a certificate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import support
from fedgate.adapters.server import Adapter, build_adapter
from fedgate.gateway.server import Gateway
from fedgate.protos.fedgate.v1 import (adapter_pb2, approvals_pb2, audit_pb2, policy_pb2, query_pb2,
                                       registry_pb2)

REFLECTION = "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def fedgate_methods() -> Iterator[str]:
    """Every fedgate RPC as `package.Service/Method`, from the generated descriptors."""
    for module in (registry_pb2, audit_pb2, query_pb2, policy_pb2, approvals_pb2, adapter_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                yield f"{service.full_name}/{method.name}"


async def health_status(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def plaintext_codes(port: int, methods: list[str]) -> dict[str, grpc.StatusCode]:
    """The status each raw call (empty request bytes) gets over a plaintext channel."""
    codes = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        for method in methods:
            call = channel.unary_unary(f"/{method}")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(b"", timeout=5)
            codes[method] = err.value.code()
    return codes


async def check_health_only(main_port: int, health_port: int) -> None:
    assert health_port != main_port
    assert await health_status(health_port) == health_pb2.HealthCheckResponse.SERVING
    methods = [*fedgate_methods(), REFLECTION]
    assert len(methods) > 20
    assert await plaintext_codes(health_port, methods) == {m: grpc.StatusCode.UNIMPLEMENTED for m in methods}
    # The main port still takes mTLS only: a plaintext caller does not even get its health.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await health_status(main_port)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_gateway_health_port_serves_health_only(servers) -> None:
    gw: Gateway = await servers.gateway(settings='health_listen = "127.0.0.1:0"')
    health_port = gw.running.health_port
    assert health_port is not None
    await check_health_only(gw.port, health_port)
    assert await health_status(health_port, "fedgate.v1.QueryService") == health_pb2.HealthCheckResponse.SERVING

    await servers.stop_gateway(gw)
    with pytest.raises(grpc.aio.AioRpcError) as err:  # stopped with the server
        await health_status(health_port)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_adapter_health_port_serves_health_only(servers, tmp_path: Path) -> None:
    gw = await servers.gateway()
    assert gw.running.health_port is None  # off unless configured
    csv = tmp_path / "subsidies.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    config = servers.adapter_config("hrss", gw, support.SUBSIDIES_DECL.format(path=csv))
    adapter: Adapter = await build_adapter(dataclasses.replace(config, health_listen="127.0.0.1:0"))
    servers.adapters.append(adapter)
    assert adapter.running.health_port is not None
    await check_health_only(adapter.port, adapter.running.health_port)


def test_health_listen_is_read_and_checked(tmp_path: Path, certs: Path) -> None:
    from fedgate.core.errors import ConfigError
    from fedgate.gateway.config import GatewayConfig

    cfg = tmp_path / "gateway.toml"
    text = support.gateway_toml(tmp_path / "data", certs)
    cfg.write_text(text)
    assert GatewayConfig.load(cfg).health_listen == ""
    cfg.write_text(text.replace("[tls]", 'health_listen = "0.0.0.0:8081"\n[tls]'))
    assert GatewayConfig.load(cfg).health_listen == "0.0.0.0:8081"
    cfg.write_text(text.replace("[tls]", 'health_listen = "8081"\n[tls]'))
    with pytest.raises(ConfigError, match="health_listen"):
        GatewayConfig.load(cfg)


async def test_health_command_asks_the_health_port(servers) -> None:
    """`fedgate health`, the image's HEALTHCHECK, reads the plaintext port (tests/unit/test_deploy_files.py runs it
    as a process against a gateway started as the container starts it)."""
    import asyncio

    from typer.testing import CliRunner

    from fedgate.cli.commands import app

    gw: Gateway = await servers.gateway(settings='health_listen = "127.0.0.1:0"')
    runner = CliRunner()
    ok = await asyncio.to_thread(runner.invoke, app, ["health", f"127.0.0.1:{gw.running.health_port}"])
    assert (ok.exit_code, ok.output.strip()) == (0, "SERVING")
    unknown = await asyncio.to_thread(runner.invoke, app, ["health", f"127.0.0.1:{gw.running.health_port}",
                                                           "--service", "no.such.Service"])
    assert unknown.exit_code == 1
    # The main port takes no plaintext caller: not healthy, as far as a probe can tell.
    refused = await asyncio.to_thread(runner.invoke, app, ["health", f"127.0.0.1:{gw.port}", "--timeout", "2"])
    assert refused.exit_code == 1
    assert "UNAVAILABLE" in refused.output


async def test_a_port_in_use_stops_the_start_naming_it_and_gives_the_other_back(certs: Path) -> None:
    """Like the main port: a health_listen address another process holds is a ConfigError naming it. And
    when the main port is taken, the health port, bound already, is given back (a second start on it works)."""
    import socket

    from fedgate.core.errors import ConfigError
    from fedgate.core.identity import GATEWAY
    from fedgate.server.serving import start_server
    from fedgate.server.tls import TlsFiles

    tls = TlsFiles.in_dir(certs, GATEWAY)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        in_use = f"127.0.0.1:{taken.getsockname()[1]}"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = f"127.0.0.1:{probe.getsockname()[1]}"
        with pytest.raises(ConfigError, match=in_use):
            await start_server("127.0.0.1:0", tls, [], health_listen=in_use)
        with pytest.raises(ConfigError, match=in_use):
            await start_server(in_use, tls, [], health_listen=free)
    running = await start_server("127.0.0.1:0", tls, [], health_listen=free)
    try:
        assert f"127.0.0.1:{running.health_port}" == free
        assert await health_status(running.health_port) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await running.stop(0)
