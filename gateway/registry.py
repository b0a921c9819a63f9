"""Registering and listing datasets: who may, and what is checked, before the store is touched."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import hashlib
import json
import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedgate.core.datasets import DatasetDecl, RegisteredDataset
from fedgate.core.errors import (DepartmentRevoked, FailedPrecondition, FedgateError, InvalidInput, NotFound,
                                 PermissionDenied)
from fedgate.gateway.adapter_links import AdapterLinks, check_same_datasets
from fedgate.gateway.registry_store import Department, RegistryStore
from fedgate.gateway.policy import Policy
from fedgate.core.matching_keys import MatchingKey
from fedgate.query.department_rules import NO_RULES, DepartmentRules
from fedgate.core.identity import Identity, Role
from fedgate.server.interceptors import RequestRecord


# A department code and a dataset name have at most 63 characters each (fedgate.core.datasets).
MAX_QUALIFIED_NAME = 127
OWN_DEPARTMENT_RULE = "invariant: a department certificate registers its own department's datasets only"
DEFAULT_HEALTH_CHECK_S = 30
# An adapter not heard from for this many health-check intervals is shown unreachable,
# even if no check has failed yet (e.g. no gateway replica has been checking).
STALE_AFTER_CHECKS = 3
HEALTH_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


class Lease(enum.Enum):
    """What a heartbeat learns about the adapter's registration."""

    CURRENT = "current"
    UNKNOWN = "unknown"
    REPLACED = "replaced"


def declaration_digest(decl: DatasetDecl) -> str:
    """SHA-256 of a dataset's declaration (name, description, fields), for the registration's audit entry."""
    canonical = json.dumps({
        "department": decl.department, "name": decl.name, "description": decl.description,
        "fields": [[f.name, f.type.value, f.level, f.key.value if f.key else None, f.description]
                   for f in decl.fields]}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Registration:
    department: str
    display_name: str
    endpoint: str
    datasets: tuple[DatasetDecl, ...]
    matching_key: MatchingKey | None = None
    rules: DepartmentRules = NO_RULES


class Registry:
    def __init__(self, store: RegistryStore, policy: Policy, links: AdapterLinks,
                 health_check_s: int = DEFAULT_HEALTH_CHECK_S) -> None:
        self._store = store
        self._policy = policy
        self._levels = policy.levels
        self._links = links
        self.health_check_s = health_check_s
        self._reachable: dict[str, bool] = {}  # per department, the latest check this gateway made

    def _own_department(self, caller: Identity, record: RequestRecord, department: str) -> None:
        record.rule = self._policy.decide_for(caller, f"{department}.*", "register").require()
        # Ownership is an invariant, not policy: a certificate speaks for its own department only.
        if caller.role is not Role.DEPARTMENT or caller.org != department:
            record.rule = OWN_DEPARTMENT_RULE
            raise PermissionDenied(
                f"certificate is for department '{caller.org}'; it cannot register datasets for '{department}'"
            )

    async def register(self, caller: Identity, record: RequestRecord, reg: Registration) -> tuple[int, int]:
        """Validate, check policy, ownership and the adapter endpoint, then replace the department's datasets.

        A different endpoint replaces the registered one only if that one no longer
        answers as the department: one live adapter per department, so a second copy
        (a mistyped configuration, a test run) cannot take its queries over.
        """
        self._own_department(caller, record, reg.department)
        record.params["endpoint"] = reg.endpoint
        for decl in reg.datasets:
            record.params[f"digest.{decl.name}"] = declaration_digest(decl)
        if reg.rules.rules:
            record.params["department_rules"] = ", ".join(f"{r.name}:{r.effect}" for r in reg.rules.rules)
        names = [d.name for d in reg.datasets]
        if len(set(names)) != len(names):
            raise InvalidInput("the registration names the same dataset twice")
        for decl in reg.datasets:
            if decl.department != reg.department:
                raise PermissionDenied(f"dataset '{decl.qualified_name}' belongs to another department")
            decl.check_levels(self._levels)
        if not reg.endpoint:
            raise InvalidInput("adapter_endpoint is required (host:port the gateway can dial)")
        # The adapter serves with the certificate it registers with (the interceptor refused it if revoked).
        with self._links.registering(reg.department, record.certificate_serial) as before:
            served = await self._links.describe(reg.department, reg.endpoint)
            check_same_datasets(list(reg.datasets), served)
            previous = await asyncio.to_thread(self._store.department, reg.department)
            if previous is not None and previous.endpoint != reg.endpoint:
                # An adapter whose certificate is revoked is not the department's any more, answering or not.
                if not self._links.is_revoked(before) and await self._answers(previous):
                    raise FailedPrecondition(
                        f"department '{reg.department}' already has a live adapter at {previous.endpoint}; stop it "
                        f"before starting another one (this one would serve at {reg.endpoint})")
                record.params["replaced_endpoint"] = previous.endpoint
            result = await asyncio.to_thread(
                self._store.replace_department, reg.department, reg.display_name or reg.department,
                reg.endpoint, list(reg.datasets), reg.matching_key, expected=previous.endpoint if previous else None,
                rules=reg.rules)
        self._reachable[reg.department] = True
        if previous is not None and previous.endpoint != reg.endpoint:
            log.warning("department %s: the adapter at %s replaces the one registered at %s, which does not "
                        "answer", reg.department, reg.endpoint, previous.endpoint)
        else:
            log.info("department %s: adapter at %s registered %d dataset(s)", reg.department, reg.endpoint,
                     len(reg.datasets))
        return result

    async def _answers(self, department: Department) -> bool:
        """Whether the adapter at the department's registered endpoint still answers as that department."""
        try:
            await self._links.describe(department.code, department.endpoint)
        except FedgateError:
            return False
        return True

    async def heartbeat(self, caller: Identity, record: RequestRecord, department: str, endpoint: str,
                        counts: dict[str, int]) -> tuple[Lease, str]:
        """An adapter renewing its lease: (whether it is still the registered one, the registered endpoint)."""
        self._own_department(caller, record, department)
        record.params["endpoint"] = endpoint
        current = await asyncio.to_thread(self._store.department, department)
        if current is None:
            log.warning("department %s: heartbeat from an adapter at %s that is not registered here; "
                        "it will register again", department, endpoint)
            return Lease.UNKNOWN, ""
        if current.endpoint != endpoint:
            record.params["registered_endpoint"] = current.endpoint
            log.warning("department %s: the adapter at %s is still running but was replaced by the one at %s; "
                        "told it so", department, endpoint, current.endpoint)
            return Lease.REPLACED, current.endpoint
        await asyncio.to_thread(self._store.record_heartbeat, department, endpoint, counts)
        self._links.note_certificate(department, record.certificate_serial)  # a renewed certificate, say
        record.audit = False  # a current lease renewed discloses nothing: not worth an audit entry each time
        return Lease.CURRENT, current.endpoint

    async def check_health(self) -> None:
        """Ask every registered adapter's health service whether it serves; store and log the outcome."""
        for department in await asyncio.to_thread(self._store.departments):
            reachable, why = await self._probe(department)
            await asyncio.to_thread(self._store.record_check, department.code, department.endpoint, reachable)
            before = self._reachable.get(department.code)
            self._reachable[department.code] = reachable
            if not reachable and before is not False:
                log.warning("department %s: adapter at %s is unreachable (%s)", department.code,
                            department.endpoint, why)
            elif reachable and before is False:
                log.info("department %s: adapter at %s is reachable again", department.code, department.endpoint)

    def _learn(self, department: Department) -> None:
        """After a restart the registration's stored certificate tells the links which serial to check."""
        if department.matching_key is not None:
            self._links.learn_certificate(department.code, department.matching_key.certificate_pem)

    async def _probe(self, department: Department) -> tuple[bool, str]:
        self._learn(department)
        try:
            channel = self._links.channel(department.code, department.endpoint)
        except DepartmentRevoked:
            return False, "its certificate is revoked"
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(),
                                     timeout=min(HEALTH_TIMEOUT_S, float(self.health_check_s)))
        except grpc.aio.AioRpcError as exc:
            return False, exc.code().name
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return False, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return True, ""

    async def watch_health(self) -> None:
        """Check every adapter's health every `health_check_s` seconds, until cancelled."""
        while True:
            try:
                await self.check_health()
            except Exception as exc:  # a store hiccup must not end the watch
                log.error("adapter health check failed", exc_info=exc)
            await asyncio.sleep(self.health_check_s)

    async def list(self, caller: Identity, record: RequestRecord, department: str | None) -> list[RegisteredDataset]:
        """Datasets the caller may see: a department its own, others what policy lets them list."""
        record.rule = self._policy.decide_for(caller, f"{department or '*'}.*", "list").require()
        if caller.role is Role.DEPARTMENT:
            if department and department != caller.org:
                raise PermissionDenied("a department may list only its own datasets")
            department = caller.org
        found = await asyncio.to_thread(self._store.list_datasets, department)
        alive, counts = await asyncio.to_thread(self._store.liveness)
        now = dt.datetime.now(dt.UTC)
        stale = dt.timedelta(seconds=STALE_AFTER_CHECKS * self.health_check_s)
        out = []
        for item in found:
            facts = alive.get(item.decl.department)
            count = counts.get((item.decl.department, item.decl.name))
            if facts is None or facts.reachable is None:
                state = "unknown"
            elif facts.reachable and facts.last_contact is not None and now - facts.last_contact <= stale:
                state = "live"
            else:
                state = "unreachable"
            out.append(dataclasses.replace(
                item, liveness=state, last_contact=facts.last_contact if facts else None,
                live_row_count=count.row_count if count else None, counted_at=count.counted_at if count else None))
        return out

    async def rules_of(self, department: str) -> tuple[DepartmentRules, dict[str, DatasetDecl]]:
        """The department's own rules as it registered them, and its datasets' declarations by qualified name."""
        found = await asyncio.to_thread(self._store.department, department)
        decls = await asyncio.to_thread(self._store.list_datasets, department)
        return (found.rules if found else NO_RULES), {d.decl.qualified_name: d.decl for d in decls}

    async def locate(self, qualified: str) -> tuple[Department, DatasetDecl]:
        """The department (with its adapter endpoint) and declaration of `dept.dataset`."""
        if len(qualified) > MAX_QUALIFIED_NAME:
            # Not echoed: a name this long is no dataset's, and an echo could exceed gRPC's status limit.
            raise InvalidInput(f"a dataset name (department.dataset) has at most {MAX_QUALIFIED_NAME} characters, "
                               f"not {len(qualified):,}")
        dept, sep, name = qualified.partition(".")
        if not sep or not dept or not name:
            raise InvalidInput(f"dataset must be written department.dataset, e.g. hrss.subsidies (got {qualified!r})")
        found = [d for d in await asyncio.to_thread(self._store.list_datasets, dept) if d.decl.name == name]
        department = await asyncio.to_thread(self._store.department, dept)
        if not found or department is None:
            raise NotFound(f"no dataset '{qualified}' is registered")
        self._learn(department)
        self._links.check_not_revoked(department.code)  # before any ticket or log entry is made for it
        return department, found[0].decl
