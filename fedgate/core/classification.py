"""Classification levels (分级), their disclosure ceilings and masks, loaded from policy data."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from fedgate.core.errors import ConfigError
from fedgate.core.tomlconfig import Table

# Disclosure forms, least revealing first.
FORMS = ("aggregate", "masked", "plaintext")
_MASK = re.compile(r"^keep:(\d{1,2}):(\d{1,2})$")
DP_MODES = ("exact", "noisy")
DP_PERIODS = ("day", "month", "year")
# The keys of a level (or a `[datasets."dept.name"]` table) that set its differential-privacy policy.
_DP_KEYS = {"dp": "mode", "dp_epsilon": "epsilon", "dp_budget": "budget", "dp_period": "period"}


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
class DpPolicy:
    """How an aggregate touching a level (or one dataset) is answered: exactly, or with noise of ε per answer
    charged to a budget per agency, dataset and period (fedgate.query.noise, fedgate.gateway.budget)."""

    mode: str = "exact"     # exact | noisy
    epsilon: float = 0.0    # ε spent by one noisy answer
    budget: float = 0.0     # ε one agency may spend on one dataset per period
    period: str = "month"   # day | month | year (UTC calendar periods)

    @property
    def noisy(self) -> bool:
        return self.mode == "noisy"

    def problem(self) -> str:
        """What is wrong with this policy ("" : nothing), for the config error naming its table."""
        if self.mode not in DP_MODES:
            return f"dp must be one of {', '.join(DP_MODES)}"
        if self.period not in DP_PERIODS:
            return f"dp_period must be one of {', '.join(DP_PERIODS)}"
        if self.noisy and not 0 < self.epsilon <= self.budget:
            return "a noisy policy needs 0 < dp_epsilon <= dp_budget"
        return ""


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
    dp: DpPolicy = DpPolicy()  # exact or noisy aggregates (levels.toml: dp, dp_epsilon, dp_budget, dp_period)


@dataclass(frozen=True)
class Levels:
    """The ordered set of levels a deployment uses, with the masks for masked disclosure."""

    levels: tuple[Level, ...]
    masks: dict[str, Mask] = field(default_factory=dict, compare=False)
    # `[datasets."dept.name"]`: the DP keys a dataset overrides, whatever level an answer touches.
    datasets: Mapping[str, Mapping[str, str | float]] = field(default_factory=dict, compare=False)

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

    def dp_for(self, dataset: str, level: str | None) -> DpPolicy:
        """The DP policy of an aggregate over `dataset` touching fields of at most `level` (None: no field,
        e.g. an unfiltered count, the dataset's public size: exact unless the dataset says otherwise)."""
        lv = self.get(level) if level else None
        base = lv.dp if lv else DpPolicy()
        return dataclasses.replace(base, **self.datasets.get(dataset, {}))  # type: ignore[arg-type]

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
                          _masks(entry.table("masks")) if entry.has("masks") else {},
                          DpPolicy(**_dp_keys(entry)))  # type: ignore[arg-type]
            if level.dp.problem():
                raise entry.error("dp", level.dp.problem())
            if level.ceiling not in FORMS:
                raise entry.error("ceiling", f"must be one of {', '.join(FORMS)}")
            if level.min_aggregate < 0:
                raise entry.error("min_aggregate", "must not be negative")
            entry.done()
            levels.append(level)
        masks = _masks(table.table("masks")) if table.has("masks") else {}
        datasets = _datasets(table.table("datasets")) if table.has("datasets") else {}
        table.done()
        try:
            out = cls(tuple(sorted(levels, key=lambda lv: lv.rank)), masks, datasets)
        except ValueError as exc:
            raise ConfigError(str(path), str(exc)) from None
        for name in datasets:  # an override must make sense over every level an answer may touch
            problem = next((p for p in (out.dp_for(name, lv).problem() for lv in (None, *out.names())) if p), "")
            if problem:
                raise ConfigError(str(path), f"datasets.\"{name}\": {problem}")
        return out


def _dp_keys(table: Table) -> dict[str, str | float]:
    """The DP keys a table sets, by DpPolicy field; keys left out are not given (the defaults apply)."""
    out: dict[str, str | float] = {}
    for key, name in _DP_KEYS.items():
        if table.has(key):
            out[name] = table.text(key) if name in ("mode", "period") else table.number(key)
    return out


def _datasets(table: Table) -> dict[str, dict[str, str | float]]:
    out = {}
    for name in table.keys():
        dt = table.table(name)
        out[name] = _dp_keys(dt)
        dt.done()
    table.done()
    return out


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
