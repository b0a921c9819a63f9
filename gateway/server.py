"""Building and running the gateway server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from fedgate.server.witness_key import witness_name
from fedgate.server import metrics, signing_key, telemetry
from fedgate.server.data_dir_lock import DataDirLock
from fedgate.gateway.spill import remove_leftovers
from fedgate.core.classification import Levels
from fedgate.gateway.adapter_links import AdapterLinks
from fedgate.gateway.alerts import ProbeAlerts
from fedgate.gateway.approvals import ApprovalDesk, ApprovalStore
from fedgate.gateway.audit import AuditReader, AuditRecorder
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import AuditStore
from fedgate.gateway.config import GatewayConfig, load_officer_seal
from fedgate.gateway.policy import Policy
from fedgate.gateway.policy_watch import watch_policy
from fedgate.gateway.planning import Decisions
from fedgate.gateway.query import Asking, QueryEngine, Timeouts
from fedgate.gateway.recovery import close_unfinished
from fedgate.gateway.registry import Registry
from fedgate.gateway.registry_store import RegistryStore
from fedgate.gateway.budget import BudgetBook, Privacy
from fedgate.gateway.safeguards import QuotaBook
from fedgate.gateway.services.approvals import ApprovalServicer
from fedgate.gateway.services.audit import AuditServicer
from fedgate.gateway.traces import TraceGatherer
from fedgate.gateway.services.policy import PolicyServicer
from fedgate.gateway.services.query import QueryServicer
from fedgate.gateway.services.registry import RegistryServicer
from fedgate.gateway.tickets import TicketIssuer
from fedgate.core.identity import GATEWAY
from fedgate.server.tls import check_own
from fedgate.query.safeguards import SafeguardConfig, Safeguards
from fedgate.protos.fedgate.v1 import (
    approvals_pb2,
    approvals_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from fedgate.server.worker_pool import WorkerPool, shutdown_pools
from fedgate.server.serving import RunningServer, Service, run_until_signalled, start_server, write_ready_file

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    running: RunningServer
    store: RegistryStore
    links: AdapterLinks
    audit_log: AuditLog
    policy: Policy
    vkey_path: Path
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    data_lock: DataDirLock | None = None
    approvals: ApprovalDesk | None = None
    unwatch: list[Callable[[], None]] = field(default_factory=list)  # metrics read from the stores

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        for unwatch in self.unwatch:  # before the stores close: a disposed engine would open a new pool
            unwatch()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.running.stop(grace)
        await self.links.close()
        self.store.close()
        self.audit_log.store.close()
        if self.data_lock is not None:
            self.data_lock.release()


def _service(module: ModuleType, name: str, servicer: object) -> Service:
    descriptor = module.DESCRIPTOR.services_by_name[name]
    return Service(descriptor.full_name, servicer, getattr(_GRPC[module], f"add_{name}Servicer_to_server"))


_GRPC = {registry_pb2: registry_pb2_grpc, audit_pb2: audit_pb2_grpc, query_pb2: query_pb2_grpc,
         policy_pb2: policy_pb2_grpc, approvals_pb2: approvals_pb2_grpc}


async def build_gateway(config: GatewayConfig) -> Gateway:
    """Load policy and keys, open the stores and start serving; returns once the port is bound."""
    check_own(config.tls, GATEWAY)  # the gateway's own certificate: its key, its CA, its identity
    revocations = config.tls.revocations()  # a CRL not from our CA stops the start here
    async with contextlib.AsyncExitStack() as undo:  # a start that fails gives back what it took, in reverse
        # First: a second gateway on this data_dir must not touch its stores at all.
        data_lock = DataDirLock.acquire(config.data_dir, "gateway")
        undo.callback(data_lock.release)
        # Spill files a crashed gateway left: no query of this data_dir runs but ours, and none has started.
        await asyncio.to_thread(remove_leftovers, config.spill.root)
        policy_dir = config.effective_policy_dir
        levels = Levels.from_file(policy_dir / "levels.toml")
        policy = Policy.from_dir(policy_dir, levels)
        safeguard_config = SafeguardConfig.from_file(policy_dir / "safeguards.toml")
        key = signing_key.load_or_create(config.effective_signing_key, config.log_origin)
        store = await asyncio.to_thread(RegistryStore.open, config.effective_registry_url)
        undo.callback(store.close)
        audit_store = await asyncio.to_thread(AuditStore.open, config.effective_audit_url)
        undo.callback(audit_store.close)
        audit_log = await AuditLog.open(audit_store, key, config.log_origin)
        if config.effective_audit_url.startswith("sqlite"):
            await close_unfinished(audit_log)
        quotas = await asyncio.to_thread(QuotaBook, store.engine, safeguard_config)
        budgets = await asyncio.to_thread(BudgetBook, store.engine)
        links = AdapterLinks(config.tls, witnessed=lambda department, note, line: audit_log.add_cosignature(
            note, witness_name(department), line), revocations=revocations)
        undo.push_async_callback(links.close)
        registry = Registry(store, policy, links, config.health_check_s)
        decisions = Decisions(policy, Safeguards.for_gateway(safeguard_config, levels, quotas), quotas,
                              config.tls.read()[0], load_officer_seal(config), Privacy(levels, budgets))
        approvals = ApprovalDesk(await asyncio.to_thread(ApprovalStore, store.engine), registry, audit_log)
        unwatch_approvals = metrics.watch_approvals(approvals.waiting)
        undo.callback(unwatch_approvals)
        asking = Asking(registry, links, audit_log, TicketIssuer(audit_log, key, config.ticket_ttl_s), approvals)
        engine = QueryEngine(decisions, asking, WorkerPool(config.workers),
                             Timeouts(config.adapter_idle_timeout_s, config.flags_timeout_s), config.spill)
        services = [
            _service(registry_pb2, "RegistryService", RegistryServicer(registry)),
            _service(audit_pb2, "AuditService", AuditServicer(
                AuditReader(audit_log, policy), TraceGatherer(config.data_dir / "spans.db", store, links))),
            _service(query_pb2, "QueryService", QueryServicer(engine)),
            _service(policy_pb2, "PolicyService", PolicyServicer(policy, budgets)),
            _service(approvals_pb2, "ApprovalService", ApprovalServicer(approvals, policy, config.log_origin)),
        ]
        alerts = await ProbeAlerts.open(audit_log, safeguard_config.alerts)
        recorder = AuditRecorder(audit_log, alerts, approvals.collect_failed)
        running = await start_server(config.listen, config.tls, services, on_complete=recorder,
                                     revocations=revocations, health_listen=config.health_listen)
        undo.pop_all()  # started: all of it is the Gateway's now, and Gateway.stop gives it back
    gateway = Gateway(running, store, links, audit_log, policy, signing_key.vkey_path(config.effective_signing_key),
                      data_lock=data_lock, approvals=approvals, unwatch=[unwatch_approvals])
    if config.policy_watch_s > 0:
        gateway.tasks.append(asyncio.create_task(watch_policy(policy, audit_log, config.policy_watch_s)))
    gateway.tasks.append(asyncio.create_task(registry.watch_health()))
    return gateway


async def serve(config: GatewayConfig, ready_file: Path | None = None) -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    telemetry.setup_tracing("fedgate-gateway", config.data_dir / "spans.db")
    try:
        gateway = await build_gateway(config)
        log.info("gateway listening on port %d (%d policy rules)", gateway.port, gateway.policy.rule_count)
        write_ready_file(ready_file, port=gateway.port)
        await run_until_signalled(gateway.stop)
    finally:
        await asyncio.to_thread(shutdown_pools)
        telemetry.shutdown_tracing()
