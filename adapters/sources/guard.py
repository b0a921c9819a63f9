"""A source as requests use it: a failure keeps its cause in the department and leaves as a reference.

A source that worked at start can fail later (a table renamed, a database down,
a file rewritten). The cause names the department's internals (database URL,
host, user, file path, table), so it is logged here, at ERROR, under a short
random reference, and the request fails with ``SourceFailed`` carrying only
that reference: the gateway, its audit log and the supervisor see the
reference, the department's operator finds the cause by it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from fedgate.adapters.sources import ChunkMapper, Source, Value, chunk_mapper
from fedgate.core.datasets import FieldType
from fedgate.core.errors import DataSourceError, FedgateError, SourceFailed
from fedgate.core.filters import Filter

log = logging.getLogger(__name__)
K = TypeVar("K")
P = TypeVar("P")
T = TypeVar("T")


def new_ref() -> str:
    """A short random reference: enough to find one failure in a department's log, nothing more."""
    return secrets.token_hex(4)


class GuardedSource:
    """Wraps a checked source for serving requests; see the module docstring."""

    def __init__(self, dataset: str, source: Source) -> None:
        self._dataset = dataset
        self._source = source

    def describe(self) -> str:
        return self._source.describe()

    def close(self) -> None:
        self._source.close()

    def _failed(self, doing: str, exc: Exception) -> NoReturn:
        ref = new_ref()
        # The full cause, here only. Values never reach it: CSV errors name lines and columns,
        # and SQL engines are created with hide_parameters.
        log.error("source failed (ref %s): dataset '%s', %s, while %s: %s", ref, self._dataset,
                  self._source.describe(), doing, exc, exc_info=exc)
        raise SourceFailed(ref) from None

    def _passes(self, exc: Exception) -> bool:
        # A caller's error (a filter naming no column...) is the caller's to read; everything
        # else raised while reading is the source's.
        return isinstance(exc, FedgateError) and not isinstance(exc, DataSourceError)

    def columns(self) -> list[str]:
        try:
            return self._source.columns()
        except Exception as exc:
            if self._passes(exc):
                raise
            self._failed("reading its columns", exc)

    def check_types(self, types: Mapping[str, FieldType]) -> None:
        self._source.check_types(types)  # a start-up check: its detail is for the operator's console

    def count(self, where: Filter | None = None) -> int:
        try:
            return self._source.count(where)
        except Exception as exc:
            if self._passes(exc):
                raise
            self._failed("counting rows", exc)

    def rows(self, columns: Sequence[str], where: Filter | None = None) -> Iterator[tuple[Value, ...]]:
        try:
            yield from self._source.rows(columns, where)
        except Exception as exc:
            if self._passes(exc):
                raise
            self._failed("reading rows", exc)

    def mapper(self) -> ChunkMapper | None:
        """The wrapped source's own per-row execution (a Spark source's executors), guarded alike; or None."""
        inner = chunk_mapper(self._source)
        return None if inner is None else _GuardedMapper(self, inner)


class _GuardedMapper:
    def __init__(self, guard: GuardedSource, inner: ChunkMapper) -> None:
        self._guard = guard
        self._inner = inner

    def map_chunks(self, columns: Sequence[str], where: Filter | None, size: int,
                   task: Callable[[K, list[tuple[Any, ...]]], T], keyed: K, rows_hint: int = 0,
                   doing: str = "computing tokens", row_bytes: int = 64) -> Iterator[T]:
        try:
            yield from self._inner.map_chunks(columns, where, size, task, keyed, rows_hint, doing, row_bytes)
        except Exception as exc:
            if self._guard._passes(exc):
                raise
            self._guard._failed("working on rows", exc)

    def batch_rows(self) -> int:
        try:
            return self._inner.batch_rows()
        except Exception as exc:
            if self._guard._passes(exc):
                raise
            self._guard._failed("starting its engine", exc)

    def map_parts(self, task: Callable[[K, P], T], keyed: K, parts: Sequence[P], doing: str) -> list[T]:
        try:
            return self._inner.map_parts(task, keyed, parts, doing)
        except Exception as exc:
            if self._guard._passes(exc):
                raise
            self._guard._failed(doing, exc)
