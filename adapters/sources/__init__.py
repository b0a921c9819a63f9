"""Data sources an adapter reads its datasets from: CSV files, SQLite files, any SQLAlchemy URL."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fedgate.core.datasets import FieldType
    from fedgate.core.filters import Filter
    from fedgate.core.tomlconfig import Table

Value = str | int | None


class Source(Protocol):
    """Where one dataset's rows live. Rows never leave the adapter except through a protocol."""

    def describe(self) -> str:
        """A short, value-free description for messages (file path, table name)."""
        ...

    def columns(self) -> list[str]:
        """The column names the source offers."""
        ...

    def check_types(self, types: Mapping[str, FieldType]) -> None:
        """Refuse (DataSourceError) a declared field its column cannot hold, naming both types.

        Sources without column types (CSV) check each value in `count()` instead.
        """
        ...

    def count(self, where: Filter | None = None) -> int:
        """The number of rows passing `where` (all rows if None), checking every row's shape on the way."""
        ...

    def rows(self, columns: Sequence[str], where: Filter | None = None) -> Iterator[tuple[Value, ...]]:
        """Stream the given columns of every row passing `where`."""
        ...

    def close(self) -> None:
        """Release what the source holds open (a database's connection pool); called when the adapter stops."""
        ...


@dataclass(frozen=True)
class SourceSpec:
    """Where a dataset's rows are, as configured; which of these a kind uses is the kind's own business."""

    kind: str
    path: Path | None = None
    url: str | None = None
    table: str | None = None


@dataclass(frozen=True)
class SourceKind:
    """One kind of source (`kind = "csv"`): how its TOML table is read and how it is opened."""

    name: str
    # Reads the kind's keys from a dataset's `source` table (the caller then refuses any other key).
    read: Callable[[Table], SourceSpec]
    open: Callable[[SourceSpec, Mapping[str, FieldType]], Source]
