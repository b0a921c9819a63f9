"""SQL source through SQLAlchemy: SQLite files and any database URL, one table or view per dataset.

The table (``name`` or ``schema.name``; a view reads the same) is reflected and
queried with SQLAlchemy expressions; no SQL text is ever built from
configuration or request strings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fedgate.adapters.sources import SourceKind, SourceSpec, Value
from fedgate.core.datasets import FieldType
from fedgate.core.errors import DataSourceError
from fedgate.core.filters import Filter, to_sqlalchemy

ISO_DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

# The column types that hold each declared field type, and what to say when a column holds another.
_HOLDS: dict[FieldType, tuple[tuple[type[Any], ...], str]] = {
    FieldType.INT: ((sa.Integer,), "an integer column (INTEGER, BIGINT, SMALLINT)"),
    FieldType.STRING: ((sa.String,), "a text column (TEXT, VARCHAR, CHAR)"),
    FieldType.DATE: ((sa.Date, sa.String), "a DATE column, or a text column of YYYY-MM-DD dates"),
}


def sqlite_url(path: Path) -> str:
    """A read-only SQLite URL (so a typo in the path cannot create an empty database)."""
    if not path.is_file():
        raise DataSourceError(f"{path}: SQLite file not found")
    return f"sqlite+pysqlite:///file:{path}?mode=ro&uri=true"


def split_table(table: str) -> tuple[str | None, str]:
    """`schema.name` or `name` as (schema, name); a table outside the default schema is written qualified."""
    schema, _, name = table.rpartition(".")
    if not name or (table.count(".") and not schema):
        raise DataSourceError(f"table {table!r}: write it as name or schema.name")
    return schema or None, name


class SqlSource:
    def __init__(self, url: str, table: str, label: str | None = None) -> None:
        self._label = label or f"{sa.make_url(url).render_as_string(hide_password=True)} table {table}"
        self._schema, self._table_name = split_table(table)
        try:
            # hide_parameters: a failed statement's message (logged) never carries a filter's literals.
            self._engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise DataSourceError(f"{self._label}: unusable database URL: {exc}") from None
        self._table: sa.Table | None = None

    def describe(self) -> str:
        return self._label

    def _reflect(self) -> sa.Table:
        if self._table is None:
            try:
                self._table = sa.Table(self._table_name, sa.MetaData(), schema=self._schema,
                                       autoload_with=self._engine)
            except sa.exc.NoSuchTableError:
                hint = "" if self._schema else " (a table outside the default schema is written schema.table)"
                raise DataSourceError(f"{self._label}: no such table or view{hint}") from None
            except sa.exc.SQLAlchemyError as exc:
                raise DataSourceError(f"{self._label}: cannot read: {type(exc).__name__}: {exc.args[0] if exc.args else ''}") from None
        return self._table

    def columns(self) -> list[str]:
        return [c.name for c in self._reflect().columns]

    def check_types(self, types: Mapping[str, FieldType]) -> None:
        """Refuse a declared field whose column cannot hold its type (or, where the type alone does not
        decide, whose stored values do not fit): the error names the field and both types."""
        table = self._reflect()
        sqlite = self._engine.dialect.name == "sqlite"
        for name, declared in types.items():
            column = table.c[name]
            allowed, wanted = _HOLDS[declared]
            if not isinstance(column.type, allowed):
                raise DataSourceError(
                    f"{self._label}: field '{name}' is declared {declared.value}, but its column is "
                    f"{self._type_name(column)}; declare the field's real type or point it at {wanted}")
            misfits = self._misfits(column, declared, sqlite)
            if misfits is not None:
                bad = self._scalar(sa.select(sa.func.count()).select_from(table).where(misfits), "check values")
                if bad:
                    raise DataSourceError(
                        f"{self._label}: field '{name}' is declared {declared.value}, but {bad} row(s) of its "
                        f"{self._type_name(column)} column hold {_WHAT_FITS[declared]}")

    @staticmethod
    def _misfits(column: sa.Column[object], declared: FieldType,
                 sqlite: bool) -> sa.ColumnElement[bool] | None:
        """Rows whose value the column's type does not vouch for, or None if the type does."""
        # SQLite stores any value in any column, whatever its type says; other databases keep to it.
        if declared is FieldType.INT and sqlite:
            return sa.func.typeof(column).not_in(["integer", "null"])
        if declared is FieldType.DATE and (sqlite or not isinstance(column.type, sa.Date)):
            not_iso = ~sa.type_coerce(column, sa.String).regexp_match(ISO_DATE_PATTERN)
            if sqlite:  # its regexp function takes text only
                not_iso = (sa.func.typeof(column) != "text") | not_iso
            return column.is_not(None) & not_iso
        return None

    def _type_name(self, column: sa.Column[object]) -> str:
        if isinstance(column.type, sa.types.NullType):
            return "untyped"
        try:
            return str(column.type.compile(dialect=self._engine.dialect))
        except sa.exc.SQLAlchemyError:
            return type(column.type).__name__

    def _scalar(self, query: sa.Select[int], doing: str) -> int:
        try:
            with self._engine.connect() as conn:
                return int(conn.execute(query).scalar_one())
        except sa.exc.SQLAlchemyError as exc:
            raise DataSourceError(f"{self._label}: cannot {doing}: {type(exc).__name__}: "
                                  f"{exc.args[0] if exc.args else ''}") from None

    def count(self, where: Filter | None = None) -> int:
        table = self._reflect()
        query = sa.select(sa.func.count()).select_from(table)
        if where is not None:
            query = query.where(to_sqlalchemy(where, table))
        return self._scalar(query, "count rows")

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


_WHAT_FITS = {
    FieldType.INT: "a value that is not an integer (SQLite keeps any value in any column)",
    FieldType.DATE: "a value that is not a YYYY-MM-DD date",
    FieldType.STRING: "a value that is not text",
}


def _open_sqlite(spec: SourceSpec, types: Mapping[str, FieldType]) -> SqlSource:
    assert spec.path is not None and spec.table is not None  # read by SQLITE
    return SqlSource(sqlite_url(spec.path), spec.table, label=f"{spec.path} table {spec.table}")


def _open_url(spec: SourceSpec, types: Mapping[str, FieldType]) -> SqlSource:
    assert spec.url is not None and spec.table is not None  # read by SQL
    return SqlSource(spec.url, spec.table)


# `source = { kind = "sqlite", path = "data/hrss.db", table = "subsidies" }`
SQLITE = SourceKind("sqlite", lambda t: SourceSpec("sqlite", path=t.path("path"), table=t.text("table")), _open_sqlite)
# `source = { kind = "sql", url = "postgresql+psycopg://user@db/hrss", table = "subsidies" }`
SQL = SourceKind("sql", lambda t: SourceSpec("sql", url=t.text("url"), table=t.text("table")), _open_url)
