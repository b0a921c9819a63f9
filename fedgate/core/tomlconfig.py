"""Strict reading of TOML configuration files.

Every key is either read or reported: a missing key or an unknown one (a typo
such as `lisen`) names the file and the dotted key, so an operator can fix it
without reading code.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from fedgate.core.addresses import address_problem
from fedgate.core.errors import ConfigError

T = TypeVar("T")
_MISSING: Any = object()


class Table:
    """One TOML table whose keys are consumed one by one, then checked with ``done()``."""

    def __init__(self, path: Path, data: dict[str, Any], prefix: str = "") -> None:
        self.file = path
        self._data = data
        self._prefix = prefix
        self._seen: set[str] = set()

    @classmethod
    def load(cls, path: Path) -> Table:
        """Parse a TOML file, turning I/O and syntax errors into ConfigError."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(path), "file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), f"cannot read file: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from None
        return cls(path, data)

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(str(self.file), f"key '{self._prefix}{key}': {message}")

    def _get(self, key: str, kind: type[T], default: Any) -> T:
        self._seen.add(key)
        if key not in self._data:
            if default is _MISSING:
                raise ConfigError(str(self.file), f"missing key '{self._prefix}{key}'")
            return default  # type: ignore[no-any-return]
        value = self._data[key]
        # bool is an int in Python; a port of `true` is still a mistake.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def text(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, str, default)

    def integer(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, int, default)

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, bool, default)

    def number(self, key: str, default: Any = _MISSING) -> Any:
        """An integer or a float (TOML writes 10 and 10.0 apart), as a float."""
        if isinstance(self._data.get(key), int) and not isinstance(self._data.get(key), bool):
            return float(self._get(key, int, default))
        return self._get(key, float, default)

    def duration(self, key: str, default: Any = _MISSING, zero_turns_off: bool = False) -> Any:
        """A number of seconds that must be positive; with `zero_turns_off`, 0 (documented as off) too.

        Every duration key of the gateway's and adapters' configurations is read here, so
        `ticket_ttl_s = -5` is refused naming the file and the key.
        """
        value = self._get(key, int, default)
        if isinstance(value, int) and (value < 0 or (value == 0 and not zero_turns_off)):
            wanted = "0 (off) or a positive number of seconds" if zero_turns_off else "a positive number of seconds"
            raise self.error(key, f"must be {wanted}, got {value}")
        return value

    def address(self, key: str, default: Any = _MISSING, listen: bool = False) -> Any:
        """A host:port address (port 0 only for an address to listen on)."""
        value = self._get(key, str, default)
        if isinstance(value, str) and value != default and (problem := address_problem(value, listen)) is not None:
            raise self.error(key, problem)
        return value

    @property
    def prefix(self) -> str:
        """The dotted name of this table within its file ("" at the top, "tls." for [tls])."""
        return self._prefix

    def path(self, key: str, default: Any = _MISSING) -> Any:
        """A path, resolved relative to the directory of the config file."""
        raw: object = self._get(key, str, default)
        if not isinstance(raw, str):
            return raw  # the caller's default, e.g. None
        return (self.file.parent / raw).resolve()

    def texts(self, key: str, default: Any = _MISSING) -> Any:
        """A list of strings (or the default when the key is absent)."""
        items = self._get(key, list, default)
        if items is default:
            return items
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(f"{key}[{i}]", f"expected str, got {type(item).__name__}")
        return list(items)

    def table(self, key: str) -> Table:
        data = self._get(key, dict, _MISSING)
        return Table(self.file, data, f"{self._prefix}{key}.")

    def has(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> list[str]:
        return list(self._data)

    def tables(self, key: str, default: Any = _MISSING) -> list[Table]:
        items = self._get(key, list, default)
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.error(f"{key}[{i}]", "expected a table")
            out.append(Table(self.file, item, f"{self._prefix}{key}[{i}]."))
        return out

    def done(self) -> None:
        """Raise ConfigError naming the first key that nothing read."""
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise ConfigError(str(self.file), f"unknown key '{self._prefix}{unknown[0]}'")
