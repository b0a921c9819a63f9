from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import support
# The session fails if any process it started is still running at its end (tests/leftovers.py).
from leftovers import pytest_configure, pytest_sessionfinish  # noqa: F401
from fedgate.server import pki
from fedgate.adapters.config import AdapterConfig
from fedgate.adapters.server import Adapter, build_adapter
from fedgate.demo.datagen import DemoDepartment
from fedgate.demo.deployment import adapter_toml, policy_copy
from fedgate.demo.runner import demo_specs
from fedgate.gateway.config import GatewayConfig
from fedgate.gateway.server import Gateway, build_gateway
from fedgate.core.identity import Identity


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One private CA with the gateway, three departments, a supervisor and an officer."""
    directory = tmp_path_factory.mktemp("certs")
    pki.init_dir(directory, [*(Identity.department(d) for d in support.DEPARTMENTS),
                             support.SUPERVISOR, support.OFFICER])
    return directory


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The local Spark session every unit test that runs Spark shares, held by a source of the test settings.

    A JVM costs about 10 s to start: one for the run, not one per module. Stopped at the end of the run,
    where the last source's close must end it and its JVM (no process outlives the tests).
    """
    why = support.spark_missing()
    if why:
        pytest.skip(why)
    from pyspark import SparkContext

    from fedgate.adapters.sources.spark import SESSIONS, SparkSource, SparkSpec

    holder = SparkSource(SparkSpec("spark", table="held", master=support.SPARK_TEST_MASTER,
                                   conf=tuple(support.SPARK_TEST_CONF.items())))
    try:
        yield SESSIONS.get()
    finally:
        proc = getattr(SparkContext._gateway, "proc", None)
        holder.close()
        assert SparkContext._gateway is None and SparkContext._active_spark_context is None
        assert proc is None or proc.poll() is not None


@pytest.fixture
async def servers(tmp_path: Path, certs: Path) -> AsyncIterator[Servers]:
    s = Servers(tmp_path, certs)
    try:
        yield s
    finally:
        await s.stop_all()


@pytest.fixture
async def own_ca_servers(tmp_path: Path) -> AsyncIterator[Servers]:
    """Servers whose CA is this test's own (tmp_path/certs: gateway, samr, the supervisor and the officer;
    no hrss), every server checking callers against tmp_path/certs/crl.pem, which starts empty."""
    directory = tmp_path / "certs"
    pki.init_dir(directory, [Identity.department("samr"), support.SUPERVISOR, support.OFFICER])
    s = Servers(tmp_path, directory, crl=pki.write_crl(directory))
    try:
        yield s
    finally:
        await s.stop_all()


class Servers:
    """Starts real gateway and adapter servers in this event loop; stops them all at the end."""

    def __init__(self, tmp: Path, certs: Path, crl: Path | None = None) -> None:
        self.tmp = tmp
        self.certs = certs
        self.crl = crl  # every server's tls.crl, if given
        self.gateways: list[Gateway] = []
        self.adapters: list[Adapter] = []

    async def gateway(self, data_dir: Path | None = None, settings: str = "") -> Gateway:
        """A gateway on a free port; `settings` are extra top-level lines for its gateway.toml."""
        cfg = self.tmp / "gateway.toml"
        if "policy_dir" not in settings:  # the shipped policies, with the tests' comparison weights
            policies = self.tmp / "gw-policies"
            if not policies.exists():
                support.with_test_rules(policy_copy(policies))
            settings += f'\npolicy_dir = "{policies}"'
        cfg.write_text(support.gateway_toml(data_dir or self.tmp / "gw-data", self.certs, self.crl).replace(
            "[tls]", f"{settings}\n[tls]"))
        gw = await build_gateway(GatewayConfig.load(cfg))
        self.gateways.append(gw)
        return gw

    def adapter_config(self, dept: str, gateway: Gateway, datasets: str, cert_stem: str | None = None) -> AdapterConfig:
        cfg = self.tmp / f"adapter-{dept}.toml"
        vkey = gateway.vkey_path
        cfg.write_text(support.adapter_toml(dept, f"127.0.0.1:{gateway.port}", self.certs, datasets, cert_stem,
                                            vkey=vkey, crl=self.crl))
        return AdapterConfig.load(cfg)

    async def adapter(self, dept: str, gateway: Gateway, datasets: str) -> Adapter:
        adapter = await build_adapter(self.adapter_config(dept, gateway, datasets))
        self.adapters.append(adapter)
        return adapter

    async def demo_adapters(self, gw: Gateway, workdir: Path, departments: Iterable[DemoDepartment],
                            codes: Iterable[str]) -> dict[str, Adapter]:
        """Adapters for the named demo departments (generated into `workdir`), threads for workers."""
        _, specs = demo_specs([d for d in departments if d.code in set(codes)], self.certs)
        adapters = {}
        for spec in specs:
            cfg = workdir / f"adapter-{spec.code}.toml"
            spec = dataclasses.replace(spec, data_dir=self.tmp / f"adapter-{spec.code}", workers=0)
            cfg.write_text(adapter_toml(spec, f"127.0.0.1:{gw.port}", gw.vkey_path))
            adapters[spec.code] = await build_adapter(AdapterConfig.load(cfg))
            self.adapters.append(adapters[spec.code])
        return adapters

    async def stop_gateway(self, gw: Gateway) -> None:
        self.gateways.remove(gw)
        await gw.stop(0)

    async def stop_all(self) -> None:
        for a in self.adapters:
            await a.stop(0)
        for g in self.gateways:
            await g.stop(0)
