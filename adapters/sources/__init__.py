"""Data sources an adapter reads its datasets from: CSV files, SQLite files, any SQLAlchemy URL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

Value = str | int | None


class Source(Protocol):
    """Where one dataset's rows live. Rows never leave the adapter except through a protocol."""

    def describe(self) -> str:
        """A short, value-free description for messages (file path, table name)."""
        ...

    def columns(self) -> list[str]:
        """The column names the source offers."""
        ...

    def count(self) -> int:
        """The number of rows, checking every row's shape on the way."""
        ...

    def rows(self, columns: Sequence[str]) -> Iterator[tuple[Value, ...]]:
        """Stream the given columns of every row."""
        ...
