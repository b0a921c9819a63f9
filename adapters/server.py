"""Building and running a department adapter: sources checked, server up, datasets registered."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from fedgate.adapters.catalogue import Catalogue
from fedgate.adapters.config import AdapterConfig, DatasetConfig
from fedgate.adapters.disclosure_log import DisclosureLog
from fedgate.adapters.matching import MatchSessions
from fedgate.adapters.tickets import TicketGate
from fedgate.data_dir_lock import DataDirLock
from fedgate.worker_pool import WorkerPool
from fedgate.adapters.service import AdapterServicer
from fedgate.adapters.sources import Source
from fedgate.datasets import DatasetDecl
from fedgate.errors import ConfigError, DataSourceError, Unavailable
from fedgate.identity import GATEWAY
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc, registry_pb2, registry_pb2_grpc
from fedgate import telemetry
from fedgate.signing_key import read_vkey
from fedgate.serving import RunningServer, Service, run_until_signalled, start_server, write_ready_file
from fedgate.tls import secure_channel
from fedgate import matching_keys
from fedgate.matching_keys import MatchingKey
from fedgate.wire import dataset_to_proto, matching_key_to_proto

log = logging.getLogger(__name__)
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass
class Adapter:
    config: AdapterConfig
    running: RunningServer
    datasets: list[DatasetDecl]
    sources: dict[str, Source]
    endpoint: str
    disclosures: DisclosureLog
    matching_key: MatchingKey
    sessions: MatchSessions
    data_lock: DataDirLock | None = None

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        await self.running.stop(grace)
        self.disclosures.close()
        if self.data_lock is not None:
            self.data_lock.release()


def check_source(ds: DatasetConfig, source: Source) -> DatasetDecl:
    """Check declared fields against the source and count its rows (reads every row once)."""
    columns = set(source.columns())
    for f in ds.decl.fields:
        if f.name not in columns:
            raise DataSourceError(
                f"dataset '{ds.decl.name}': source {source.describe()} has no column '{f.name}'")
    return dataclasses.replace(ds.decl, row_count=source.count())


def advertised_endpoint(config: AdapterConfig, port: int) -> str:
    if config.advertise:
        return config.advertise
    host = config.listen.rsplit(":", 1)[0]
    if host in ("", "0.0.0.0", "[::]", "::"):
        raise ConfigError(config.listen, "listening on all interfaces: set `advertise` to the address the gateway dials")
    return f"{host}:{port}"


async def register(config: AdapterConfig, endpoint: str, datasets: list[DatasetDecl],
                   matching_key: MatchingKey | None = None) -> None:
    """Register with the gateway, retrying while it is unreachable (up to register_timeout_s)."""
    request = registry_pb2.RegisterDatasetsRequest(
        department=config.department, display_name=config.display_name,
        adapter_endpoint=endpoint, datasets=[dataset_to_proto(d) for d in datasets],
        matching_key=matching_key_to_proto(matching_key) if matching_key else None)
    deadline = time.monotonic() + config.register_timeout_s
    delay = 0.2
    async with secure_channel(config.gateway, config.tls, GATEWAY) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        while True:
            try:
                reply = await stub.RegisterDatasets(request, timeout=15)
                log.info("registered %d dataset(s) with the gateway (%d removed)", reply.registered, reply.removed)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRYABLE:
                    raise ConfigError(config.gateway, f"gateway refused registration: "
                                      f"{exc.code().name}: {exc.details()}") from None
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"gateway {config.gateway} unreachable for {config.register_timeout_s} s: "
                                      f"{exc.details()}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


async def build_adapter(config: AdapterConfig, *, register_now: bool = True) -> Adapter:
    """Check every source, start the adapter server, then register with the gateway."""
    vkey = read_vkey(config.gateway_log_key)
    # Before its disclosure log is opened: one adapter per data_dir.
    data_lock = DataDirLock.acquire(config.data_dir, f"adapter of '{config.department}'")
    try:
        matching_private = matching_keys.load_or_create(config.data_dir / "matching.key")
        matching_key = matching_keys.vouch(config.department, matching_private, config.tls)
        sources = {ds.decl.name: ds.open_source() for ds in config.datasets}
        datasets = [await asyncio.to_thread(check_source, ds, sources[ds.decl.name]) for ds in config.datasets]
        disclosures = DisclosureLog(config.data_dir / "disclosures.db")
    except BaseException:
        data_lock.release()
        raise
    gate = TicketGate(config.department, vkey, disclosures, config.levels, config.clock_skew_s)
    ca_pem, _, _ = config.tls.read()
    # Started before the server: workers are spawned, never forked from a process running gRPC.
    pool = WorkerPool(config.workers)
    catalogue = Catalogue(datasets, sources)
    sessions = MatchSessions(config.department, catalogue, gate, config.levels, pool, matching_private, ca_pem)
    services = [Service(adapter_pb2.DESCRIPTOR.services_by_name["AdapterService"].full_name,
                        AdapterServicer(config.department, catalogue, gate, config.levels, sessions),
                        adapter_pb2_grpc.add_AdapterServiceServicer_to_server)]
    try:
        running = await start_server(config.listen, config.tls, services)
    except BaseException:
        disclosures.close()
        data_lock.release()
        raise
    adapter = Adapter(config, running, datasets, sources, advertised_endpoint(config, running.port), disclosures,
                      matching_key, sessions, data_lock)
    if register_now:
        try:
            await register(config, adapter.endpoint, datasets, adapter.matching_key)
        except BaseException:
            await adapter.stop(0)
            raise
    return adapter


async def serve(config: AdapterConfig, ready_file: Path | None = None) -> None:
    """Run the adapter until SIGINT/SIGTERM."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    telemetry.setup_tracing(f"fedgate-adapter-{config.department}", config.data_dir / "spans.db")
    try:
        adapter = await build_adapter(config)
        log.info("adapter for %s listening on port %d", config.department, adapter.port)
        write_ready_file(ready_file, port=adapter.port, endpoint=adapter.endpoint)
        await run_until_signalled(adapter.stop)
    finally:
        telemetry.shutdown_tracing()

