"""What every fedgate server shares: mTLS port, interceptors, health, reflection, shutdown."""

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

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, then stop, letting in-flight calls finish within `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(listen: str, tls: TlsFiles, services: Iterable[Service],
                       options: list[tuple[str, Any]] | None = None,
                       on_complete: CompletionHook | None = None,
                       revocations: Revocations | None = None) -> RunningServer:
    """Start a grpc.aio server with mTLS on `listen` (port 0 picks a free port); with `revocations`, callers
    whose certificate the CA revoked are refused."""
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
    try:
        port = server.add_secure_port(listen, server_credentials(tls))
    except RuntimeError:  # "Failed to bind to address ...": gRPC says no more than that
        port = 0
    if port == 0:
        raise ConfigError(listen, "cannot listen on this address: another process is listening on it "
                          "(another gateway or adapter?), or it is not a host:port on this machine")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer)


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
