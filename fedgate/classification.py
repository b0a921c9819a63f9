"""Classification levels (分级), loaded from policy data rather than code."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from fedgate.tomlconfig import Table


@dataclass(frozen=True)
class Level:
    name: str
    display: str
    rank: int


@dataclass(frozen=True)
class Levels:
    """The ordered set of levels a deployment uses."""

    levels: tuple[Level, ...]

    def __post_init__(self) -> None:
        names = [lv.name for lv in self.levels]
        if not names or len(set(names)) != len(names):
            raise ValueError("levels must be non-empty with unique names")

    def names(self) -> tuple[str, ...]:
        return tuple(lv.name for lv in self.levels)

    def get(self, name: str) -> Level | None:
        return next((lv for lv in self.levels if lv.name == name), None)

    @classmethod
    def from_file(cls, path: Path) -> Levels:
        table = Table.load(path)
        levels = []
        for entry in table.tables("levels"):
            levels.append(Level(entry.str("name"), entry.str("display", ""), entry.int("rank")))
            entry.done()
        table.done()
        return cls(tuple(sorted(levels, key=lambda lv: lv.rank)))


@cache
def default_levels() -> Levels:
    """The levels shipped in fedgate.policies (L1 public … L4 restricted)."""
    with resources.as_file(resources.files("fedgate.policies") / "levels.toml") as path:
        return Levels.from_file(path)
