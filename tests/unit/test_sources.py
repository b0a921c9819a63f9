"""Adapter data sources: CSV, SQLite and any SQLAlchemy URL through one interface."""

from __future__ import annotations

from pathlib import Path

import pytest

import support
from fedgate.adapters.sources.csv_file import CsvSource
from fedgate.adapters.sources.sql import SqlSource, sqlite_url
from fedgate.core.datasets import FieldType
from fedgate.core.errors import DataSourceError

TYPES = {"uscc": FieldType.STRING, "company_name": FieldType.STRING, "amount_fen": FieldType.INT}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_counts_and_streams_typed_rows(tmp_path: Path) -> None:
    src = CsvSource(write(tmp_path, support.SUBSIDIES_CSV), TYPES)
    assert src.columns() == ["uscc", "company_name", "amount_fen"]
    assert src.count() == 20
    rows = list(src.rows(["amount_fen", "company_name"]))
    assert rows[0] == (1000, "公司1")


def test_csv_row_with_wrong_column_count_names_the_line(tmp_path: Path) -> None:
    lines = support.SUBSIDIES_CSV.splitlines()
    lines[7] = lines[7] + ",extra"  # line 8 of the file (header is line 1)
    src = CsvSource(write(tmp_path, "\n".join(lines) + "\n"), TYPES)
    with pytest.raises(DataSourceError) as err:
        src.count()
    assert "line 8: expected 3 columns, found 4" in str(err.value)


def test_csv_bad_integer_names_line_and_column_but_not_the_value(tmp_path: Path) -> None:
    text = support.SUBSIDIES_CSV.replace(",5000\n", ",5000SECRET\n")
    with pytest.raises(DataSourceError) as err:
        CsvSource(write(tmp_path, text), TYPES).count()
    assert "line 6: field 'amount_fen' is declared int, but its value there is not an integer" in str(err.value)
    assert "SECRET" not in str(err.value)


def test_csv_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="cannot open"):
        CsvSource(tmp_path / "nope.csv", TYPES).count()
    with pytest.raises(DataSourceError, match="empty file"):
        CsvSource(write(tmp_path, ""), TYPES).count()


def test_sqlite_source_is_read_only_and_counts(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    support.write_companies(f"sqlite:///{db}", n=7)
    src = SqlSource(sqlite_url(db), "companies")
    assert src.columns() == ["uscc", "status"]
    assert src.count() == 7
    assert [r[0] for r in src.rows(["status"])] == ["存续"] * 7
    src.close()
    with pytest.raises(DataSourceError, match="SQLite file not found"):
        sqlite_url(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_sql_source_missing_table(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    support.write_companies(f"sqlite:///{db}")
    with pytest.raises(DataSourceError, match="no such table"):
        SqlSource(sqlite_url(db), "nope").count()


@pytest.mark.postgres
def test_postgres_source() -> None:
    with support.private_pg_schema("fg_source") as url:  # not the public schema other runs use at once
        support.write_companies(url, n=11)
        src = SqlSource(url, "companies")
        assert src.count() == 11
        assert len(list(src.rows(["uscc", "status"]))) == 11
        src.close()


def test_csv_row_count_is_read_again_only_when_the_file_changed(tmp_path, monkeypatch) -> None:
    """The heartbeat's live count of a large unchanged CSV costs no scan; a changed file is counted again."""
    from fedgate.adapters.sources.csv_file import CsvSource
    from fedgate.core.datasets import FieldType

    path = tmp_path / "rows.csv"
    path.write_text("id,amount\n" + "".join(f"{i},{i}\n" for i in range(20)), encoding="utf-8")
    source = CsvSource(path, {"id": FieldType.STRING, "amount": FieldType.INT})
    scans = 0
    records = source._records

    def counting(columns):
        nonlocal scans
        scans += 1
        return records(columns)

    monkeypatch.setattr(source, "_records", counting)
    assert source.count() == 20 and source.count() == 20 and scans == 1
    with path.open("a", encoding="utf-8") as fh:
        fh.write("20,20\n21,21\n")
    assert source.count() == 22 and scans == 2
