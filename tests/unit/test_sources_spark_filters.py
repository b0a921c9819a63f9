"""The Spark source: configuration, filters as Spark expressions (with the other sources' answers), schema checks,
job groups. One local Spark (one core, no UI) serves the whole module: a JVM costs seconds to start."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import support
from fedgate.adapters.config import AdapterConfig
from fedgate.adapters.sources import serving
from fedgate.adapters.sources.spark import SESSIONS, SparkSource, SparkSpec, _Sessions, default_master, to_spark
from fedgate.core.datasets import FieldType
from fedgate.core.errors import ConfigError, DataSourceError, InvalidInput
from fedgate.core.filters import parse, parse_checked, predicate

CONF = tuple(support.SPARK_TEST_CONF.items())
SCHEMA = "uscc string, amount_fen bigint, n int, paid_on date, paid_text string, ratio decimal(10,0), stamped timestamp"
COLUMNS = ["uscc", "amount_fen", "n", "paid_on", "paid_text"]
TYPES = {"uscc": FieldType.STRING, "amount_fen": FieldType.INT, "n": FieldType.INT, "paid_on": FieldType.DATE,
         "paid_text": FieldType.DATE}
ROWS = [
    (f"U{i}", 1000 * i if i != 4 else None, i % 3 if i != 6 else None,
     dt.date(2024, 1, i) if i != 2 else None, f"2024-01-{i:02d}" if i != 5 else None, Decimal(i), None)
    for i in range(1, 10)
] + [("中文'", -5, 0, dt.date(2023, 12, 31), "2023-12-31", Decimal(0), None), (None, 0, 1, None, None, None, None)]

# Every operator and form of the filter language, nulls and three-valued logic included.
FILTERS = [
    "amount_fen = 3000", "amount_fen != 3000", "amount_fen < 3000", "amount_fen <= 3000", "amount_fen > 3000",
    "amount_fen >= 3000", "amount_fen >= -5", "uscc = 'U3'", "uscc > 'U5'", "uscc <= 'U2'", "uscc = '中文'''",
    "uscc in ('U1', 'U9', 'nobody')", "amount_fen in (1000, 2000, 4000)", "n in (0)",
    "amount_fen is null", "amount_fen is not null", "uscc is null", "paid_on is null",
    "paid_on = '2024-01-03'", "paid_on > '2024-01-05'", "paid_on in ('2024-01-01', '2023-12-31')",
    "paid_text >= '2024-01-05'", "paid_text in ('2024-01-02', '2024-01-09')",
    "not amount_fen = 1000", "not (n = 1 or n = 2)", "n = 1 and amount_fen > 2000",
    "n = 1 or amount_fen is null", "not (n is null or amount_fen < 0)",
    "(n = 0 or n = 2) and not uscc in ('U3') and paid_on is not null",
]


@pytest.fixture(scope="module")
def spark_dir(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Path:
    """A Parquet and an ORC copy of ROWS, and a temporary view of them, in the run's Spark session."""
    directory = tmp_path_factory.mktemp("spark")
    spark.createDataFrame(ROWS, SCHEMA).coalesce(1).write.parquet(str(directory / "rows.parquet"))
    spark.createDataFrame(ROWS, SCHEMA).write.orc(str(directory / "rows.orc"))
    spark.createDataFrame(ROWS, SCHEMA).createOrReplaceTempView("subsidies")
    return directory


def source(directory: Path, **where: object) -> SparkSource:
    where = where or {"path": directory / "rows.parquet", "format": "parquet"}
    return SparkSource(SparkSpec("spark", master=support.SPARK_TEST_MASTER, conf=CONF, **where))


def test_every_filter_selects_what_the_python_predicate_selects(spark_dir: Path) -> None:
    """All of FILTERS compiled to Spark and evaluated in one job (a job per filter costs a second), row by row."""
    df = SESSIONS.get().table("subsidies")
    wheres = [parse_checked(text, TYPES) for text in FILTERS]
    verdicts = df.select(*COLUMNS, *(to_spark(w, df).alias(f"f{i}") for i, w in enumerate(wheres))).collect()
    assert len(verdicts) == len(ROWS)
    wrong = [(text, row[:5]) for row in verdicts for i, (text, w) in enumerate(zip(FILTERS, wheres))
             if (row[5 + i] is True) != predicate(w, COLUMNS)(tuple(row[:5]))]
    assert not wrong


@pytest.mark.parametrize("text", ["amount_fen >= 3000", "not (n is null or amount_fen < 0)",
                                  "paid_on in ('2024-01-01', '2023-12-31') or uscc is null"])
def test_a_filter_counts_and_streams_what_the_python_predicate_selects(spark_dir: Path, text: str) -> None:
    src = source(spark_dir)
    try:
        where = parse_checked(text, TYPES)
        keep = predicate(where, COLUMNS)
        expected = sorted((r[:5] for r in ROWS if keep(r[:5])), key=repr)
        assert expected and len(expected) < len(ROWS)
        assert sorted(src.rows(COLUMNS, where), key=repr) == expected
        assert src.count(where) == len(expected)
    finally:
        src.close()


def test_rows_come_in_the_shape_the_other_sources_give(spark_dir: Path) -> None:
    for where in ({"path": spark_dir / "rows.orc", "format": "orc"}, {"table": "subsidies"}, {}):
        src = source(spark_dir, **where)
        try:
            assert src.columns()[:5] == COLUMNS
            assert src.count() == len(ROWS)
            got = sorted(src.rows(["amount_fen", "uscc", "paid_on"]), key=repr)
            assert got == sorted(((r[1], r[0], r[3]) for r in ROWS), key=repr)
            assert (3000, "U3", dt.date(2024, 1, 3)) in got and all(type(v) in (int, str, dt.date, type(None))
                                                                     for row in got for v in row)
            assert list(src.rows([], parse("uscc = 'U1'"))) == [()]
        finally:
            src.close()


def test_a_literal_of_another_type_than_its_column_is_refused_not_cast(spark_dir: Path) -> None:
    src = source(spark_dir)
    try:
        for text, said in (("amount_fen = '1000'", "is an integer"), ("uscc = 1", "is a string"),
                           ("paid_on = 20240101", "is a date"), ("paid_on = '2024-02-30'", "is a date"),
                           ("ratio = 1", "type filters do not support"), ("nowhere = 1", "unknown field 'nowhere'")):
            with pytest.raises(InvalidInput, match=said):
                src.count(parse(text))
    finally:
        src.close()


def test_literals_are_bound_not_pasted(spark_dir: Path) -> None:
    """A literal that would change the meaning of pasted SQL is one value among others."""
    src = source(spark_dir)
    try:
        assert src.count(parse("uscc = 'x'' or ''1''=''1'")) == 0
        assert src.count(parse("uscc = '中文'''")) == 1
    finally:
        src.close()


@pytest.mark.parametrize(("field", "declared", "real"), [
    ("uscc", FieldType.INT, "STRING"), ("ratio", FieldType.INT, "DECIMAL(10,0)"),
    ("stamped", FieldType.DATE, "TIMESTAMP"), ("amount_fen", FieldType.STRING, "BIGINT"),
])
def test_a_column_of_another_type_is_refused_at_start(spark_dir: Path, field: str, declared: FieldType,
                                                       real: str) -> None:
    src = source(spark_dir)
    try:
        with pytest.raises(DataSourceError) as err:
            src.check_types({"uscc": FieldType.STRING, field: declared})
        assert f"field '{field}' is declared {declared.value}, but its column is {real}; declare" in str(err.value)
        src.check_types(TYPES)
    finally:
        src.close()


def test_a_string_column_of_dates_is_a_date_field_only_if_every_value_is_one(spark_dir: Path) -> None:
    spark = SESSIONS.get()
    spark.createDataFrame([("U1", "2024-01-01"), ("U2", "01/02/2024"), ("U3", None)],
                          "uscc string, paid_text string").createOrReplaceTempView("mixed_dates")
    src = source(spark_dir, table="mixed_dates")
    try:
        with pytest.raises(DataSourceError) as err:
            src.check_types({"paid_text": FieldType.DATE})
        assert "field 'paid_text' is declared date, but 1 row(s) of its STRING column hold a value that is not " \
               "a YYYY-MM-DD date" in str(err.value)
        assert "01/02/2024" not in str(err.value)
    finally:
        src.close()


def test_a_missing_table_or_path_says_where_to_look(spark_dir: Path) -> None:
    for where, said in (({"table": "nowhere"}, "TABLE_OR_VIEW_NOT_FOUND.*spark.sql.catalogImplementation"),
                        ({"path": spark_dir / "none.parquet", "format": "parquet"}, "no such file or directory")):
        src = source(spark_dir, **where)
        try:
            with pytest.raises(DataSourceError, match=said):
                src.columns()
        finally:
            src.close()


def test_a_jdbc_password_comes_from_the_environment_named(spark_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FG_TEST_DB_PASSWORD", raising=False)
    src = source(spark_dir, url="jdbc:postgresql://127.0.0.1:1/x", table="t", password_env="FG_TEST_DB_PASSWORD")
    try:
        assert src.describe() == "spark jdbc jdbc:postgresql://127.0.0.1:1/x table t"
        with pytest.raises(DataSourceError, match="environment variable FG_TEST_DB_PASSWORD .* is not set"):
            src.columns()
    finally:
        src.close()


def test_the_jobs_carry_the_query_id_as_their_group(spark_dir: Path) -> None:
    src = source(spark_dir)
    tracker = SESSIONS.get().sparkContext.statusTracker()
    try:
        with serving("q-count-7f3a"):
            assert src.count(parse("amount_fen > 1000")) == 7
        with serving("q-rows-91bc"):
            assert len(list(src.rows(["uscc"]))) == len(ROWS)
        src.count()
        assert tracker.getJobIdsForGroup("q-count-7f3a") and tracker.getJobIdsForGroup("q-rows-91bc")
        assert tracker.getJobIdsForGroup("fedgate-adapter")  # work outside a query: start-up checks, heartbeats
    finally:
        src.close()


def test_one_session_per_process_so_spark_datasets_agree_on_its_settings() -> None:
    sessions = _Sessions()  # no JVM: nothing is read
    one = SparkSource(SparkSpec("spark", table="a", master="local[2]"), sessions)
    SparkSource(SparkSpec("spark", table="b", master="local[2]"), sessions)
    with pytest.raises(DataSourceError, match="differ from another Spark dataset's of this adapter"):
        SparkSource(SparkSpec("spark", table="c", master="local[2]", conf=(("spark.executor.memory", "2g"),)),
                    sessions)
    one.close()
    assert SparkSpec("spark", table="a").session_settings()[0] == default_master()


# --------------------------------------------------------------------------- configuration (no Spark needed)


def _load(tmp_path: Path, source_toml: str) -> SparkSpec:
    decl = support.SUBSIDIES_DECL.format(path="s.csv").replace('source = { kind = "csv", path = "s.csv" }',
                                                               f"source = {source_toml}")
    cfg = tmp_path / "dept.toml"
    cfg.write_text(support.adapter_toml("hrss", "127.0.0.1:1", tmp_path, decl))
    (ds,) = AdapterConfig.load(cfg).datasets
    assert isinstance(ds.source, SparkSpec)
    return ds.source


def test_configuration_of_each_place_rows_can_be(tmp_path: Path) -> None:
    spec = _load(tmp_path, '{ kind = "spark", table = "warehouse.subsidies", master = "yarn", '
                           'conf = { "spark.executor.memory" = "2g", "spark.executor.instances" = "4" } }')
    assert (spec.table, spec.master, spec.conf) == ("warehouse.subsidies", "yarn", (
        ("spark.executor.memory", "2g"), ("spark.executor.instances", "4")))
    spec = _load(tmp_path, '{ kind = "spark", path = "data/s.parquet", format = "parquet", app_name = "hrss" }')
    assert (spec.path, spec.format, spec.master, spec.app_name) == (tmp_path / "data/s.parquet", "parquet", "", "hrss")
    spec = _load(tmp_path, '{ kind = "spark", path = "hdfs://nn.hrss:8020/warehouse/s", format = "orc" }')
    assert (spec.path, spec.location, SparkSource(spec, _Sessions()).describe()) == (
        None, "hdfs://nn.hrss:8020/warehouse/s", "spark orc hdfs://nn.hrss:8020/warehouse/s")
    spec = _load(tmp_path, '{ kind = "spark", master = "spark://10.0.0.5:7077", jdbc = { url = '
                           '"jdbc:postgresql://db/hrss", table = "subsidies", user = "reader", '
                           'password_env = "HRSS_DB_PASSWORD" } }')
    assert (spec.url, spec.table, spec.jdbc_user, spec.password_env) == (
        "jdbc:postgresql://db/hrss", "subsidies", "reader", "HRSS_DB_PASSWORD")


@pytest.mark.parametrize(("source_toml", "said"), [
    ('{ kind = "spark" }', "exactly one of `table`.*`path`.*`jdbc`"),
    ('{ kind = "spark", table = "t", path = "p", format = "orc" }', "exactly one of .*; found table, path"),
    ('{ kind = "spark", path = "p" }', "key 'datasets\\[0\\].source.format': a Spark path needs format"),
    ('{ kind = "spark", path = "p", format = "csv" }', "'parquet' or 'orc'"),
    ('{ kind = "spark", table = "t", format = "orc" }', "only a Spark `path` takes a format"),
    ('{ kind = "spark", table = "t; drop table x" }', "name, database.name or catalog.database.name"),
    ('{ kind = "spark", table = "t", master = "localhost:7077" }', "not a Spark master"),
    ('{ kind = "spark", table = "t", conf = { "executor.memory" = "2g" } }', "not a Spark setting"),
    ('{ kind = "spark", table = "t", conf = { "spark.executor.instances" = 4 } }', "expected str, got int"),
    ('{ kind = "spark", table = "t", sheet = "x" }', "unknown key 'datasets\\[0\\].source.sheet'"),
    ('{ kind = "spark", jdbc = { url = "postgresql://db/x", table = "t" } }', "starts with jdbc:"),
    ('{ kind = "spark", jdbc = { url = "jdbc:postgresql://db/x?password=pw", table = "t" } }',
     "no password in the URL.*password_env"),
    ('{ kind = "spark", jdbc = { url = "jdbc:postgresql://db/x", table = "t", password = "pw" } }',
     "unknown key 'datasets\\[0\\].source.jdbc.password'"),
])
def test_configuration_errors_name_the_key_and_the_fix(tmp_path: Path, source_toml: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        _load(tmp_path, source_toml)


def test_without_java_the_error_says_what_spark_needs() -> None:
    why = support.spark_missing()
    if why:
        pytest.skip(why)
    script = ("from fedgate.adapters.sources.spark import SparkSource, SparkSpec\n"
              "SparkSource(SparkSpec('spark', table='t', master='local[1]')).columns()\n")
    # A process of its own: in this one, the module's JVM would be reused.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAVA_HOME": "/nonexistent"})
    assert done.returncode == 1
    assert ("DataSourceError: cannot start Spark (master local[1]): PySparkRuntimeError [JAVA_GATEWAY_EXITED]; "
            "Spark needs Java 17 (java on the PATH or JAVA_HOME set)") in done.stderr
