"""CSV source: UTF-8 (a BOM is tolerated), header row, one record per row."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from fedgate.adapters.sources import SourceKind, SourceSpec, Value
from fedgate.core.datasets import FieldType
from fedgate.core.errors import DataSourceError
from fedgate.core.filters import Filter, fields_of, predicate
from fedgate.core.tomlconfig import Table


class CsvSource:
    def __init__(self, path: Path, types: Mapping[str, FieldType]) -> None:
        self._path = path
        self._types = dict(types)
        # The whole file's row count and the (mtime, size) it was counted at: the heartbeat asks for it
        # every heartbeat_s, and re-reading a large unchanged file each time would be a full scan.
        self._counted: tuple[tuple[int, int], int] | None = None

    def describe(self) -> str:
        return str(self._path)

    @contextlib.contextmanager
    def _reader(self) -> Iterator[tuple[list[str], Any]]:
        """Open the file and read its header; yields (header, csv reader)."""
        try:
            fh = self._path.open(newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise DataSourceError(f"{self._path}: cannot open: {exc.strerror}") from None
        with fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise DataSourceError(f"{self._path}: empty file (a header row is required)") from None
            except (UnicodeDecodeError, csv.Error) as exc:
                raise DataSourceError(f"{self._path} line 1: unreadable header ({type(exc).__name__})") from None
            yield header, reader

    def columns(self) -> list[str]:
        with self._reader() as (header, _):
            return header

    def _records(self, columns: Sequence[str]) -> Iterator[tuple[Value, ...]]:
        with self._reader() as (header, reader):
            index = {name: i for i, name in enumerate(header)}
            missing = [c for c in columns if c not in index]
            if missing:
                raise DataSourceError(f"{self._path}: header has no column '{missing[0]}'")
            picks = [(index[c], c, self._types.get(c, FieldType.STRING)) for c in columns]
            width = len(header)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except (UnicodeDecodeError, csv.Error) as exc:
                    raise DataSourceError(
                        f"{self._path} line {reader.line_num + 1}: unreadable row ({type(exc).__name__})"
                    ) from None
                if not row:
                    continue  # a blank line is not a record
                if len(row) != width:
                    raise DataSourceError(
                        f"{self._path} line {reader.line_num}: expected {width} columns, found {len(row)}")
                yield tuple(_convert(row[i], ftype, self._path, reader.line_num, name)
                            for i, name, ftype in picks)

    def check_types(self, types: Mapping[str, FieldType]) -> None:
        """CSV columns have no types: `count()` checks every value against its declaration instead."""

    def close(self) -> None:
        """Nothing to release: the file is opened afresh for every read."""

    def count(self, where: Filter | None = None) -> int:
        if where is None:
            try:
                stat = self._path.stat()
            except OSError as exc:
                raise DataSourceError(f"{self._path}: cannot open: {exc.strerror}") from None
            version = (stat.st_mtime_ns, stat.st_size)
            if self._counted is None or self._counted[0] != version:
                self._counted = version, sum(1 for _ in self._records(list(self._types)))
            return self._counted[1]
        return sum(1 for _ in self.rows([], where))

    def rows(self, columns: Sequence[str], where: Filter | None = None) -> Iterator[tuple[Value, ...]]:
        if where is None:
            return self._records(columns)
        # Read the filter's columns too, test each row, then keep only what was asked for.
        needed = list(dict.fromkeys([*columns, *sorted(fields_of(where))]))
        keep = predicate(where, needed)
        width = len(columns)
        return (row[:width] for row in self._records(needed) if keep(row))


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _convert(raw: str, ftype: FieldType, path: Path, line: int, column: str) -> Value:
    # Messages name the line and column but never the value: it may be classified.
    if raw == "":
        return None
    if ftype is FieldType.INT:
        try:
            return int(raw)
        except ValueError:
            raise DataSourceError(f"{path} line {line}: field '{column}' is declared int, but its value "
                                  "there is not an integer") from None
    if ftype is FieldType.DATE:
        try:
            # Strictly YYYY-MM-DD: fromisoformat alone also takes 20240101 and week dates,
            # which would then compare wrongly against filter literals.
            if not _ISO_DATE.match(raw):
                raise ValueError
            dt.date.fromisoformat(raw)
        except ValueError:
            raise DataSourceError(f"{path} line {line}: field '{column}' is declared date, but its value "
                                  "there is not a YYYY-MM-DD date") from None
    return raw


def _open(spec: SourceSpec, types: Mapping[str, FieldType]) -> CsvSource:
    assert spec.path is not None  # read_spec requires it
    return CsvSource(spec.path, types)


def _read(table: Table) -> SourceSpec:
    return SourceSpec("csv", path=table.path("path"))


# `source = { kind = "csv", path = "data/hrss/subsidies.csv" }`
KIND = SourceKind("csv", _read, _open)
