"""Where the local span stores are: each gateway and adapter writes `<data_dir>/spans.db`.

`fedgate trace` reads the stores it is given, or finds them: the data_dir of every
gateway or adapter configuration in the working directory (and in the demo's
`fedgate-demo`), and any spans.db a few directories down. When it finds none it
says exactly what it looked at and what to pass.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fedgate.core.errors import ConfigError

STORE_NAME = "spans.db"
ENV = "FEDGATE_TRACE_STORES"
DEMO_DIR = "fedgate-demo"
MAX_DEPTH = 3
_SKIP = {".venv", "venv", "node_modules", "__pycache__", ".git", ".tox", ".mypy_cache", ".pytest_cache"}


@dataclass
class Found:
    """The stores to read, and what was searched (for a message when the trace is not in them)."""

    stores: list[Path] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)

    def add(self, path: Path) -> None:
        path = path.resolve()
        if path not in self.stores:
            self.stores.append(path)


def data_dir_of(config: Path) -> Path | None:
    """The data_dir a gateway or adapter configuration names (an adapter's default if it names none)."""
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    raw = data.get("data_dir")
    if isinstance(raw, str):
        return (config.parent / raw).resolve()
    department = data.get("department")
    if isinstance(department, str) and "gateway" in data:  # an adapter; see fedgate.adapters.config
        return (config.parent / f"{department}-adapter-data").resolve()
    return None


def _store_files(root: Path, depth: int = MAX_DEPTH) -> Iterator[Path]:
    """spans.db files at most `depth` directories below `root`, skipping virtualenvs and hidden directories."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name == STORE_NAME and entry.is_file():
            yield entry
        elif depth > 0 and entry.is_dir() and not entry.is_symlink() and entry.name not in _SKIP \
                and not entry.name.startswith("."):
            yield from _store_files(entry, depth - 1)


def find(stores: list[Path], configs: list[Path], cwd: Path | None = None,
         environ: dict[str, str] | None = None) -> Found:
    """The stores named by --store (files or directories searched for spans.db) and --config, else the defaults."""
    found = Found()
    env = os.environ if environ is None else environ
    for config in configs:
        if not config.is_file():
            raise ConfigError(str(config), "--config: no such file (give a gateway's or adapter's .toml)")
        data_dir = data_dir_of(config)
        if data_dir is None:
            raise ConfigError(str(config), "--config: not a gateway or adapter configuration (no data_dir)")
        found.add(data_dir / STORE_NAME)
        found.searched.append(f"{data_dir / STORE_NAME} (data_dir of {config})")
    named = list(stores) or [Path(p) for p in env.get(ENV, "").split(os.pathsep) if p]
    for path in named:
        if path.is_dir():
            for file in _store_files(path, depth=8):
                found.add(file)
            found.searched.append(f"{path}/**/{STORE_NAME}")
        elif path.is_file():
            found.add(path)
            found.searched.append(str(path))
        else:
            raise ConfigError(str(path), "--store: no such file or directory (give a spans.db or a directory "
                                         "holding one, e.g. the gateway's data_dir)")
    if configs or named:
        return found
    cwd = (cwd or Path.cwd()).resolve()
    for directory in (cwd, cwd / DEMO_DIR):
        for config in sorted(directory.glob("*.toml")):
            if (data_dir := data_dir_of(config)) is not None:
                found.add(data_dir / STORE_NAME)
                found.searched.append(f"{data_dir / STORE_NAME} (data_dir of {config})")
    for file in _store_files(cwd):
        found.add(file)
    found.searched.append(f"{cwd}/**/{STORE_NAME} (up to {MAX_DEPTH} directories down)")
    return found


def how_to_point(capital: bool = False) -> str:
    """What to pass when the stores are elsewhere."""
    return (f"{'E' if capital else 'e'}ach gateway and adapter keeps its spans in <data_dir>/{STORE_NAME}: "
            "pass --store with those files or directories (repeatable), --config with the gateway's and "
            f"adapters' .toml files, or set {ENV} (paths separated by '{os.pathsep}'), or run this in the "
            "directory holding their configurations")
