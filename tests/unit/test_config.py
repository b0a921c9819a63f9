"""Configuration files: every mistake names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

import support
from fedgate.adapters.config import AdapterConfig
from fedgate.core.errors import ConfigError
from fedgate.gateway.config import GatewayConfig

GOOD_GATEWAY = 'listen = "127.0.0.1:0"\ndata_dir = "d"\n[tls]\nca = "ca.pem"\ncert = "g.pem"\nkey = "g.key"\n'


def test_gateway_config_resolves_paths_relative_to_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(GOOD_GATEWAY)
    loaded = GatewayConfig.load(cfg)
    assert loaded.data_dir == tmp_path / "d"
    assert loaded.tls.ca == tmp_path / "ca.pem"
    assert loaded.effective_registry_url.endswith(f"{tmp_path}/d/registry.db")


@pytest.mark.parametrize("text, message", [
    (GOOD_GATEWAY.replace('listen = "127.0.0.1:0"\n', ""), "missing key 'listen'"),
    (GOOD_GATEWAY.replace('key = "g.key"\n', ""), "missing key 'tls.key'"),
    (GOOD_GATEWAY + "", None),
    ("lisen = 'x'\n" + GOOD_GATEWAY, "unknown key 'lisen'"),
    (GOOD_GATEWAY.replace("[tls]\n", "[tls]\ncrt = 'x'\n"), "unknown key 'tls.crt'"),
    (GOOD_GATEWAY.replace('"127.0.0.1:0"', "5"), "key 'listen': expected str, got int"),
    ("listen = ", "not valid TOML"),
    ("adapter_idle_timeout_s = 0\n" + GOOD_GATEWAY, "key 'adapter_idle_timeout_s': must be a positive number of seconds"),
    ("flags_timeout_s = -5\n" + GOOD_GATEWAY, "key 'flags_timeout_s': must be a positive number of seconds"),
], ids=["missing", "missing-nested", "good", "unknown", "unknown-nested", "wrong-type", "syntax", "idle-timeout",
        "flags-timeout"])
def test_gateway_config_errors_name_file_and_key(tmp_path: Path, text: str, message: str | None) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(text)
    if message is None:
        GatewayConfig.load(cfg)
        return
    with pytest.raises(ConfigError) as err:
        GatewayConfig.load(cfg)
    assert str(cfg) in str(err.value)
    assert message in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        GatewayConfig.load(tmp_path / "nope.toml")


def _adapter(tmp_path: Path, datasets: str) -> Path:
    cfg = tmp_path / "dept.toml"
    cfg.write_text(support.adapter_toml("hrss", "127.0.0.1:1", tmp_path, datasets))
    return cfg


DECL = support.SUBSIDIES_DECL.format(path="s.csv")


def test_adapter_config_loads_datasets(tmp_path: Path) -> None:
    loaded = AdapterConfig.load(_adapter(tmp_path, DECL))
    (ds,) = loaded.datasets
    assert ds.decl.qualified_name == "hrss.subsidies"
    assert ds.source.path == tmp_path / "s.csv"
    assert [f.key for f in ds.decl.fields] == ["uscc", None, None]
    assert [f.bounds for f in ds.decl.fields] == [None, None, (0, 50_000)]  # declared min and max


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.replace('level = "L2"', 'level = "L7"'), "unknown classification level 'L7'"),
    (lambda d: d.replace('name = "company_name"', 'name = "uscc"'), "duplicate field 'uscc'"),
    (lambda d: d.replace('key = "uscc"\n', ""), "declares no key field"),
    (lambda d: d.replace('type = "int"', 'typ = "int"'), "missing key 'datasets[0].fields[2].type'"),
    (lambda d: d.replace('level = "L2"', 'level = "L2"\nlevle = "L2"'), "unknown key 'datasets[0].fields[1].levle'"),
    (lambda d: d.replace('kind = "csv"', 'kind = "xls"'), "unknown source kind 'xls'"),
    (lambda d: d + d, "dataset 'subsidies' is declared twice"),
    (lambda d: d.replace("max = 50000\n", ""), "declare both `min` and `max`"),
    (lambda d: d.replace("max = 50000", "max = -1"), "bounds need min <= max"),
    (lambda d: d.replace('level = "L2"', 'level = "L2"\nmin = 0\nmax = 1'), "only an integer field"),
], ids=["unknown-level", "duplicate-field", "no-key", "missing-type", "unknown-key", "bad-source", "dup-dataset",
        "half-bounds", "bad-bounds", "bounds-on-text"])
def test_adapter_config_errors(tmp_path: Path, edit, message: str) -> None:
    cfg = _adapter(tmp_path, edit(DECL))
    with pytest.raises(ConfigError) as err:
        AdapterConfig.load(cfg)
    assert str(cfg) in str(err.value)
    assert message in str(err.value)


def test_deploy_examples_load() -> None:
    """The example configurations in deploy/ are the ones the code documents, and they load."""
    from fedgate.adapters.config import EXAMPLE as ADAPTER_EXAMPLE
    from fedgate.gateway.config import EXAMPLE as GATEWAY_EXAMPLE

    deploy = Path(__file__).resolve().parents[2] / "deploy"
    assert (deploy / "gateway.example.toml").read_text() == GATEWAY_EXAMPLE
    assert (deploy / "adapter.example.toml").read_text() == ADAPTER_EXAMPLE
    GatewayConfig.load(deploy / "gateway.example.toml")
    loaded = AdapterConfig.load(deploy / "adapter.example.toml")
    assert loaded.datasets[0].decl.qualified_name == "hrss.subsidies"
