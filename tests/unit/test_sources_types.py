"""Declared field types are checked against the source when the adapter starts (issue 12, point 4).

SQL sources: the reflected column types, and on SQLite (which keeps any value in
any column) the stored values too. CSV: every value, in the pass that counts the
rows. A refusal names the dataset, the field, the declared and the real type;
never a value.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import support
from fedgate.adapters.config import DatasetConfig, SourceSpec
from fedgate.adapters.server import check_source
from fedgate.adapters.sources.sql import SqlSource, sqlite_url
from fedgate.core.datasets import DatasetDecl, FieldDecl
from fedgate.core.errors import DataSourceError

SECRET = "SECRET-VALUE-42"


def dataset(tmp: Path, source: SourceSpec, **types: str) -> DatasetConfig:
    fields = tuple(FieldDecl.build(name, ftype, "L1", "plain" if i == 0 else None)
                   for i, (name, ftype) in enumerate({"k": "string", **types}.items()))
    return DatasetConfig(DatasetDecl("samr", "registry", fields), source)


def sqlite_db(tmp: Path, ddl: str, rows: list[tuple[object, ...]]) -> Path:
    path = tmp / "dept.db"
    conn = sqlite3.connect(path)
    conn.execute(ddl)
    if rows:
        conn.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.commit()
    conn.close()
    return path


def refusal(ds: DatasetConfig) -> str:
    with pytest.raises(DataSourceError) as err:
        check_source(ds, ds.open_source())
    return str(err.value)


def sqlite_spec(db: Path, table: str = "t") -> SourceSpec:
    return SourceSpec("sqlite", path=db, table=table)


@pytest.mark.parametrize(("column", "declared", "real"), [
    ("v TEXT", "int", "TEXT"),
    ("v REAL", "int", "REAL"),
    ("v NUMERIC", "int", "NUMERIC"),
    ("v", "int", "untyped"),
    ("v INTEGER", "string", "INTEGER"),
    ("v INTEGER", "date", "INTEGER"),
    ("v DATETIME", "date", "DATETIME"),
])
def test_a_column_of_another_type_is_refused_naming_field_and_both_types(tmp_path: Path, column: str,
                                                                         declared: str, real: str) -> None:
    db = sqlite_db(tmp_path, f"CREATE TABLE t (k TEXT, {column})", [("a", None)])
    message = refusal(dataset(tmp_path, sqlite_spec(db), v=declared))
    assert message.startswith("dataset 'registry': ")
    assert f"field 'v' is declared {declared}, but its column is {real}" in message


def test_sqlite_values_a_column_type_does_not_vouch_for_are_refused_without_the_value(tmp_path: Path) -> None:
    # SQLite keeps text in an INTEGER column and anything in a DATE one: the values are checked too.
    db = sqlite_db(tmp_path, "CREATE TABLE t (k TEXT, n INTEGER, d DATE, s TEXT)",
                   [("a", 1, "2024-01-31", "2024-02-01"), ("b", SECRET, "2024-01-31", "2024-02-01")])
    message = refusal(dataset(tmp_path, sqlite_spec(db), n="int"))
    assert "dataset 'registry'" in message and "field 'n' is declared int" in message
    assert "1 row(s) of its INTEGER column hold a value that is not an integer" in message
    assert SECRET not in message

    db.unlink()
    db = sqlite_db(tmp_path, "CREATE TABLE t (k TEXT, d DATE, s TEXT)",
                   [("a", "2024-01-31", SECRET), ("b", 20240131, "2024-02-01")])
    message = refusal(dataset(tmp_path, sqlite_spec(db), d="date"))
    assert "field 'd' is declared date" in message and "1 row(s) of its DATE column" in message
    message = refusal(dataset(tmp_path, sqlite_spec(db), s="date"))
    assert "field 's' is declared date" in message and "of its TEXT column hold a value that is not a YYYY-MM-DD" \
        in message and SECRET not in message


def test_matching_types_start_and_count(tmp_path: Path) -> None:
    db = sqlite_db(tmp_path, "CREATE TABLE t (k TEXT, n BIGINT, d DATE, s TEXT, v VARCHAR(20))",
                   [("a", 1, "2024-01-31", "2024-02-01", "x"), ("b", None, None, None, None)])
    checked = check_source(ds := dataset(tmp_path, sqlite_spec(db), n="int", d="date", s="date", v="string"),
                           ds.open_source())
    assert checked.row_count == 2


def test_csv_value_that_does_not_fit_is_refused_at_start_naming_dataset_field_and_line(tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text(support.SUBSIDIES_CSV.replace(",5000\n", f",{SECRET}\n"), encoding="utf-8")
    decl = DatasetDecl("hrss", "subsidies", (FieldDecl.build("uscc", "string", "L3", "uscc"),
                                             FieldDecl.build("amount_fen", "int", "L3")))
    message = refusal(DatasetConfig(decl, SourceSpec("csv", path=csv)))
    assert message.startswith("dataset 'subsidies': ")
    assert "line 6: field 'amount_fen' is declared int, but its value there is not an integer" in message
    assert SECRET not in message


def test_sqlite_views_and_schema_qualified_names_are_sources(tmp_path: Path) -> None:
    db = sqlite_db(tmp_path, "CREATE TABLE t (k TEXT, n INTEGER)", [("a", 1), ("b", 2), ("c", 3)])
    conn = sqlite3.connect(db)
    conn.execute("CREATE VIEW big AS SELECT k, n FROM t WHERE n > 1")
    conn.commit()
    conn.close()
    for table in ("big", "main.big", "main.t"):
        ds = dataset(tmp_path, sqlite_spec(db, table), n="int")
        assert check_source(ds, ds.open_source()).row_count == (3 if table == "main.t" else 2)
    src = SqlSource(sqlite_url(db), "big")
    assert sorted(src.rows(["k", "n"])) == [("b", 2), ("c", 3)]
    src.close()
    message = refusal(dataset(tmp_path, sqlite_spec(db, "nope"), n="int"))
    assert "no such table or view" in message and "schema.table" in message


def test_table_names_split_into_schema_and_name() -> None:
    from fedgate.adapters.sources.sql import split_table

    assert split_table("subsidies") == (None, "subsidies")
    assert split_table("dept_a.subsidies") == ("dept_a", "subsidies")
    for bad in ("dept_a.", ".subsidies", ""):
        with pytest.raises(DataSourceError, match="schema.name"):
            split_table(bad)
