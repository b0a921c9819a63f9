"""Registering and listing datasets: who may, and what is checked, before the store is touched."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fedgate.datasets import DatasetDecl, RegisteredDataset
from fedgate.errors import InvalidInput, NotFound, PermissionDenied
from fedgate.gateway.adapter_links import AdapterLinks, check_same_datasets
from fedgate.gateway.registry_store import Department, RegistryStore
from fedgate.gateway.policy import Policy
from fedgate.matching_keys import MatchingKey
from fedgate.identity import Identity, Role
from fedgate.interceptors import RequestRecord


# A department code and a dataset name have at most 63 characters each (fedgate.datasets).
MAX_QUALIFIED_NAME = 127
OWN_DEPARTMENT_RULE = "invariant: a department certificate registers its own department's datasets only"


@dataclass(frozen=True)
class Registration:
    department: str
    display_name: str
    endpoint: str
    datasets: tuple[DatasetDecl, ...]
    matching_key: MatchingKey | None = None


class Registry:
    def __init__(self, store: RegistryStore, policy: Policy, links: AdapterLinks) -> None:
        self._store = store
        self._policy = policy
        self._levels = policy.levels
        self._links = links

    async def register(self, caller: Identity, record: RequestRecord, reg: Registration) -> tuple[int, int]:
        """Validate, check policy, ownership and the adapter endpoint, then replace the department's datasets."""
        record.rule = self._policy.decide_for(caller, f"{reg.department}.*", "register").require()
        # Ownership is an invariant, not policy: a certificate speaks for its own department only.
        if caller.role is not Role.DEPARTMENT or caller.org != reg.department:
            record.rule = OWN_DEPARTMENT_RULE
            raise PermissionDenied(
                f"certificate is for department '{caller.org}'; it cannot register datasets for '{reg.department}'"
            )
        names = [d.name for d in reg.datasets]
        if len(set(names)) != len(names):
            raise InvalidInput("the registration names the same dataset twice")
        for decl in reg.datasets:
            if decl.department != reg.department:
                raise PermissionDenied(f"dataset '{decl.qualified_name}' belongs to another department")
            decl.check_levels(self._levels)
        if not reg.endpoint:
            raise InvalidInput("adapter_endpoint is required (host:port the gateway can dial)")
        served = await self._links.describe(reg.department, reg.endpoint)
        check_same_datasets(list(reg.datasets), served)
        return await asyncio.to_thread(
            self._store.replace_department, reg.department, reg.display_name or reg.department,
            reg.endpoint, list(reg.datasets), reg.matching_key)

    async def list(self, caller: Identity, record: RequestRecord, department: str | None) -> list[RegisteredDataset]:
        """Datasets the caller may see: a department its own, others what policy lets them list."""
        record.rule = self._policy.decide_for(caller, f"{department or '*'}.*", "list").require()
        if caller.role is Role.DEPARTMENT:
            if department and department != caller.org:
                raise PermissionDenied("a department may list only its own datasets")
            department = caller.org
        return await asyncio.to_thread(self._store.list_datasets, department)

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
        return department, found[0].decl
