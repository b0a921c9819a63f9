"""Source kinds are a registry: a kind added in one module and one KINDS entry is read and opened by config."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

import support
from fedgate.adapters.config import AdapterConfig
from fedgate.adapters.sources import SourceKind, SourceSpec, Value, kinds
from fedgate.core.datasets import FieldType
from fedgate.core.errors import ConfigError
from fedgate.core.filters import Filter
from fedgate.core.tomlconfig import Table

DECL = support.SUBSIDIES_DECL.format(path="s.csv")


class ListSource:
    """An in-memory source: what a trial kind needs to be usable end to end through configuration."""

    def __init__(self, name: str) -> None:
        self.name = name

    def describe(self) -> str:
        return f"list {self.name}"

    def columns(self) -> list[str]:
        return ["uscc"]

    def check_types(self, types: Mapping[str, FieldType]) -> None:
        pass

    def count(self, where: Filter | None = None) -> int:
        return 0

    def rows(self, columns: Sequence[str], where: Filter | None = None) -> Iterator[tuple[Value, ...]]:
        return iter(())

    def close(self) -> None:
        pass


def _adapter(tmp_path: Path, datasets: str) -> Path:
    (cfg := tmp_path / "dept.toml").write_text(support.adapter_toml("hrss", "127.0.0.1:1", tmp_path, datasets))
    return cfg


def _read(table: Table) -> SourceSpec:
    return SourceSpec("list", table=table.text("name"))


def test_the_known_kinds_are_listed_in_a_refusal(tmp_path: Path) -> None:
    cfg = _adapter(tmp_path, DECL.replace('kind = "csv"', 'kind = "xls"'))
    with pytest.raises(ConfigError, match=r"unknown source kind 'xls' \(allowed: csv, sqlite, sql, spark\)"):
        AdapterConfig.load(cfg)


def test_a_registered_kind_is_read_and_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(kinds.KINDS, "list", SourceKind("list", _read, lambda spec, types: ListSource(spec.table or "")))
    text = DECL.replace('source = { kind = "csv", path = "s.csv" }', 'source = { kind = "list", name = "trial" }')
    assert text != DECL
    (ds,) = AdapterConfig.load(_adapter(tmp_path, text)).datasets
    assert ds.source == SourceSpec("list", table="trial")
    source = ds.open_source()
    assert isinstance(source, ListSource) and source.describe() == "list trial"


def test_a_kind_refuses_keys_it_does_not_read(tmp_path: Path) -> None:
    text = DECL.replace('source = { kind = "csv", path = "s.csv" }',
                        'source = { kind = "csv", path = "s.csv", table = "t" }')
    assert text != DECL
    with pytest.raises(ConfigError, match="unknown key"):
        AdapterConfig.load(_adapter(tmp_path, text))
