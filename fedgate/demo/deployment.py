"""One way to describe a deployment, write its TOML files and run it as processes.

A gateway and its department adapters are described by frozen dataclasses;
`gateway_toml` and `adapter_toml` render them in the form `GatewayConfig.load`
and `AdapterConfig.load` read; `Deployment` (and the `deployed` context
manager over it) writes the files, starts every server with
`fedgate.demo.processes`, waits until each is ready and stops them in order.
The demo, the benchmarks and the tests all start servers through here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from fedgate.core.classification import policies_dir
from fedgate.demo import processes
from fedgate.core.errors import FailedPrecondition
from fedgate.core.identity import GATEWAY, Identity
from fedgate.server.tls import TlsFiles

# What a key of a rendered file may hold; a Mapping is written as an inline table.
TomlValue: TypeAlias = str | int | Path | Mapping[str, "TomlValue"]

__all__ = ["Deployment", "DatasetSpec", "DepartmentSpec", "FieldSpec", "GatewaySpec", "adapter_toml",
           "datasets_toml", "deployed", "fields", "gateway_toml", "policy_copy"]


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One column of a dataset, as an adapter declares it."""

    name: str
    type: str  # "string" | "int" | "date"
    level: str  # "L1".."L4"
    key: str | None = None  # "resident_id" | "uscc" | "plain" | None
    bounds: tuple[int, int] | None = None  # an int field's declared min and max (noisy sums clamp to it)


_BOUNDS = re.compile(r"(-?[0-9]+)\.\.(-?[0-9]+)")


def _field(text: str) -> FieldSpec:
    name, type_, level, *rest = text.split(":")
    extra = rest[0] if rest else ""
    bounds = _BOUNDS.fullmatch(extra)
    if bounds:
        return FieldSpec(name, type_, level, None, (int(bounds[1]), int(bounds[2])))
    return FieldSpec(name, type_, level, extra or None)


def fields(text: str) -> tuple[FieldSpec, ...]:
    """Fields from one line: "name:type:level[:key | :min..max]" each, separated by spaces, in column order."""
    return tuple(_field(f) for f in text.split())


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset an adapter serves; ``source`` is its `source` table (kind, path or url, table)."""

    name: str
    description: str
    source: dict[str, str]
    fields: tuple[FieldSpec, ...]


@dataclasses.dataclass(frozen=True)
class GatewaySpec:
    """A gateway.toml; relative paths are relative to the directory the file is written to."""

    data_dir: Path
    tls: TlsFiles
    listen: str = "127.0.0.1:0"
    policy_dir: Path | None = None
    workers: int | None = None  # None: the gateway's default (all cores)
    options: Mapping[str, TomlValue] = dataclasses.field(default_factory=dict)  # any other top-level key

    @property
    def vkey_path(self) -> Path:
        """Where the gateway writes the log verifier key that adapters pin."""
        return self.data_dir / "log-signing.vkey"

    @classmethod
    def in_dir(cls, data_dir: Path, certs: Path, **settings: Any) -> GatewaySpec:
        """A gateway with the certificate `fedgate certs init` wrote into `certs`; `settings` are other fields."""
        return dataclasses.replace(cls(data_dir, TlsFiles.in_dir(certs, GATEWAY)), **settings)


@dataclasses.dataclass(frozen=True)
class DepartmentSpec:
    """One department's adapter.toml, but for the gateway's address, known only once it runs."""

    code: str
    datasets: tuple[DatasetSpec, ...]
    tls: TlsFiles
    display_name: str = ""
    data_dir: Path | None = None  # None: the adapter's default
    workers: int | None = None  # None: the adapter's default (all cores)
    register_timeout_s: int | None = None  # None: keep retrying
    listen: str = "127.0.0.1:0"
    options: Mapping[str, TomlValue] = dataclasses.field(default_factory=dict)  # any other top-level key
    tables: str = ""  # TOML tables of the department's own, as written: [approvals], [[rules]]

    @classmethod
    def in_dir(cls, code: str, datasets: Sequence[DatasetSpec], certs: Path, **settings: Any) -> DepartmentSpec:
        """A department with the certificate `fedgate certs init` wrote into `certs`; `settings` are other fields."""
        tls = TlsFiles.in_dir(certs, Identity.department(code))
        return dataclasses.replace(cls(code, tuple(datasets), tls), **settings)


# --------------------------------------------------------------------------- rendering


def _value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)


def _key(key: str) -> str:
    # A key such as "spark.executor.memory" is quoted: bare, TOML reads its dots as nested tables.
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _keys(values: Mapping[str, TomlValue | None]) -> list[str]:
    return [f"{key} = {_value(value)}" for key, value in values.items() if value is not None]


def _tls(tls: TlsFiles) -> list[str]:
    return ["", "[tls]", *_keys({"ca": tls.ca, "cert": tls.cert, "key": tls.key, "crl": tls.crl})]


def gateway_toml(spec: GatewaySpec) -> str:
    """The gateway.toml for `spec`; [tls] comes last."""
    top: dict[str, TomlValue | None] = {"listen": spec.listen, "data_dir": spec.data_dir,
                                        "policy_dir": spec.policy_dir, "workers": spec.workers, **spec.options}
    return "\n".join([*_keys(top), *_tls(spec.tls)]) + "\n"


def datasets_toml(datasets: Sequence[DatasetSpec]) -> str:
    """The [[datasets]] tables of an adapter.toml."""
    out: list[str] = []
    for ds in datasets:
        out += ["", "[[datasets]]", *_keys({"name": ds.name, "description": ds.description or None,
                                            "source": ds.source})]
        for f in ds.fields:
            out += ["", "[[datasets.fields]]",
                    *_keys({"name": f.name, "type": f.type, "level": f.level, "key": f.key,
                            "min": f.bounds[0] if f.bounds else None, "max": f.bounds[1] if f.bounds else None})]
    return "\n".join(out) + "\n" if out else ""


def adapter_toml(spec: DepartmentSpec, gateway: str, gateway_log_key: Path) -> str:
    """The adapter.toml for `spec`, dialling the gateway at `gateway` whose verifier key is `gateway_log_key`."""
    top: dict[str, TomlValue | None] = {
        "department": spec.code, "display_name": spec.display_name or None, "listen": spec.listen,
        "gateway": gateway, "gateway_log_key": gateway_log_key, "data_dir": spec.data_dir,
        "register_timeout_s": spec.register_timeout_s, "workers": spec.workers, **spec.options}
    own = spec.tables.strip() + "\n" if spec.tables.strip() else ""
    return "\n".join([*_keys(top), *_tls(spec.tls)]) + "\n" + own + datasets_toml(spec.datasets)


def policy_copy(target: Path, safeguards: str | None = None, rules: str = "", exact: bool = False) -> Path:
    """A copy of the shipped policy files in `target`, with `safeguards` as its safeguards.toml (None: the
    shipped one) and `rules` (Casbin policy lines) appended to its policy.csv; `exact`: every aggregate
    answered exactly (for runs that check answers against the truth, or measure the pipeline)."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(policies_dir(), target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    if safeguards is not None:
        (target / "safeguards.toml").write_text(safeguards, encoding="utf-8")
    if rules:
        with (target / "policy.csv").open("a", encoding="utf-8") as f:
            f.write(rules)
    if exact:
        exact_aggregates(target)
    return target


def exact_aggregates(policy_dir: Path) -> None:
    """Answer every aggregate exactly: levels.toml `dp = "exact"` at every level."""
    levels = policy_dir / "levels.toml"
    levels.write_text(levels.read_text(encoding="utf-8").replace('dp = "noisy"', 'dp = "exact"'), encoding="utf-8")


# --------------------------------------------------------------------------- processes


class Deployment:
    """The servers of one deployment as processes, with their configs and logs in `workdir`.

    `procs` holds the running ones by name: "gateway" and each department's code.
    """

    def __init__(self, workdir: Path, gateway: GatewaySpec, departments: Sequence[DepartmentSpec]) -> None:
        self.workdir = workdir
        self.gateway = gateway
        self.departments = {d.code: d for d in departments}
        self.procs: dict[str, processes.ServerProcess] = {}
        self.exit_codes: dict[str, int | None] = {}  # by process name, filled by stop()

    @property
    def address(self) -> str:
        """The running gateway's host:port."""
        return f"127.0.0.1:{self.procs['gateway'].port}"

    def start_gateway(self, timeout: float = 60.0) -> processes.ServerProcess:
        """Write gateway.toml, start the gateway and wait until it is ready."""
        cfg = self.workdir / "gateway.toml"
        cfg.write_text(gateway_toml(self.gateway), encoding="utf-8")
        self.procs["gateway"] = processes.start("gateway", ["gateway", "serve", "--config", str(cfg)], self.workdir)
        processes.wait_ready(self.procs["gateway"], timeout)
        return self.procs["gateway"]

    def start_adapters(self, *codes: str, timeout: float = 120.0) -> None:
        """Start the named departments' adapters (default: all) at once, then wait until each is ready."""
        for code in codes or tuple(self.departments):
            cfg = self.workdir / f"adapter-{code}.toml"
            key = self.gateway.vkey_path
            cfg.write_text(adapter_toml(self.departments[code], self.address, key), encoding="utf-8")
            self.procs[code] = processes.start(f"adapter-{code}", ["adapter", "serve", "--config", str(cfg)],
                                               self.workdir)
        for code in codes or tuple(self.departments):
            processes.wait_ready(self.procs[code], timeout)

    def kill(self, name: str) -> None:
        """SIGKILL one server ("gateway" or a department's code) and reap it."""
        proc = self.procs[name].proc
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> dict[str, int | None]:
        """Stop every server, adapters before the gateway; exit codes by process name."""
        for proc in reversed(list(self.procs.values())):
            self.exit_codes[proc.name] = processes.stop(proc)
        return self.exit_codes

    def unclean(self) -> FailedPrecondition | None:
        """An error naming the servers that did not exit 0 when stopped, or None."""
        failed = {name: code for name, code in self.exit_codes.items() if code != 0}
        if not failed:
            return None
        return FailedPrecondition(f"servers did not shut down cleanly: {failed}; logs in {self.workdir / 'logs'}")


@contextlib.contextmanager
def deployed(workdir: Path, gateway: GatewaySpec, departments: Sequence[DepartmentSpec],
             timeout: float = 120.0) -> Iterator[Deployment]:
    """Every server of the deployment running and ready; all stopped on the way out."""
    deployment = Deployment(workdir, gateway, departments)
    try:
        deployment.start_gateway()
        deployment.start_adapters(timeout=timeout)
        yield deployment
    finally:
        deployment.stop()
