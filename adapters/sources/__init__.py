"""Data sources an adapter reads its datasets from: CSV files, SQLite files, any SQLAlchemy URL, Spark."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from fedgate.core.datasets import FieldType
    from fedgate.core.filters import Filter
    from fedgate.core.tomlconfig import Table

Value = str | int | None
K = TypeVar("K")
P = TypeVar("P")
T = TypeVar("T")


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


@runtime_checkable
class ChunkMapper(Protocol):
    """A source that runs the per-row work where its rows are (a Spark source: on the executors).

    Optional: sources without it stream rows to the adapter, whose worker pool does the work.
    """

    def map_chunks(self, columns: Sequence[str], where: Filter | None, size: int,
                   task: Callable[[K, list[tuple[Any, ...]]], T], keyed: K, rows_hint: int = 0,
                   doing: str = "computing tokens", row_bytes: int = 64) -> Iterator[T]:
        """``task(keyed, chunk)`` for every chunk of at most `size` rows passing `where`, results streamed back.

        `keyed` (the keys the task needs) lives outside the adapter only while the iterator runs; `doing` says
        what the task does, value-free (a Spark job's description). Close the iterator to stop early.
        """
        ...

    def batch_rows(self) -> int:
        """How many rows (or points) one `map_parts` job should carry to give every core a partition's worth.

        A method, not a property: it may start the engine (seconds), so call it off the event loop."""
        ...

    def map_parts(self, task: Callable[[K, P], T], keyed: K, parts: Sequence[P], doing: str) -> list[T]:
        """``task(keyed, part)`` for every part, as one job, results in the parts' order (blocking).

        `keyed` lives outside the adapter only while the job runs; `doing` (value-free) labels the job."""
        ...


def chunk_mapper(source: Source) -> ChunkMapper | None:
    """The source's own per-row execution, or None: its rows are then worked on in the adapter."""
    if isinstance(source, ChunkMapper):
        return source
    wrapped = getattr(source, "mapper", None)  # a wrapper (GuardedSource) offers its source's, guarded
    return wrapped() if callable(wrapped) else None


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


# The query a source read serves now (the ticket's query id), for sources that can label their work with it:
# a Spark source makes it its jobs' group, so the department's operator finds them in the Spark UI.
_SERVING: ContextVar[str | None] = ContextVar("fedgate_serving_query", default=None)


@contextlib.contextmanager
def serving(query_id: str) -> Iterator[None]:
    """Source reads in this context (and in threads started with a copy of it) serve `query_id`."""
    token = _SERVING.set(query_id)
    try:
        yield
    finally:
        _SERVING.reset(token)


def serving_query() -> str | None:
    """The query id the current source read serves, or None (start-up checks, heartbeats)."""
    return _SERVING.get()
