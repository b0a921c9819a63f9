"""Building and running a department adapter: sources checked, server up, datasets registered."""

from __future__ import annotations

import asyncio
import contextlib
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
from fedgate.adapters.row_history import RowSets
from fedgate.adapters.subject_uses import SubjectUses
from fedgate.adapters.tickets import OwnRules, TicketGate
from fedgate.server.data_dir_lock import DataDirLock
from fedgate.server.worker_pool import WorkerPool, shutdown_pools
from fedgate.adapters.service import AdapterServicer
from fedgate.adapters.sources import Source
from fedgate.core.datasets import DatasetDecl
from fedgate.core.errors import ConfigError, DataSourceError, FailedPrecondition, Unavailable
from fedgate.core.identity import GATEWAY, Identity
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc, registry_pb2, registry_pb2_grpc
from fedgate.server import telemetry
from fedgate.server import witness_key
from fedgate.server.signing_key import read_vkey
from fedgate.server.serving import RunningServer, Service, run_until_signalled, start_server, write_ready_file
from fedgate.server.tls import RenewedFiles, check_own, handshake_hint, secure_channel
from fedgate.core import matching_keys
from fedgate.core.matching_keys import MatchingKey
from fedgate.server.wire import dataset_to_proto, matching_key_to_proto

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
    row_sets: RowSets
    data_lock: DataDirLock | None = None
    subjects: SubjectUses | None = None  # None: uses not recorded ([subject_reports] record = false)
    # The registration's lease (keep_registered); ends with an exception if the adapter must stop.
    lease: asyncio.Task[None] | None = None
    # Whether the certificate files were renewed since the adapter started (keep_registered registers again).
    renewed: RenewedFiles | None = None

    @property
    def port(self) -> int:
        return self.running.port

    async def stop(self, grace: float = 5.0) -> None:
        if self.lease is not None and not self.lease.done():
            self.lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.lease
        await self.running.stop(grace)
        # Sessions the stop cancelled record how they ended as they unwind: wait for them,
        # then for their pending records, before the disclosure log closes.
        deadline = time.monotonic() + grace + 5.0
        while self.sessions.active and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.disclosures.aclose()
        await asyncio.to_thread(self.row_sets.history.close)  # after the sessions: a closing one may check
        if self.subjects is not None:
            await asyncio.to_thread(self.subjects.close)  # after the sessions too: a served one records its use
        for source in self.sources.values():
            source.close()  # a database's pooled connections, held open since the start-up checks
        if self.data_lock is not None:
            self.data_lock.release()


def check_source(ds: DatasetConfig, source: Source) -> DatasetDecl:
    """Check declared fields against the source (columns, types, and every value a type does not
    vouch for) and count its rows (reads every row of a CSV once); errors name the dataset."""
    try:
        columns = set(source.columns())
        for f in ds.decl.fields:
            if f.name not in columns:
                raise DataSourceError(f"source {source.describe()} has no column '{f.name}'")
        source.check_types(ds.decl.field_types)
        rows = source.count()
    except DataSourceError as exc:
        raise DataSourceError(f"dataset '{ds.decl.name}': {exc}") from None
    return dataclasses.replace(ds.decl, row_count=rows)


def advertised_endpoint(config: AdapterConfig, port: int) -> str:
    if config.advertise:
        return config.advertise
    host = config.listen.rsplit(":", 1)[0]
    if host in ("", "0.0.0.0", "[::]", "::"):
        raise ConfigError(config.listen, "listening on all interfaces: set `advertise` to the address the gateway dials")
    return f"{host}:{port}"


# Waits between attempts to reach an unreachable gateway: doubling from the first, up to the last.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


class Replaced(FailedPrecondition):
    """Another adapter of this department registered since: the gateway no longer sends it queries."""


def _unreachable(exc: grpc.aio.AioRpcError) -> str:
    """The reason a gateway call failed, in a few words (grpc's details can run to a paragraph)."""
    details = (exc.details() or "").strip()
    return f"{exc.code().name}: {details[:200]}" if details else exc.code().name


async def register(config: AdapterConfig, endpoint: str, datasets: list[DatasetDecl],
                   matching_key: MatchingKey | None = None) -> None:
    """Register with the gateway, retrying with backoff while it is unreachable.

    Each retry is logged with its delay. The adapter keeps trying unless
    `register_timeout_s` is set, after which it gives up (Unavailable).
    """
    request = registry_pb2.RegisterDatasetsRequest(
        department=config.department, display_name=config.display_name,
        adapter_endpoint=endpoint, datasets=[dataset_to_proto(d) for d in datasets],
        matching_key=matching_key_to_proto(matching_key) if matching_key else None,
        department_rules=config.rules.to_json() if config.rules.rules else "")
    deadline = None if config.register_timeout_s is None else time.monotonic() + config.register_timeout_s
    delay = RETRY_FIRST_S
    async with secure_channel(config.gateway, config.tls, GATEWAY) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        while True:
            try:
                reply = await stub.RegisterDatasets(request, timeout=15)
                log.info("registered %d dataset(s) with the gateway %s as %s (%d removed)", reply.registered,
                         config.gateway, endpoint, reply.removed)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRYABLE:
                    raise ConfigError(config.gateway, f"gateway refused registration: "
                                      f"{exc.code().name}: {exc.details()}") from None
                # A certificate from another CA fails only as "Socket closed": say which CA to check.
                hint = handshake_hint(exc.details() or "", config.gateway, config.tls, "the gateway")
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise Unavailable(hint or f"gateway {config.gateway} unreachable for {config.register_timeout_s} s "
                                      f"(register_timeout_s): {_unreachable(exc)}") from None
                log.warning("gateway %s unreachable (%s); retrying in %.1f s", config.gateway,
                            hint or _unreachable(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)


def current_counts(adapter: Adapter) -> dict[str, int]:
    """Each dataset's row count now (blocking: runs in a thread); a source that fails is left out, and logged."""
    counts: dict[str, int] = {}
    for decl in adapter.datasets:
        try:
            counts[decl.name] = adapter.sources[decl.name].count()
        except Exception as exc:
            log.warning("dataset '%s': cannot count its rows for the heartbeat (%s)", decl.name,
                        type(exc).__name__)
    return counts


async def keep_registered(adapter: Adapter) -> None:
    """Renew the registration every `heartbeat_s` seconds, with the current row counts, until cancelled.

    The gateway unreachable: retry with backoff, saying so. The gateway no longer
    knows the registration (a new registry): register again. Another adapter of
    the department registered since: raise Replaced, so this one stops rather
    than fight the other for the department's queries. The certificate renewed on
    disk: register again with it (a new channel, the matching key vouched for by
    the new certificate), so the gateway knows the certificate this adapter now serves with.
    """
    config = adapter.config
    delay = float(config.heartbeat_s)
    failing = False
    renewed = adapter.renewed or RenewedFiles(config.tls)
    channel = secure_channel(config.gateway, config.tls, GATEWAY)
    try:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        while True:
            await asyncio.sleep(delay)
            if renewed():
                log.info("the adapter's certificate was renewed; registering again with it")
                await channel.close()
                channel = secure_channel(config.gateway, config.tls, GATEWAY)
                stub = registry_pb2_grpc.RegistryServiceStub(channel)
                private = matching_keys.load_or_create(config.data_dir / "matching.key")
                adapter.matching_key = matching_keys.vouch(config.department, private, config.tls)
                try:
                    await register(config, adapter.endpoint, adapter.datasets, adapter.matching_key)
                except (ConfigError, Unavailable) as exc:  # the heartbeats go on; the operator has the reason
                    log.error("registering again with the renewed certificate failed: %s", exc)
            counts = await asyncio.to_thread(current_counts, adapter)
            request = registry_pb2.HeartbeatRequest(
                department=config.department, adapter_endpoint=adapter.endpoint,
                counts=[registry_pb2.DatasetCount(name=n, row_count=c) for n, c in counts.items()])
            try:
                reply = await stub.Heartbeat(request, timeout=15)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in _RETRYABLE:
                    delay = RETRY_FIRST_S if not failing else min(delay * 2, RETRY_MAX_S)
                    failing = True
                    log.warning("gateway %s unreachable (%s); retrying in %.1f s", config.gateway,
                                _unreachable(exc), delay)
                else:
                    delay = float(config.heartbeat_s)
                    log.error("gateway %s refused this adapter's heartbeat: %s: %s", config.gateway,
                              exc.code().name, exc.details())
                continue
            if failing:
                log.info("gateway %s reachable again", config.gateway)
            failing, delay = False, float(config.heartbeat_s)
            if reply.registration == registry_pb2.HeartbeatResponse.REPLACED:
                raise Replaced(
                    f"the gateway {config.gateway} now sends department '{config.department}' queries to the "
                    f"adapter at {reply.registered_endpoint}, which registered after this one ({adapter.endpoint}); "
                    "stopping this adapter. Stop the other one (or give it its own department's certificate), "
                    "then start this one again")
            if reply.registration == registry_pb2.HeartbeatResponse.UNKNOWN:
                log.warning("gateway %s has no registration for department %s (a new registry?); registering again",
                            config.gateway, config.department)
                datasets = [dataclasses.replace(d, row_count=counts.get(d.name, d.row_count))
                            for d in adapter.datasets]
                await register(config, adapter.endpoint, datasets, adapter.matching_key)
    finally:
        await channel.close()


async def build_adapter(config: AdapterConfig, *, register_now: bool = True) -> Adapter:
    """Check every source, start the adapter server, then register with the gateway."""
    check_own(config.tls, Identity.department(config.department))  # its key, its CA, this department's
    revocations = config.tls.revocations()  # callers (the gateway included) the CA revoked are refused
    vkey = read_vkey(config.gateway_log_key)
    async with contextlib.AsyncExitStack() as undo:  # what is started so far, stopped if a later step fails
        # Before its disclosure log is opened: one adapter per data_dir.
        data_lock = DataDirLock.acquire(config.data_dir, f"adapter of '{config.department}'")
        undo.callback(data_lock.release)
        matching_private = matching_keys.load_or_create(config.data_dir / "matching.key")
        matching_key = matching_keys.vouch(config.department, matching_private, config.tls)
        sources = {ds.decl.name: ds.open_source() for ds in config.datasets}
        for source in sources.values():
            undo.callback(source.close)
        datasets = [await asyncio.to_thread(check_source, ds, sources[ds.decl.name]) for ds in config.datasets]
        disclosures = DisclosureLog(config.data_dir / "disclosures.db")
        undo.callback(disclosures.close)
        # Beside the disclosure log: the row sets answered, for the difference check.
        row_sets = RowSets.open(config.data_dir, config.difference_window_days)
        undo.callback(row_sets.history.close)
        # Beside them: whose records each answer covered, as keyed hashes, for subject reports.
        subjects = SubjectUses.open(config.data_dir) if config.subject_reports.record else None
        if subjects is not None:
            undo.callback(subjects.close)
        witness = witness_key.load_or_create(config.data_dir, config.department)
        gate = TicketGate(config.department, vkey, disclosures, config.levels, config.clock_skew_s, witness=witness,
                          rules=OwnRules(config.rules, {d.decl.qualified_name: d.decl for d in config.datasets}))
        ca_pem, _, _ = config.tls.read()
        # Started before the server: workers are spawned, never forked from a process running gRPC.
        pool = WorkerPool(config.workers)
        catalogue = Catalogue(datasets, sources)
        sessions = MatchSessions(config.department, catalogue, gate, config.levels, pool, matching_private, ca_pem,
                                 row_sets, subjects)
        services = [Service(adapter_pb2.DESCRIPTOR.services_by_name["AdapterService"].full_name,
                            AdapterServicer(config.department, catalogue, gate, config.levels, sessions,
                                            row_sets, subjects, span_store=config.data_dir / "spans.db"),
                            adapter_pb2_grpc.add_AdapterServiceServicer_to_server)]
        running = await start_server(config.listen, config.tls, services, revocations=revocations,
                                     health_listen=config.health_listen)
        # Stopped in this loop if a later step fails: left running, it outlives the loop and dies with a traceback.
        undo.push_async_callback(running.stop, 0)
        adapter = Adapter(config, running, datasets, sources, advertised_endpoint(config, running.port),
                          disclosures, matching_key, sessions, row_sets, data_lock, subjects=subjects,
                          renewed=RenewedFiles(config.tls))
        if register_now:
            await register(config, adapter.endpoint, datasets, adapter.matching_key)
            adapter.lease = asyncio.create_task(keep_registered(adapter), name=f"lease-{config.department}")
        undo.pop_all()
    return adapter


async def serve(config: AdapterConfig, ready_file: Path | None = None) -> None:
    """Run the adapter until SIGINT/SIGTERM."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    telemetry.setup_tracing(f"fedgate-adapter-{config.department}", config.data_dir / "spans.db")
    try:
        adapter = await build_adapter(config)
        log.info("adapter for %s listening on port %d", config.department, adapter.port)
        write_ready_file(ready_file, port=adapter.port, endpoint=adapter.endpoint)
        signalled = asyncio.create_task(run_until_signalled(adapter.stop))
        assert adapter.lease is not None
        lease = adapter.lease
        await asyncio.wait({signalled, lease}, return_when=asyncio.FIRST_COMPLETED)
        # The lease is cancelled by adapter.stop() on a signal; ended by itself, it says why to stop.
        if lease.done() and not lease.cancelled() and not signalled.done():
            signalled.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await signalled
            lost = lease.exception()
            log.error("%s", lost)
            await adapter.stop()
            if lost is not None:
                raise lost
        else:
            await signalled
    finally:
        await asyncio.to_thread(shutdown_pools)
        telemetry.shutdown_tracing()

