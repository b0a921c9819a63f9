"""What every fedgate server shares: mTLS port, interceptors, health, reflection, shutdown.

A server may also open a plaintext health-only port (`health_listen`) for probes that cannot
speak mTLS, such as Kubernetes' `grpc:` probes: it serves grpc.health.v1 and nothing else, so
every fedgate service (and reflection) answers UNIMPLEMENTED there and no data is reachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fedgate.server import telemetry
from fedgate.core.errors import ConfigError
from fedgate.server.interceptors import CompletionHook, ServiceInterceptor
from fedgate.server.revocation import Revocations
from fedgate.server.tls import TlsFiles, server_credentials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """A servicer with its generated `add_*_to_server` function and full service name."""

    name: str
    servicer: Any
    add: Callable[[Any, grpc.aio.Server], None]


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    health_server: grpc.aio.Server | None = None  # the plaintext health-only port, when `health_listen` is set
    health_port: int | None = None

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, then stop, letting in-flight calls finish within `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:  # last: probes see NOT_SERVING while the main port drains
            await self.health_server.stop(0)


def _bind(server: grpc.aio.Server, listen: str, credentials: grpc.ServerCredentials | None) -> int:
    """Bind `listen` (mTLS with `credentials`, else plaintext); ConfigError if it cannot be bound."""
    try:
        port: int = (server.add_secure_port(listen, credentials) if credentials is not None
                     else server.add_insecure_port(listen))
    except RuntimeError:  # "Failed to bind to address ...": gRPC says no more than that
        port = 0
    if port == 0:
        raise ConfigError(listen, "cannot listen on this address: another process is listening on it "
                          "(another gateway or adapter?), or it is not a host:port on this machine")
    return port


async def start_server(listen: str, tls: TlsFiles, services: Iterable[Service],
                       options: list[tuple[str, Any]] | None = None,
                       on_complete: CompletionHook | None = None,
                       revocations: Revocations | None = None, health_listen: str = "") -> RunningServer:
    """Start a grpc.aio server with mTLS on `listen` (port 0 picks a free port); with `revocations`, callers
    whose certificate the CA revoked are refused.

    With `health_listen`, also a plaintext server there with the same health service and no other
    (no interceptors, no reflection): what a probe that cannot present a client certificate asks.
    """
    services = list(services)
    # Tracing first, so its span covers identity, the audit append and error mapping.
    interceptors = [*telemetry.server_interceptors(), ServiceInterceptor(on_complete, revocations)]
    # gRPC sets SO_REUSEPORT by default: a second server on a port in use would then start and
    # share it, silently. Without it the bind fails and the second server says so.
    server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0), *(options or [])])
    for svc in services:
        svc.add(svc.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [svc.name for svc in services]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    health_server = health_port = None
    if health_listen:  # bound first: it is the one that can be started and stopped again to give its port back
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        health_port = _bind(health_server, health_listen, None)
    try:
        port = _bind(server, listen, server_credentials(tls))
    except ConfigError:
        if health_server is not None:  # an unstarted server keeps its port bound: start and stop it
            await health_server.start()
            await health_server.stop(None)
        raise
    await server.start()
    if health_server is not None:
        await health_server.start()
        log.info("plaintext health checks (grpc.health.v1 only) on port %d", health_port)
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer, health_server, health_port)


def write_ready_file(path: Path | None, **info: Any) -> None:
    """Atomically write a JSON file saying the server is up and on which port."""
    if path is None:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **info}))
    tmp.replace(path)


async def run_until_signalled(stop: Callable[[], Awaitable[None]]) -> None:
    """Block until SIGINT or SIGTERM, then run `stop` once."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, event.set)
    await event.wait()
    log.info("shutting down")
    await stop()
