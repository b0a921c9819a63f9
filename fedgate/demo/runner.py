"""`fedgate demo`: data, certificates, a gateway and every department adapter on loopback.

Each server is a separate process with its own certificate; the demo talks to
them only over mTLS, as a supervisor would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedgate import pki
from fedgate.client import GatewayClient
from fedgate.datasets import RegisteredDataset
from fedgate.demo import processes
from fedgate.demo.datagen import DemoDepartment, generate
from fedgate.errors import FailedPrecondition
from fedgate.identity import GATEWAY, Identity, Role
from fedgate.tls import TlsFiles, secure_channel

SUPERVISOR = Identity(Role.SUPERVISOR, "dcb", "zhangwei")
OFFICER = Identity(Role.OFFICER, "audit", "liqiang")


def _toml_str(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=False)


def gateway_toml() -> str:
    return (
        'listen = "127.0.0.1:0"\n'
        'data_dir = "gateway-data"\n\n'
        "[tls]\n"
        'ca = "certs/ca.pem"\ncert = "certs/gateway.pem"\nkey = "certs/gateway.key"\n'
    )


def adapter_toml(dept: DemoDepartment, gateway_address: str) -> str:
    ident = Identity.department(dept.code)
    out = [
        f"department = {_toml_str(dept.code)}",
        f"display_name = {_toml_str(dept.display_name)}",
        'listen = "127.0.0.1:0"',
        f"gateway = {_toml_str(gateway_address)}",
        # Copied out of band in a real deployment; here the file is simply next door.
        'gateway_log_key = "gateway-data/log-signing.vkey"',
        f'data_dir = "adapter-data/{dept.code}"',
        "",
        "[tls]",
        'ca = "certs/ca.pem"',
        f'cert = "certs/{ident.file_stem}.pem"',
        f'key = "certs/{ident.file_stem}.key"',
    ]
    for ds in dept.datasets:
        out += ["", "[[datasets]]", f"name = {_toml_str(ds.name)}",
                f"description = {_toml_str(ds.description)}",
                "source = { " + ", ".join(f"{k} = {_toml_str(v)}" for k, v in ds.source.items()) + " }"]
        for f in ds.fields:
            out += ["", "[[datasets.fields]]", f"name = {_toml_str(f.name)}",
                    f"type = {_toml_str(f.type)}", f"level = {_toml_str(f.level)}"]
            if f.key:
                out.append(f"key = {_toml_str(f.key)}")
    return "\n".join(out) + "\n"


@dataclass
class DemoResult:
    departments: tuple[DemoDepartment, ...]
    datasets: list[RegisteredDataset]
    exit_codes: dict[str, int | None] = field(default_factory=dict)


async def _check_health(address: str, tls: TlsFiles, server: Identity) -> None:
    async with secure_channel(address, tls, server) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise FailedPrecondition(f"{server} at {address} reports {reply.status}")


def _wait_for_interrupt(address: str, certs: Path, say: Callable[[str], None]) -> None:
    files = TlsFiles.in_dir(certs, SUPERVISOR)
    try:
        # Inside the try: a Ctrl-C right after the prompt is the normal way out too.
        say("servers keep running; as the demo supervisor, in another shell:\n"
            f"  export FEDGATE_GATEWAY={address} FEDGATE_CA={files.ca} FEDGATE_CERT={files.cert} "
            f"FEDGATE_KEY={files.key}\n  fedgate datasets\n"
            "press Ctrl-C to stop them")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("stopping")


def run_demo(workdir: Path, rows: int = 10_000, seed: int = 20261129,
             say: Callable[[str], None] = print,
             on_datasets: Callable[[list[RegisteredDataset]], None] | None = None,
             keep_running: bool = False) -> DemoResult:
    """Run the whole demo; every server process is stopped on return, Ctrl-C included.

    With `keep_running`, the servers stay up after the scenarios until Ctrl-C,
    so the CLI can be pointed at them.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"generating demo data ({rows} rows per dataset, seed {seed}) in {workdir}")
    departments = generate(workdir, rows=rows, seed=seed)
    certs = workdir / "certs"
    pki.init_dir(certs, [Identity.department(d.code) for d in departments] + [SUPERVISOR, OFFICER])
    supervisor_tls = TlsFiles.in_dir(certs, SUPERVISOR)

    (workdir / "gateway.toml").write_text(gateway_toml())
    started: list[processes.ServerProcess] = []
    result = DemoResult(departments, [])
    try:
        gateway = processes.start("gateway", ["gateway", "serve", "--config", str(workdir / "gateway.toml")], workdir)
        started.append(gateway)
        processes.wait_ready(gateway)
        address = f"127.0.0.1:{gateway.port}"
        say(f"gateway up on {address}")
        for dept in departments:
            cfg = workdir / f"adapter-{dept.code}.toml"
            cfg.write_text(adapter_toml(dept, address))
            started.append(processes.start(f"adapter-{dept.code}", ["adapter", "serve", "--config", str(cfg)], workdir))
        for proc in started[1:]:
            processes.wait_ready(proc)
        say(f"{len(started) - 1} department adapters up and registered")

        async def check_and_list() -> list[RegisteredDataset]:
            await _check_health(address, supervisor_tls, GATEWAY)
            for dept, proc in zip(departments, started[1:]):
                await _check_health(f"127.0.0.1:{proc.port}", supervisor_tls, Identity.department(dept.code))
            async with GatewayClient(address, supervisor_tls) as client:
                return await client.list_datasets()

        result.datasets = asyncio.run(check_and_list())
        if on_datasets:
            on_datasets(result.datasets)
        if keep_running:
            _wait_for_interrupt(address, certs, say)
    finally:
        # Adapters first, so none of them is left talking to a gateway that is gone.
        for proc in reversed(started):
            result.exit_codes[proc.name] = processes.stop(proc)
    failed = {name: code for name, code in result.exit_codes.items() if code != 0}
    if failed:
        raise FailedPrecondition(f"servers did not shut down cleanly: {failed}; logs in {workdir / 'logs'}")
    return result


__all__ = ["run_demo", "DemoResult", "SUPERVISOR", "OFFICER"]
