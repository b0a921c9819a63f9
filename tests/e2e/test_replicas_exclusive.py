"""One server per port and per data directory: a second one refuses to start and says why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import support
from fedgate.adapters.config import AdapterConfig
from fedgate.adapters.server import build_adapter
from fedgate.core.errors import ConfigError
from fedgate.gateway.config import GatewayConfig
from fedgate.gateway.server import build_gateway


def _gateway_config(servers, tmp_path: Path, name: str, data_dir: Path, listen: str = "127.0.0.1:0") -> GatewayConfig:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(support.gateway_toml(data_dir, servers.certs).replace('listen = "127.0.0.1:0"',
                                                                          f'listen = "{listen}"'))
    return GatewayConfig.load(cfg)


async def test_a_second_gateway_on_a_port_in_use_refuses_naming_the_address(servers, tmp_path: Path) -> None:
    first = await servers.gateway(tmp_path / "gw-1")
    address = f"127.0.0.1:{first.port}"
    # Before: gRPC's SO_REUSEPORT let the second one bind the same port and both listened.
    with pytest.raises(ConfigError) as err:
        servers.gateways.append(await build_gateway(_gateway_config(servers, tmp_path, "gw-2", tmp_path / "gw-2",
                                                                    address)))
    assert str(err.value).startswith(f"{address}: cannot listen on this address")
    assert "another process is listening on it" in str(err.value)
    # It let go of its own data_dir: a gateway there starts.
    servers.gateways.append(await build_gateway(_gateway_config(servers, tmp_path, "gw-2", tmp_path / "gw-2")))


async def test_a_second_gateway_on_a_data_dir_in_use_refuses_naming_the_lock_and_holder(servers,
                                                                                     tmp_path: Path) -> None:
    first = await servers.gateway(tmp_path / "shared")
    # Before: it started on another port and appended to the same SQLite audit log.
    with pytest.raises(ConfigError) as err:
        servers.gateways.append(await build_gateway(_gateway_config(servers, tmp_path, "gw-2", tmp_path / "shared")))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'shared' / 'fedgate.lock'}: the data directory is in use by another "
                              f"gateway (pid {os.getpid()}")
    assert "give this one its own data_dir" in message
    # Once the first stops, the data directory is free again.
    await servers.stop_gateway(first)
    servers.gateways.append(await build_gateway(_gateway_config(servers, tmp_path, "gw-2", tmp_path / "shared")))


async def test_a_second_adapter_on_a_data_dir_in_use_refuses_naming_the_lock(servers, tmp_path: Path) -> None:
    gw = await servers.gateway(tmp_path / "gw")
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    first = await servers.adapter("hrss", gw, support.SUBSIDIES_DECL.format(path=csv))
    config = AdapterConfig.load(tmp_path / "adapter-hrss.toml")  # the same file: the same data_dir
    with pytest.raises(ConfigError) as err:
        servers.adapters.append(await build_adapter(config))
    assert str(err.value).startswith(f"{first.config.data_dir / 'fedgate.lock'}: the data directory is in use "
                                     "by another adapter of 'hrss' (pid ")
    assert [d.decision for d in first.disclosures.disclosures()] == []
