"""Registration and liveness: audited registrations, one live adapter per department, leases, health checks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import support
from fedgate.server import pki
from fedgate.adapters.config import AdapterConfig
from fedgate.adapters.server import Adapter, build_adapter, register
from fedgate.client.gateway import GatewayClient
from fedgate.core.datasets import RegisteredDataset
from fedgate.demo import processes
from fedgate.core.errors import ConfigError
from fedgate.gateway.config import GatewayConfig
from fedgate.gateway.registry import Registry
from fedgate.gateway.server import Gateway, build_gateway
from fedgate.core.identity import Identity
from fedgate.server.tls import TlsFiles

WHY = ("核查", "LIFE-1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _adapter_toml(servers, gw_address: str, vkey: Path, csv: Path, data_dir: Path, extra: str = "") -> Path:
    cfg = servers.tmp / f"adapter-{data_dir.name}.toml"
    cfg.write_text(support.adapter_toml("hrss", gw_address, servers.certs, support.SUBSIDIES_DECL.format(path=csv),
                                        vkey=vkey).replace(
        "workers = 0\n", f'workers = 0\nheartbeat_s = 1\ndata_dir = "{data_dir}"\n{extra}'))
    return cfg


async def _adapter(servers, gw, csv: Path, name: str = "a") -> Adapter:
    cfg = _adapter_toml(servers, f"127.0.0.1:{gw.port}", gw.vkey_path, csv, servers.tmp / f"hrss-{name}")
    adapter = await build_adapter(AdapterConfig.load(cfg))
    servers.adapters.append(adapter)
    return adapter


def _csv(tmp: Path, rows: int = 20) -> Path:
    csv = tmp / "s.csv"
    csv.write_text("".join(support.SUBSIDIES_CSV.splitlines(keepends=True)[:rows + 1]), encoding="utf-8")
    return csv


def _client(servers, gw, who: Identity = support.SUPERVISOR) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, who))


async def _until(what, timeout: float = 60.0, every: float = 0.2):
    """Poll the coroutine function `what` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        got = await what()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(every)


async def test_registration_is_audited_with_its_endpoint_and_a_digest_of_each_declaration(servers) -> None:
    gw = await servers.gateway()
    adapter = await _adapter(servers, gw, _csv(servers.tmp))
    async with _client(servers, gw, support.OFFICER) as officer:
        (_, entry), = await officer.search(action="registry.register", limit=1)
    params = dict(entry.params)
    assert params["endpoint"] == adapter.endpoint
    assert re.fullmatch(r"[0-9a-f]{64}", params["digest.subsidies"]), params
    assert "replaced_endpoint" not in params


async def test_a_second_adapter_of_a_live_department_is_refused_and_the_first_keeps_serving(servers) -> None:
    gw = await servers.gateway()
    csv = _csv(servers.tmp)
    first = await _adapter(servers, gw, csv, "first")
    with pytest.raises(ConfigError) as err:
        await _adapter(servers, gw, csv, "copy")
    assert f"already has a live adapter at {first.endpoint}" in str(err.value)
    async with _client(servers, gw) as client:
        rows, _ = await client.count_rows("hrss.subsidies", *WHY)
    assert rows == 20
    async with _client(servers, gw, support.OFFICER) as officer:
        (_, refused), = await officer.search(action="registry.register", decision="deny", limit=1)
    assert refused.status == "FAILED_PRECONDITION" and dict(refused.params)["endpoint"] != first.endpoint


async def test_datasets_shows_liveness_last_contact_and_the_live_row_count(servers) -> None:
    gw = await servers.gateway(settings="health_check_s = 1")
    csv = _csv(servers.tmp)
    adapter = await _adapter(servers, gw, csv)

    async def listed() -> RegisteredDataset:
        async with _client(servers, gw) as client:
            (item,) = await client.list_datasets()
        return item

    first = await listed()
    assert (first.liveness, first.live_row_count) == ("live", 20) and first.last_contact is not None
    # The department's source grows: the next heartbeat reports it.
    with csv.open("a", encoding="utf-8") as fh:
        fh.write("".join(f"{support.uscc(i)},公司{i},{i}\n" for i in range(100, 105)))

    async def grown() -> RegisteredDataset | None:
        item = await listed()
        return item if item.live_row_count == 25 else None

    now = await _until(grown)
    assert now is not None, await listed()
    assert now.decl.row_count == 20 and now.last_contact > first.last_contact  # type: ignore[operator]
    # As the supervisor sees it on the command line.
    files = TlsFiles.in_dir(servers.certs, support.SUPERVISOR)
    env = {**os.environ, "FEDGATE_GATEWAY": f"127.0.0.1:{gw.port}", "FEDGATE_CA": str(files.ca),
           "FEDGATE_CERT": str(files.cert), "FEDGATE_KEY": str(files.key), "COLUMNS": "200"}
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "fedgate", "datasets", "--json"],
                                  capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    (shown,) = json.loads(out.stdout)
    assert shown["liveness"] == "live" and shown["live_row_count"] == 25 and shown["last_contact"]
    table = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "fedgate", "datasets"],
                                    capture_output=True, text=True, env=env, timeout=120)
    assert "live" in table.stdout and "25" in table.stdout and "last contact" in table.stdout, table.stdout
    # The adapter stops: the gateway's health checks notice.
    servers.adapters.remove(adapter)
    await adapter.stop(0)

    async def gone() -> bool:
        return (await listed()).liveness == "unreachable"

    assert await _until(gone), await listed()


async def test_an_adapter_keeps_its_registration_across_a_gateway_restart(servers, caplog) -> None:
    caplog.set_level(logging.INFO, logger="fedgate.adapters.server")
    port = _free_port()

    async def gateway(registry: str) -> Gateway:
        cfg = servers.tmp / "gateway.toml"
        cfg.write_text(support.gateway_toml(servers.tmp / "gw-data", servers.certs).replace(
            'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"\n'
                                      f'registry_url = "sqlite+pysqlite:///{servers.tmp / registry}"'))
        gw = await build_gateway(GatewayConfig.load(cfg))
        servers.gateways.append(gw)
        return gw

    gw = await gateway("registry-1.db")
    await _adapter(servers, gw, _csv(servers.tmp))
    await servers.stop_gateway(gw)
    # The gateway comes back on its address with an empty registry (say, a new registry database).
    gw2 = await gateway("registry-2.db")

    async def registered() -> list[RegisteredDataset]:
        async with _client(servers, gw2) as client:
            return await client.list_datasets()

    assert await _until(registered), "the adapter did not register again with the restarted gateway"
    async with _client(servers, gw2) as client:
        rows, _ = await client.count_rows("hrss.subsidies", *WHY)
    assert rows == 20
    assert "registering again" in caplog.text


# --- real processes -------------------------------------------------------------------------------


def _log_has(server: processes.ServerProcess, pattern: str, timeout: float = 120.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, server.log_path.read_text(errors="replace"))
        if found or time.monotonic() > deadline:
            assert found, f"{server.name} never logged {pattern!r}:\n{server.log_tail(30)}"
            return found
        time.sleep(0.2)


@pytest.fixture
def deployment(tmp_path: Path):
    certs = tmp_path / "certs"
    pki.init_dir(certs, [Identity.department("hrss"), support.SUPERVISOR, support.OFFICER])
    started: list[processes.ServerProcess] = []

    def start(name: str, args: list[str], wait: bool = True) -> processes.ServerProcess:
        proc = processes.start(name, args, tmp_path)
        started.append(proc)
        if wait:
            processes.wait_ready(proc, timeout=120)
        return proc

    yield tmp_path, certs, start
    for proc in reversed(started):
        if proc.proc.poll() is None:
            os.kill(proc.proc.pid, 18)  # SIGCONT, in case a test left it stopped
        processes.stop(proc)


def _adapter_cfg(tmp: Path, certs: Path, gateway: str, name: str, extra: str = "") -> Path:
    csv = tmp / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    cfg = tmp / f"{name}.toml"
    cfg.write_text(support.adapter_toml("hrss", gateway, certs, support.SUBSIDIES_DECL.format(path=csv),
                                        vkey=tmp / "gw" / "log-signing.vkey").replace(
        "workers = 0\n", f'workers = 0\nheartbeat_s = 1\ndata_dir = "{tmp / name}"\n{extra}'))
    return cfg


def test_a_replaced_adapter_is_told_so_and_stops_with_an_error(deployment) -> None:
    tmp, certs, start = deployment
    (tmp / "gateway.toml").write_text(support.gateway_toml(tmp / "gw", certs).replace(
        "[tls]", "health_check_s = 1\n\n[tls]"))
    gw = start("gateway", ["gateway", "serve", "--config", str(tmp / "gateway.toml")])
    first = start("first", ["adapter", "serve", "--config",
                            str(_adapter_cfg(tmp, certs, f"127.0.0.1:{gw.port}", "first"))])
    first_endpoint = str(first.info["endpoint"])
    # The first adapter hangs (stopped): it no longer answers, so another may take over.
    os.kill(first.proc.pid, 19)  # SIGSTOP
    second = start("second", ["adapter", "serve", "--config",
                              str(_adapter_cfg(tmp, certs, f"127.0.0.1:{gw.port}", "second"))])
    second_endpoint = str(second.info["endpoint"])
    _log_has(gw, rf"hrss: the adapter at {re.escape(second_endpoint)} replaces the one registered at "
                 rf"{re.escape(first_endpoint)}")
    os.kill(first.proc.pid, 18)  # SIGCONT: it comes back, and its next heartbeat learns it was replaced
    code = first.proc.wait(60)
    assert code != 0
    _log_has(first, rf"queries to the adapter at {re.escape(second_endpoint)}, which registered after this one")

    async def check() -> None:
        files = TlsFiles.in_dir(certs, support.SUPERVISOR)
        async with GatewayClient(f"127.0.0.1:{gw.port}", files) as client:
            rows, _ = await client.count_rows("hrss.subsidies", *WHY)
        assert rows == 20
        async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(certs, support.OFFICER)) as officer:
            (_, entry), = await officer.search(action="registry.register", decision="allow", limit=1)
        params = dict(entry.params)
        assert (params["endpoint"], params["replaced_endpoint"]) == (second_endpoint, first_endpoint)

    asyncio.run(check())
    assert second.proc.poll() is None  # the one now registered keeps serving


def test_an_adapter_whose_gateway_is_down_retries_with_backoff_and_says_so(deployment) -> None:
    tmp, certs, start = deployment
    port = _free_port()
    (tmp / "gateway.toml").write_text(support.gateway_toml(tmp / "gw", certs).replace(
        'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"'))
    # Once, so the gateway's log key exists for the adapter to pin; then the gateway is down.
    processes.stop(start("gateway-first", ["gateway", "serve", "--config", str(tmp / "gateway.toml")]))
    cfg = _adapter_cfg(tmp, certs, f"127.0.0.1:{port}", "hrss")
    cfg.write_text(cfg.read_text().replace("register_timeout_s = 10\n", ""))  # the default: keep trying
    adapter = start("adapter", ["adapter", "serve", "--config", str(cfg)], wait=False)
    line = rf"gateway 127\.0\.0\.1:{port} unreachable \(UNAVAILABLE[^)]*\); retrying in (\d+\.\d) s"
    _log_has(adapter, line)
    # It backs off: the delays grow.
    deadline = time.monotonic() + 60
    while len(delays := [float(d) for d in re.findall(line, adapter.log_path.read_text(errors="replace"))]) < 3:
        assert time.monotonic() < deadline and adapter.proc.poll() is None, adapter.log_tail()
        time.sleep(0.2)
    assert delays[0] < delays[1] < delays[2], delays
    start("gateway", ["gateway", "serve", "--config", str(tmp / "gateway.toml")])
    processes.wait_ready(adapter, timeout=120)  # registered once the gateway is up
    assert adapter.proc.poll() is None


async def test_two_takeovers_at_once_leave_one_registration_and_refuse_the_other(servers, monkeypatch) -> None:
    gw = await servers.gateway()
    csv = _csv(servers.tmp)
    dead = await _adapter(servers, gw, csv, "dead")
    servers.adapters.remove(dead)
    await dead.stop(0)
    # Both takeovers find the registered adapter gone before either is stored: the race, made certain.
    both_checked = asyncio.Barrier(2)
    answers = Registry._answers

    async def checked_together(self, department):  # type: ignore[no-untyped-def]
        alive = await answers(self, department)
        await asyncio.wait_for(both_checked.wait(), 30)
        return alive

    monkeypatch.setattr(Registry, "_answers", checked_together)
    takers = []
    for name in ("one", "two"):
        cfg = AdapterConfig.load(_adapter_toml(servers, f"127.0.0.1:{gw.port}", gw.vkey_path, csv,
                                               servers.tmp / f"hrss-{name}"))
        taker = await build_adapter(cfg, register_now=False)
        servers.adapters.append(taker)
        takers.append((cfg, taker))
    results = await asyncio.gather(*(register(cfg, a.endpoint, a.datasets, a.matching_key) for cfg, a in takers),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1, results
    assert isinstance(refused[0], ConfigError) and "changed meanwhile" in str(refused[0]), refused[0]
    winner = takers[results.index(None)][1]
    registered = gw.store.department("hrss")
    assert registered is not None and registered.endpoint == winner.endpoint
    async with _client(servers, gw) as client:
        rows, _ = await client.count_rows("hrss.subsidies", *WHY)
    assert rows == 20
