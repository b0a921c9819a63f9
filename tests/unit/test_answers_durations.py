"""Every duration key (`*_s`) of the gateway's and adapters' configurations refuses zero and negative values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import support
from fedgate.adapters.config import AdapterConfig
from fedgate.core.errors import ConfigError
from fedgate.gateway.config import GatewayConfig

GATEWAY = 'listen = "127.0.0.1:0"\ndata_dir = "d"\n[tls]\nca = "ca.pem"\ncert = "g.pem"\nkey = "g.key"\n'
# Keys where 0 is documented as "off".
ZERO_IS_OFF = {"policy_watch_s"}


def _durations(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name.endswith("_s")]


def test_every_duration_key_is_known() -> None:
    # A new *_s key shows up here, and the parametrised tests below then check it.
    assert {"ticket_ttl_s", "adapter_idle_timeout_s", "flags_timeout_s"} <= set(_durations(GatewayConfig))
    assert {"register_timeout_s"} <= set(_durations(AdapterConfig))


@pytest.mark.parametrize("key", _durations(GatewayConfig))
@pytest.mark.parametrize("value", [-5, 0])
def test_gateway_durations(tmp_path: Path, key: str, value: int) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"{key} = {value}\n" + GATEWAY)
    if value == 0 and key in ZERO_IS_OFF:
        assert getattr(GatewayConfig.load(cfg), key) == 0
        return
    with pytest.raises(ConfigError, match=rf"gateway.toml: key '{key}': must be .*positive number of seconds, "
                                          rf"got {value}"):
        GatewayConfig.load(cfg)


@pytest.mark.parametrize("key", _durations(AdapterConfig))
@pytest.mark.parametrize("value", [-5, 0])
def test_adapter_durations(tmp_path: Path, key: str, value: int) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    cfg = tmp_path / "dept.toml"
    text = support.adapter_toml("hrss", "127.0.0.1:1", tmp_path, support.SUBSIDIES_DECL.format(path=csv))
    text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} ="))
    cfg.write_text(f"{key} = {value}\n" + text)
    with pytest.raises(ConfigError, match=rf"dept.toml: key '{key}': must be a positive number of seconds, "
                                          rf"got {value}"):
        AdapterConfig.load(cfg)


@pytest.mark.parametrize(("text", "problem"), [
    ("127.0.0.1", "has no port"),
    ("gateway.example", "has no port"),
    ("127.0.0.1:0", "a port is 1 to 65535"),
    ("127.0.0.1:70000", "a port is 1 to 65535"),
    ("http://x:1", "is not host:port"),
])
def test_adapter_gateway_address(tmp_path: Path, text: str, problem: str) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    cfg = tmp_path / "dept.toml"
    cfg.write_text(support.adapter_toml("hrss", text, tmp_path, support.SUBSIDIES_DECL.format(path=csv)))
    with pytest.raises(ConfigError, match=f"key 'gateway': .*{problem}"):
        AdapterConfig.load(cfg)
