"""SQL source through SQLAlchemy: SQLite files and any database URL, one table per dataset.

The table is reflected and queried with SQLAlchemy expressions; no SQL text is
ever built from configuration or request strings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlalchemy as sa

from fedgate.adapters.sources import Value
from fedgate.errors import DataSourceError
from fedgate.filters import Filter, to_sqlalchemy


def sqlite_url(path: Path) -> str:
    """A read-only SQLite URL (so a typo in the path cannot create an empty database)."""
    if not path.is_file():
        raise DataSourceError(f"{path}: SQLite file not found")
    return f"sqlite+pysqlite:///file:{path}?mode=ro&uri=true"


class SqlSource:
    def __init__(self, url: str, table: str, label: str | None = None) -> None:
        self._label = label or f"{sa.make_url(url).render_as_string(hide_password=True)} table {table}"
        try:
            self._engine = sa.create_engine(url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise DataSourceError(f"{self._label}: unusable database URL: {exc}") from None
        self._table_name = table
        self._table: sa.Table | None = None

    def describe(self) -> str:
        return self._label

    def _reflect(self) -> sa.Table:
        if self._table is None:
            try:
                self._table = sa.Table(self._table_name, sa.MetaData(), autoload_with=self._engine)
            except sa.exc.NoSuchTableError:
                raise DataSourceError(f"{self._label}: no such table") from None
            except sa.exc.SQLAlchemyError as exc:
                raise DataSourceError(f"{self._label}: cannot read: {type(exc).__name__}: {exc.args[0] if exc.args else ''}") from None
        return self._table

    def columns(self) -> list[str]:
        return [c.name for c in self._reflect().columns]

    def count(self, where: Filter | None = None) -> int:
        table = self._reflect()
        query = sa.select(sa.func.count()).select_from(table)
        if where is not None:
            query = query.where(to_sqlalchemy(where, table))
        try:
            with self._engine.connect() as conn:
                return int(conn.execute(query).scalar_one())
        except sa.exc.SQLAlchemyError as exc:
            raise DataSourceError(f"{self._label}: cannot count rows: {type(exc).__name__}") from None

    def rows(self, columns: Sequence[str], where: Filter | None = None) -> Iterator[tuple[Value, ...]]:
        table = self._reflect()
        query = sa.select(*(table.c[c] for c in columns))
        if where is not None:
            query = query.where(to_sqlalchemy(where, table))
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=10_000).execute(query)
            for row in result:
                yield tuple(row)

    def close(self) -> None:
        self._engine.dispose()
