"""Data sources an adapter reads its datasets from: CSV files, SQLite files, any SQLAlchemy URL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fedgate.datasets import FieldType
    from fedgate.filters import Filter

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
