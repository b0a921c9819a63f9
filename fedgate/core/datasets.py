"""Dataset declarations: what a department serves, its schema and levels, never rows.

A declaration is validated when it is built, so an invalid one cannot exist;
the classification level names are checked separately against the
deployment's levels (``check_levels``), since those are policy data.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

from fedgate.core.classification import Levels
from fedgate.crypto.ids import IdKind
from fedgate.core.errors import InvalidInput

_DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_DEPARTMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Declared bounds stay well inside a signed 64-bit value, so noise scaled by them is an i64 too.
VALUE_LIMIT = 10**15


class FieldType(enum.StrEnum):
    STRING = "string"
    INT = "int"
    DATE = "date"


def _enum(cls: type[enum.StrEnum], value: str, what: str) -> enum.StrEnum:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise InvalidInput(f"{what}: unknown value {value!r} (allowed: {allowed})") from None


@dataclass(frozen=True)
class FieldDecl:
    """One field of a declared dataset: its type, classification level and, for a key, its identifier kind."""

    name: str
    type: FieldType
    level: str  # a level name of levels.toml, e.g. "L2"
    key: IdKind | None = None
    description: str = ""
    # An int field's declared range (min, max): a noisy sum clamps every value into it, and its noise is
    # calibrated to the largest value one row can add (docs/privacy.md). None: not declared.
    bounds: tuple[int, int] | None = None

    @property
    def sensitivity(self) -> int:
        """The most one row can change a sum of this field by (its bounds' largest magnitude)."""
        if self.bounds is None:
            raise ValueError(f"field '{self.name}' declares no bounds")
        return max(abs(self.bounds[0]), abs(self.bounds[1]))

    @classmethod
    def build(cls, name: str, type: str, level: str, key: str | None = None,
              description: str = "", where: str = "field", bounds: tuple[int, int] | None = None) -> FieldDecl:
        """Build from plain strings, with errors that name the field."""
        if not _FIELD_NAME.match(name):
            raise InvalidInput(f"{where}: field name {name!r} must be a letter or '_' then letters, digits or '_' (max 63)")
        ftype = _enum(FieldType, type, f"{where} '{name}' type")
        kind = _enum(IdKind, key, f"{where} '{name}' key kind") if key else None
        if not level:
            raise InvalidInput(f"{where} '{name}': missing classification level")
        if bounds is not None:
            low, high = bounds
            if ftype is not FieldType.INT or kind is not None:
                raise InvalidInput(f"{where} '{name}': only an integer field that is not a key may declare bounds "
                                   "(min, max)")
            if not (-VALUE_LIMIT <= low <= high <= VALUE_LIMIT):
                raise InvalidInput(f"{where} '{name}': bounds need min <= max, both within ±{VALUE_LIMIT:,} "
                                   f"(got {low:,}..{high:,})")
        return cls(name, ftype, level, kind, description, bounds)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DatasetDecl:
    department: str
    name: str
    fields: tuple[FieldDecl, ...]
    description: str = ""
    row_count: int = 0

    def __post_init__(self) -> None:
        where = f"dataset '{self.department}.{self.name}'"
        if not _DEPARTMENT.match(self.department):
            raise InvalidInput(f"{where}: department code must be lower-case letters, digits, '-' or '_'")
        if not _DATASET_NAME.match(self.name):
            raise InvalidInput(f"{where}: name must be lower-case letters, digits or '_', starting with a letter")
        if not self.fields:
            raise InvalidInput(f"{where}: declares no fields")
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise InvalidInput(f"{where}: duplicate field '{f.name}'")
            seen.add(f.name)
        if not any(f.key for f in self.fields):
            raise InvalidInput(f"{where}: declares no key field (set `key` to resident_id, uscc or plain on one field)")
        if self.row_count < 0:
            raise InvalidInput(f"{where}: row count cannot be negative")

    @property
    def qualified_name(self) -> str:
        return f"{self.department}.{self.name}"

    def field(self, name: str) -> FieldDecl | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def field_types(self) -> dict[str, FieldType]:
        return {f.name: f.type for f in self.fields}

    def check_levels(self, levels: Levels) -> None:
        """Raise InvalidInput if a field names a level the deployment does not define."""
        for f in self.fields:
            if levels.get(f.level) is None:
                raise InvalidInput(
                    f"dataset '{self.qualified_name}' field '{f.name}': unknown classification level "
                    f"{f.level!r} (allowed: {', '.join(levels.names())})"
                )


@dataclass(frozen=True)
class RegisteredDataset:
    """A declaration as the gateway's registry holds it."""

    decl: DatasetDecl
    department_display_name: str
    registered_at: dt.datetime
    # What the gateway last heard from the department's adapter (decl.row_count is the
    # count at registration): live | unreachable | unknown, and the count it reported last.
    liveness: str = "unknown"
    last_contact: dt.datetime | None = None
    live_row_count: int | None = None
    counted_at: dt.datetime | None = None


@dataclass(frozen=True)
class FieldGrant:
    """A field a query may release, at the level the gateway holds, in the form policy allows."""

    name: str
    level: str
    form: str  # plaintext | masked
