"""Building and running the gateway server."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from fedgate import signing_key, telemetry
from fedgate.classification import default_levels
from fedgate.gateway.audit import AuditReader, AuditRecorder
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import AuditStore
from fedgate.gateway.query import QueryEngine
from fedgate.gateway.services.audit import AuditServicer
from fedgate.gateway.services.query import QueryServicer
from fedgate.gateway.tickets import TicketIssuer
from fedgate.gateway.adapter_links import AdapterLinks
from fedgate.gateway.config import GatewayConfig
from fedgate.gateway.registry import Registry
from fedgate.gateway.registry_store import RegistryStore
from fedgate.gateway.services.registry import RegistryServicer
from fedgate.protos.fedgate.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from fedgate.serving import RunningServer, Service, run_until_signalled, start_server, write_ready_file

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    running: RunningServer
    store: RegistryStore
    links: AdapterLinks
    audit_log: AuditLog

    vkey_path: Path

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        await self.running.stop(grace)
        await self.links.close()
        self.store.close()
        self.audit_log.store.close()


async def build_gateway(config: GatewayConfig) -> Gateway:
    """Open the stores and start serving; returns once the port is bound."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    key = signing_key.load_or_create(config.effective_signing_key, config.log_origin)
    store = await asyncio.to_thread(RegistryStore.open, config.effective_registry_url)
    audit_store = await asyncio.to_thread(AuditStore.open, config.effective_audit_url)
    try:
        audit_log = await AuditLog.open(audit_store, key, config.log_origin)
        links = AdapterLinks(config.tls)
        registry = Registry(store, default_levels(), links)
        services = [
            Service(registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
                    RegistryServicer(registry), registry_pb2_grpc.add_RegistryServiceServicer_to_server),
            Service(audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
                    AuditServicer(AuditReader(audit_log)), audit_pb2_grpc.add_AuditServiceServicer_to_server),
        ]
        engine = QueryEngine(registry, links, audit_log, TicketIssuer(audit_log, key, config.ticket_ttl_s))
        services.append(Service(query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name,
                                QueryServicer(engine), query_pb2_grpc.add_QueryServiceServicer_to_server))
        running = await start_server(config.listen, config.tls, services, on_complete=AuditRecorder(audit_log))
    except BaseException:
        store.close()
        audit_store.close()
        raise
    return Gateway(running, store, links, audit_log, signing_key.vkey_path(config.effective_signing_key))


async def serve(config: GatewayConfig, ready_file: Path | None = None) -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    telemetry.setup_tracing("fedgate-gateway", config.data_dir / "spans.db")
    try:
        gateway = await build_gateway(config)
        log.info("gateway listening on port %d", gateway.port)
        write_ready_file(ready_file, port=gateway.port)
        await run_until_signalled(gateway.stop)
    finally:
        telemetry.shutdown_tracing()
