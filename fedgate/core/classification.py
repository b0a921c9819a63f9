"""Classification levels (分级), their disclosure ceilings and masks, loaded from policy data."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from fedgate.core.errors import ConfigError
from fedgate.core.tomlconfig import Table

# Disclosure forms, least revealing first.
FORMS = ("aggregate", "masked", "plaintext")
_MASK = re.compile(r"^keep:(\d{1,2}):(\d{1,2})$")


def form_rank(form: str) -> int:
    return FORMS.index(form)


@dataclass(frozen=True)
class Mask:
    """Keep the first `start` and last `end` characters; star the rest."""

    start: int
    end: int

    @classmethod
    def parse(cls, spec: str) -> Mask:
        m = _MASK.match(spec)
        if not m:
            raise ValueError(f"mask {spec!r} is not keep:A:B")
        return cls(int(m.group(1)), int(m.group(2)))

    def apply(self, value: str) -> str:
        n = len(value)
        if n == 0:
            return value
        # Never reveal everything: on short values keep less, always starring something.
        start = min(self.start, max(n - 1, 0))
        end = min(self.end, max(n - 1 - start, 0))
        return value[:start] + "*" * (n - start - end) + value[n - end:]


@dataclass(frozen=True)
class Level:
    """One classification level from levels.toml: its rank, its disclosure ceiling and its masks."""

    name: str  # e.g. "L3"
    display: str  # for people, e.g. "敏感 sensitive"
    rank: int  # higher is more sensitive
    # The most a disclosure of a field of this level may show: plaintext, masked or aggregate.
    ceiling: str = "plaintext"
    min_aggregate: int = 0  # a count or sum over fewer rows touching this level is suppressed
    masks: dict[str, Mask] = field(default_factory=dict, compare=False)  # overrides for this level


@dataclass(frozen=True)
class Levels:
    """The ordered set of levels a deployment uses, with the masks for masked disclosure."""

    levels: tuple[Level, ...]
    masks: dict[str, Mask] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        names = [lv.name for lv in self.levels]
        if not names or len(set(names)) != len(names):
            raise ValueError("levels must be non-empty with unique names")

    def names(self) -> tuple[str, ...]:
        return tuple(lv.name for lv in self.levels)

    def get(self, name: str) -> Level | None:
        return next((lv for lv in self.levels if lv.name == name), None)

    def highest(self, names: list[str]) -> Level | None:
        found = [lv for lv in (self.get(n) for n in names) if lv is not None]
        return max(found, key=lambda lv: lv.rank) if found else None

    def mask_for(self, key_kind: str | None, field_type: str, level: str | None = None) -> Mask:
        """The mask for a field: the level's own rule for its kind or type, else the general one."""
        lv = self.get(level) if level else None
        for masks in ((lv.masks if lv else {}), self.masks):
            found = masks.get(key_kind or "") or masks.get(field_type)
            if found:
                return found
        return Mask(1, 0)

    @classmethod
    def from_file(cls, path: Path) -> Levels:
        table = Table.load(path)
        levels = []
        for entry in table.tables("levels"):
            level = Level(entry.text("name"), entry.text("display", ""), entry.integer("rank"),
                          entry.text("ceiling", "plaintext"), entry.integer("min_aggregate", 0),
                          _masks(entry.table("masks")) if entry.has("masks") else {})
            if level.ceiling not in FORMS:
                raise entry.error("ceiling", f"must be one of {', '.join(FORMS)}")
            if level.min_aggregate < 0:
                raise entry.error("min_aggregate", "must not be negative")
            entry.done()
            levels.append(level)
        masks = _masks(table.table("masks")) if table.has("masks") else {}
        table.done()
        try:
            return cls(tuple(sorted(levels, key=lambda lv: lv.rank)), masks)
        except ValueError as exc:
            raise ConfigError(str(path), str(exc)) from None


def _masks(table: Table) -> dict[str, Mask]:
    masks = {}
    for kind in table.keys():
        try:
            masks[kind] = Mask.parse(table.text(kind))
        except ValueError as exc:
            raise table.error(kind, str(exc)) from None
    table.done()
    return masks


def policies_dir() -> Path:
    """The policy files shipped in fedgate.policies (a real directory: the package is not zipped)."""
    return Path(str(resources.files("fedgate.policies")))


@cache
def default_levels() -> Levels:
    """The levels shipped in fedgate.policies (L1 public … L4 restricted)."""
    return Levels.from_file(policies_dir() / "levels.toml")
