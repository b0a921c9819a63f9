"""Helpers for tests that run real fedgate servers on loopback with mTLS."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import socket
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fedgate.crypto.ids import make_uscc
from fedgate.demo import deployment
from fedgate.demo.deployment import DatasetSpec, DepartmentSpec, GatewaySpec, exact_aggregates, fields
from fedgate.core.identity import Identity, Role
from fedgate.server.tls import TlsFiles

SUPERVISOR = Identity(Role.SUPERVISOR, "dcb", "alice")
OFFICER = Identity(Role.OFFICER, "audit", "bob")
DEPARTMENTS = ("hrss", "samr", "tax", "civil", "vehicle")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# Comparison weights the tests ask for beyond the shipped policy's (self-comparisons of the test data).
TEST_COMPARISON_RULES = """
p, supervisor, *, hrss.subsidies.amount_fen>hrss.subsidies.amount_fen, compare.weights, 1:1 2:1
p, supervisor, *, hrss.subsidies.claimed_insured>hrss.subsidies.amount_fen, compare.weights, 100000:1
"""


_ID_TOKEN = re.compile(r"[0-9A-Za-z]{15,18}")


def identifier_leaks(paths: Iterable[Path], ids: set[str]) -> list[str]:
    """The names of the files holding one of `ids`: as written or upper-cased, after NFKC (a full-width copy
    counts), and across whitespace (a value split over lines counts). Never the identifier itself."""
    leaks = []
    for path in paths:
        text = unicodedata.normalize("NFKC", path.read_bytes().decode("utf-8", errors="replace"))
        squeezed = re.sub(r"\s+", "", text)
        for candidate in {*_ID_TOKEN.findall(text), *_ID_TOKEN.findall(squeezed)}:
            if candidate in ids or candidate.upper() in ids:
                leaks.append(path.name)
                break
    return leaks


def with_test_rules(policy_dir: Path, noisy: bool = False) -> Path:
    """`policy_dir` (a copy of the shipped policies) with the tests' comparison weights appended, and exact
    aggregates at every level (tests assert exact counts) unless `noisy` keeps the shipped DP policy."""
    with (policy_dir / "policy.csv").open("a", encoding="utf-8") as f:
        f.write(TEST_COMPARISON_RULES)
    if not noisy:
        exact_aggregates(policy_dir)
    return policy_dir




def gateway_toml(data_dir: Path, certs: Path, crl: Path | None = None) -> str:
    """A gateway.toml on a free loopback port, worker threads, [tls] last (tests append or replace lines);
    `crl`: the tls.crl it checks callers against."""
    spec = GatewaySpec.in_dir(data_dir, certs, workers=0)
    return deployment.gateway_toml(dataclasses.replace(spec, tls=dataclasses.replace(spec.tls, crl=crl)))


def adapter_toml(dept: str, gateway: str, certs: Path, datasets: str, cert_stem: str | None = None,
                 vkey: Path | None = None, crl: Path | None = None) -> str:
    """An adapter.toml with `datasets` (declarations as TOML text) appended; `cert_stem` picks other certificates."""
    stem = cert_stem or f"dept-{dept}"
    spec = DepartmentSpec(dept, (), TlsFiles(certs / "ca.pem", certs / f"{stem}.pem", certs / f"{stem}.key", crl=crl),
                          workers=0, register_timeout_s=10)
    return deployment.adapter_toml(spec, gateway, vkey or certs / "log-signing.vkey") + "\n" + datasets


@dataclass(frozen=True)
class DeclText:
    """A dataset declaration, as text by `format(...)` (source settings) or as a spec by `spec(...)`."""

    spec: Callable[..., DatasetSpec]

    def format(self, **source: str) -> str:
        return deployment.datasets_toml([self.spec(**source)])


def uscc(i: int) -> str:
    """A valid unified social credit code, numbered i."""
    return make_uscc(f"91330100MA2{i:06d}")


SUBSIDIES_CSV = "uscc,company_name,amount_fen\n" + "".join(
    f"{uscc(i)},公司{i},{1000 * i}\n" for i in range(1, 21))

SUBSIDIES_DECL = DeclText(lambda path: DatasetSpec(
    "subsidies", "稳岗补贴", {"kind": "csv", "path": str(path)},
    fields("uscc:string:L3:uscc company_name:string:L2 amount_fen:int:L3:0..50000")))

# `where` is the source's location as TOML: 'path = "…"' (sqlite) or 'url = "…"' (sql).
COMPANIES_DECL = DeclText(lambda kind, where: DatasetSpec(
    "companies", "", {"kind": kind, **tomllib.loads(where), "table": "companies"},
    fields("uscc:string:L2:uscc status:string:L1")))


def write_companies(engine_url: str, n: int = 15) -> None:
    engine = sa.create_engine(engine_url)
    meta = sa.MetaData()
    table = sa.Table("companies", meta, sa.Column("uscc", sa.String), sa.Column("status", sa.String))
    with engine.begin() as conn:
        meta.drop_all(conn)
        meta.create_all(conn)
        conn.execute(table.insert(), [{"uscc": uscc(i), "status": "存续"} for i in range(n)])
    engine.dispose()


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        engine = sa.create_engine(PG_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def private_pg_schema(prefix: str) -> Iterator[str]:
    """A URL of the test PostgreSQL whose tables all live in a fresh schema, dropped afterwards; skips when
    PostgreSQL is not reachable. Other tests (and other runs) use their own schemas at the same time."""
    import pytest

    if not postgres_reachable():
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432 (database 'test', user 'postgres')")
    schema = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


def pensions_csv(n: int = 150) -> str:
    """n pensioners: resident_id (L4 key), name (L3), monthly_amount_fen (L3), district (L2)."""
    import datetime as dt

    from fedgate.crypto.ids import make_resident_id

    lines = ["resident_id,name,monthly_amount_fen,district"]
    for i in range(n):
        rid = make_resident_id("330106", dt.date(1940 + i % 30, 1 + i % 12, 1 + i % 28), i % 1000)
        district = "西湖区" if i % 3 else "上城区"
        lines.append(f"{rid},张{'伟芳娜敏静'[i % 5]}{i},{150_000 + 100 * i},{district}")
    return "\n".join(lines) + "\n"


PENSIONS_DECL = DeclText(lambda path: DatasetSpec(
    "pensions", "", {"kind": "csv", "path": str(path)},
    fields("resident_id:string:L4:resident_id name:string:L3 monthly_amount_fen:int:L3 district:string:L2")))


# A small local Spark for tests: no UI, one shuffle partition (the default 200 costs seconds), a 512 MiB heap.
# The JVM's quick compiler only and a serial GC: the tests' jobs are small and short, and the optimising
# compiler's and parallel GC's threads would take about half of a test JVM's CPU, shared with the servers.
SPARK_TEST_CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1",
                   "spark.driver.memory": "512m",
                   "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}
# The unit tests' one Spark session (conftest's `spark` fixture): every source they make uses these settings.
SPARK_TEST_MASTER = "local[2]"


@dataclass
class Broadcasts:
    """Every broadcast a Spark test makes (`record_broadcasts`): their values, and whether each was destroyed."""

    made: list[Any]
    values: list[Any]

    @staticmethod
    def destroyed(keys: Any) -> bool:
        """Gone from the driver's file and unreadable by any executor."""
        return keys._jbroadcast is not None and not Path(keys._path).exists() and not keys._jbroadcast.isValid()

    def all_destroyed(self) -> bool:
        return all(self.destroyed(keys) for keys in self.made)


def record_broadcasts(monkeypatch: Any) -> Broadcasts:
    """Record every broadcast of the running SparkContext until the test ends (`monkeypatch` undoes it)."""
    from fedgate.adapters.sources.spark import SESSIONS

    sc = SESSIONS.get().sparkContext
    seen = Broadcasts([], [])
    broadcast = sc.broadcast

    def recording(value: Any) -> Any:
        seen.values.append(value)
        seen.made.append(broadcast(value))
        return seen.made[-1]

    monkeypatch.setattr(sc, "broadcast", recording)
    return seen


def spark_missing() -> str | None:
    """Why the Spark tests cannot run on this machine, or None when they can."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "PySpark is not installed (the spark extra: make test EXTRAS=dev,spark)"
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and Path(java_home, "bin", "java").is_file()):
        return "no Java found (Spark needs Java 17: apt-get install openjdk-17-jre-headless)"
    return None


# Spark's DDL types as Arrow's, for the few the tests' tables use.
_ARROW_TYPES = {"string": "string", "bigint": "int64", "int": "int32", "double": "float64", "date": "date32",
                "boolean": "bool_"}


def write_parquet(tables: dict[Path, tuple[str, list[tuple[object, ...]]]]) -> None:
    """Write each table (a Spark DDL schema and its rows) as one Parquet file, with pyarrow: no JVM to start."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path, (schema, rows) in tables.items():
        columns = [column.split() for column in schema.split(",")]
        fields = [pa.field(name, getattr(pa, _ARROW_TYPES[kind])()) for name, kind in columns]
        table = pa.Table.from_pylist([dict(zip((f.name for f in fields), row)) for row in rows], pa.schema(fields))
        path.mkdir(parents=True)  # a directory of part files, as Spark writes a table
        pq.write_table(table, path / "part-00000.parquet")


def csv_rows(text: str, types: dict[str, type]) -> list[tuple[object, ...]]:
    """The rows of a CSV text (header first) with each named column converted by its type; "" is null."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    convert = [types.get(name, str) for name in header]
    return [tuple(None if v == "" else c(v) for c, v in zip(convert, row)) for row in reader if row]


# A department rule holding every disclosure for one approver, hrss-zhang, whose keys are in {dir}: the
# adapter TOML tables of the approval tests (tests/e2e/test_approvals_cli.py, test_console_browser.py).
APPROVAL_TABLES = """
[approvals]
keys = ["{dir}/hrss-zhang.vkey"]

[[rules]]
name = "names-leave-with-approval"
effect = "approve"
kinds = ["disclose"]
"""
