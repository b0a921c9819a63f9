"""Spark source: a Spark catalog (Hive metastore) table, a Parquet or ORC path, or a JDBC table, read through Spark.

Filters become Spark Column expressions whose literals are bound with ``lit()``;
no SQL text is ever built from configuration or request strings. Counts run as
Spark jobs; rows stream to the adapter one partition at a time
(``toLocalIterator``), so the adapter never holds the whole table. A match's
per-row work (normalising, hashing, blinding, encryption, and finding and
masking its disclosed rows) runs on the executors (``map_chunks``): the keys
reach them in a broadcast destroyed when the job ends, and the results come
back a few partitions at a time.

The second round of an ECDH match (re-blinding the peer's points) runs there
too, in batches of chunks (``map_parts``): one job per chunk would cost as much
as the chunk's work.

One SparkSession serves every Spark dataset of an adapter process: it starts
(with its JVM) at the first read and stops when the last Spark source closes.
PySpark is an extra (``pip install 'fedgate[spark]'``), imported only here and
only when a Spark source is first read.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import datetime as dt
import functools
import operator
import os
import pickle
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any, TypeVar

from fedgate.adapters.sources import SourceKind, SourceSpec, Value, serving_query
from fedgate.core.datasets import FieldType
from fedgate.core.errors import DataSourceError, FedgateError, InvalidInput
from fedgate.core.filters import And, Comparison, Filter, InList, IsNull, LiteralValue, Not, Or
from fedgate.core.tomlconfig import Table

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql import Column, DataFrame, SparkSession

K = TypeVar("K")
P = TypeVar("P")
T = TypeVar("T")

FORMATS = ("parquet", "orc")
ISO_DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# The job group of reads that serve no query (start-up checks, heartbeat counts).
HOUSEKEEPING_GROUP = "fedgate-adapter"
_OPS: Mapping[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
# Spark's simple type names that hold each declared field type, and what to say when a column holds another.
_HOLDS: dict[FieldType, tuple[frozenset[str], str]] = {
    FieldType.INT: (frozenset({"tinyint", "smallint", "int", "bigint"}),
                    "an integer column (TINYINT, SMALLINT, INT, BIGINT)"),
    FieldType.STRING: (frozenset({"string"}), "a string column"),
    FieldType.DATE: (frozenset({"date", "string"}), "a DATE column, or a string column of YYYY-MM-DD dates"),
}
_INTEGRAL = _HOLDS[FieldType.INT][0]
# A JDBC URL's credentials belong in the environment, never in the configuration file.
_URL_SECRET = re.compile(r"password\s*=", re.IGNORECASE)
# Rows per partition of a match's work. A task has a fixed cost (a Python worker taking Arrow batches: about
# 0.1-0.25 s of CPU measured on 2 cores), so a partition should hold seconds of work: 2^18 rows is 1.3 s of
# keyed hashing, 10 s of X25519. But the adapter holds two groups of one partition per core of results, so a
# partition's results stay under PARTITION_RESULT_BYTES (a Paillier ciphertext is 512 bytes a row).
PARTITION_ROWS = 1 << 18
MIN_PARTITION_ROWS = 1 << 14
PARTITION_RESULT_BYTES = 8 << 20
# Rows per partition read back to the adapter (`rows`): a partition at a time is in the driver's memory.
LOCAL_PARTITION_ROWS = 1 << 17
# ECDH's re-blinding batches: a partition of the peer's points per core (32 bytes each: 1 MiB).
BATCH_PART_POINTS = 32_768


def partition_rows(row_bytes: int) -> int:
    """Rows per partition for results of about `row_bytes` a row: seconds of work, bounded bytes."""
    return max(MIN_PARTITION_ROWS, min(PARTITION_ROWS, PARTITION_RESULT_BYTES // max(1, row_bytes)))


@dataclass(frozen=True)
class SparkSpec(SourceSpec):
    """`kind = "spark"`: where the rows are (table, path + format, or a JDBC table) and the session's settings."""

    format: str = ""               # with path: parquet | orc
    location: str = ""             # a path on the cluster's storage (hdfs://, s3a://, abfss://...), kept as written
    jdbc_user: str = ""
    password_env: str = ""         # the environment variable holding the JDBC password
    master: str = ""               # "" means local[N], N the cores this process may use
    app_name: str = "fedgate-adapter"
    conf: tuple[tuple[str, str], ...] = ()

    @property
    def jdbc(self) -> bool:
        return self.url is not None

    def session_settings(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        return (self.master or default_master(), self.app_name, self.conf)


def default_master() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return f"local[{cores}]"


# ---------------------------------------------------------------------------
# The process's one SparkSession
# ---------------------------------------------------------------------------


class _Sessions:
    """The SparkSession this process's Spark sources share: started lazily, stopped with its last user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: tuple[str, str, tuple[tuple[str, str], ...]] | None = None
        self._users = 0
        self._spark: SparkSession | None = None

    def join(self, settings: tuple[str, str, tuple[tuple[str, str], ...]], label: str) -> None:
        """Count a source as a user; refuse one whose master, app_name or conf differ from the session's."""
        with self._lock:
            if self._users and self._settings != settings:
                raise DataSourceError(
                    f"{label}: its Spark master, app_name or conf differ from another Spark dataset's of this "
                    "adapter; one adapter process runs one Spark session, so give every Spark dataset the same ones")
            self._settings = settings
            self._users += 1

    def get(self) -> SparkSession:
        """The session, started at the first call (seconds: it starts a JVM)."""
        with self._lock:
            if self._spark is None:
                assert self._settings is not None
                self._spark = _start(*self._settings)
            return self._spark

    def leave(self) -> None:
        """A source closed: the last one stops the session and its JVM."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users or self._spark is None:
                return
            spark, self._spark = self._spark, None
        _stop(spark)


SESSIONS = _Sessions()


def _start(master: str, app_name: str, conf: tuple[tuple[str, str], ...]) -> SparkSession:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise DataSourceError("kind 'spark' needs PySpark: install fedgate with its spark extra "
                              "(pip install 'fedgate[spark]') and Java 17") from None
    builder = SparkSession.builder.master(master).appName(app_name)
    builder = builder.config("spark.ui.showConsoleProgress", "false")  # no progress bars in the adapter's log
    # The UI shows query plans, filter literals included, to whoever reaches its port: off unless the
    # department turns it on (conf below), where its cluster's access control keeps it to its operators.
    builder = builder.config("spark.ui.enabled", "false")
    # Broadcasts (a match's keys) and shuffle or spill files (raw rows) are encrypted with a key held in memory:
    # without it PySpark writes a broadcast's pickle in the clear to the driver's temporary directory.
    builder = builder.config("spark.io.encryption.enabled", "true")
    if master.startswith("local"):
        # Nothing outside this host talks to a local driver: keep it on loopback (conf may say otherwise).
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        # Its Python workers run fedgate's code: the adapter's own interpreter has it, `python3` on the PATH may
        # not (PySpark reads only the environment). A cluster's executors need the fedgate wheel, README "Spark sources".
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in conf:
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # no Java, a master that does not answer...
        raise DataSourceError(f"cannot start Spark (master {master}): {_scrubbed(exc)}; Spark needs Java 17 "
                              "(java on the PATH or JAVA_HOME set) and a reachable master") from None
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _stop(spark: SparkSession) -> None:
    """Stop the session and end its JVM (else it lives as long as this process)."""
    from pyspark import SparkContext

    spark.stop()
    gateway = getattr(SparkContext, "_gateway", None)
    if gateway is None:
        return
    gateway.shutdown()
    proc = getattr(gateway, "proc", None)  # set when PySpark launched the JVM itself
    if proc is not None:
        proc.stdin.close()  # the JVM leaves when its stdin closes
        try:
            proc.wait(timeout=15)
        except Exception:
            proc.kill()
    SparkContext._gateway = None
    SparkContext._jvm = None


def _scrubbed(exc: BaseException) -> str:
    """What went wrong, without Spark's message: it can quote a stored value or a filter's literal."""
    error_class = getattr(exc, "getErrorClass", lambda: None)()
    if error_class:
        return f"{type(exc).__name__} [{error_class}]"
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            return f"{type(exc).__name__} ({java.getClass().getName()})"
        except Exception:
            pass
    return type(exc).__name__


# ---------------------------------------------------------------------------
# Filters as Spark expressions
# ---------------------------------------------------------------------------


def _iso_date(value: LiteralValue) -> dt.date | None:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def to_spark(f: Filter | None, df: DataFrame) -> Column:
    """A boolean Column over `df`; every literal is bound with lit(), checked against its column's Spark type.

    Spark's three-valued logic is the filter language's: a comparison with a null is unknown.
    Strings compare by code point (Spark compares UTF-8 bytes), as in the other sources.
    """
    from pyspark.sql import functions as F

    types = {field.name: field.dataType.simpleString() for field in df.schema.fields}

    def column(field: str) -> tuple[Column, str]:
        if field not in types:
            raise InvalidInput(f"filter: unknown field '{field}'")
        return df[field], types[field]

    def bind(kind: str, field: str, value: LiteralValue) -> Column:
        # Checked here as well as in check(): the adapter trusts its own table, not the caller.
        # Without it Spark would cast one side to the other's type, and compare otherwise than the other sources.
        if kind == "date":
            date = _iso_date(value)
            if date is None:
                raise InvalidInput(f"filter: field '{field}' is a date; compare it with a 'YYYY-MM-DD' string")
            return F.lit(date)
        if kind in _INTEGRAL and not isinstance(value, int):
            raise InvalidInput(f"filter: field '{field}' is an integer; compare it with an integer, not a string")
        if kind == "string" and not isinstance(value, str):
            raise InvalidInput(f"filter: field '{field}' is a string; compare it with a 'quoted string'")
        if kind not in _INTEGRAL and kind != "string":
            raise InvalidInput(f"filter: field '{field}' has a type filters do not support")
        return F.lit(value)

    def build(node: Filter) -> Column:
        if isinstance(node, Comparison):
            col, kind = column(node.field)
            result: Column = _OPS[node.op](col, bind(kind, node.field, node.value))
            return result
        if isinstance(node, InList):
            col, kind = column(node.field)
            return col.isin([bind(kind, node.field, v) for v in node.values])
        if isinstance(node, IsNull):
            col, _ = column(node.field)
            return col.isNotNull() if node.negated else col.isNull()
        if isinstance(node, Not):
            return ~build(node.expr)
        if isinstance(node, And):
            return reduce(operator.and_, (build(item) for item in node.items))
        if isinstance(node, Or):
            return reduce(operator.or_, (build(item) for item in node.items))
        raise AssertionError(node)

    return F.lit(True) if f is None else build(f)


# ---------------------------------------------------------------------------
# The source
# ---------------------------------------------------------------------------


class SparkSource:
    def __init__(self, spec: SparkSpec, sessions: _Sessions = SESSIONS) -> None:
        self._spec = spec
        self._sessions = sessions
        if spec.jdbc:
            assert spec.url is not None
            self._label = f"spark jdbc {spec.url.split('?')[0].split(';')[0]} table {spec.table}"
        elif spec.path is not None or spec.location:
            self._label = f"spark {spec.format} {spec.location or spec.path}"
        else:
            self._label = f"spark table {spec.table}"
        sessions.join(spec.session_settings(), self._label)
        self._closed = False

    def describe(self) -> str:
        return self._label

    def _frame(self) -> DataFrame:
        """The rows as a DataFrame, read afresh each time (files added or a table replaced since are seen)."""
        spec = self._spec
        spark = self._sessions.get()
        try:
            if spec.jdbc:
                reader = (spark.read.format("jdbc").option("url", spec.url).option("dbtable", spec.table)
                          .option("pushDownAggregate", "true"))  # COUNT(*) in the database, not row by row
                if spec.jdbc_user:
                    reader = reader.option("user", spec.jdbc_user)
                if spec.password_env:
                    password = os.environ.get(spec.password_env)
                    if password is None:
                        raise DataSourceError(f"{self._label}: the environment variable {spec.password_env} "
                                              "(password_env) is not set; set it to the database password")
                    reader = reader.option("password", password)
                return reader.load()
            if spec.location:
                return spark.read.format(spec.format).load(spec.location)
            if spec.path is not None:
                if not spec.path.exists():
                    raise DataSourceError(f"{self._label}: no such file or directory")
                return spark.read.format(spec.format).load(str(spec.path))
            assert spec.table is not None
            return spark.table(spec.table)
        except DataSourceError:
            raise
        except Exception as exc:
            hint = ""
            if getattr(exc, "getErrorClass", lambda: None)() == "TABLE_OR_VIEW_NOT_FOUND":
                hint = (" (no such table in the Spark catalog: a Hive metastore table needs "
                        'conf = { "spark.sql.catalogImplementation" = "hive", "spark.hadoop.hive.metastore.uris" '
                        '= "thrift://…" })')
            raise DataSourceError(f"{self._label}: cannot read: {_scrubbed(exc)}{hint}") from None

    def _group(self, doing: str) -> None:
        """Label the Spark jobs this thread starts from now on (reading files' schemas too) with the query served."""
        query = serving_query()
        # The query id, and what is done: never a filter's value or an identifier (the Spark UI shows it).
        self._sessions.get().sparkContext.setJobGroup(query or HOUSEKEEPING_GROUP,
                                                      f"fedgate: {doing} ({self._label})", interruptOnCancel=True)

    def _run(self, doing: str, job: Callable[[], Any]) -> Any:
        """Run `job` (Spark actions), its errors scrubbed of values."""
        try:
            return job()
        except (DataSourceError, InvalidInput):
            raise
        except Exception as exc:
            raise DataSourceError(f"{self._label}: Spark failed while {doing}: {_scrubbed(exc)}") from None

    def columns(self) -> list[str]:
        self._group("reading columns")
        return list(self._frame().columns)

    def check_types(self, types: Mapping[str, FieldType]) -> None:
        """Refuse a declared field whose column cannot hold its type, or a string column of dates with another value."""
        self._group("checking values")
        df = self._frame()
        kinds = {field.name: field.dataType.simpleString() for field in df.schema.fields}
        for name, declared in types.items():
            kind = kinds[name]
            allowed, wanted = _HOLDS[declared]
            if kind not in allowed:
                raise DataSourceError(
                    f"{self._label}: field '{name}' is declared {declared.value}, but its column is {kind.upper()}; "
                    f"declare the field's real type or point it at {wanted}")
            if declared is FieldType.DATE and kind == "string":
                misfits = df.filter(df[name].isNotNull() & ~df[name].rlike(ISO_DATE_PATTERN))
                bad = int(self._run("checking values", misfits.count))
                if bad:
                    raise DataSourceError(
                        f"{self._label}: field '{name}' is declared date, but {bad} row(s) of its STRING column "
                        "hold a value that is not a YYYY-MM-DD date")

    def count(self, where: Filter | None = None) -> int:
        self._group("counting rows")
        df = self._frame()
        if where is not None:
            df = df.filter(to_spark(where, df))
        return int(self._run("counting rows", df.count))

    def rows(self, columns: Sequence[str], where: Filter | None = None) -> Iterator[tuple[Value, ...]]:
        self._group("reading rows")
        table = self._frame()
        df = table if where is None else table.filter(to_spark(where, table))
        # Positional names, as in map_chunks: Arrow refuses a batch with two columns of one name. Rows of no
        # column (a count's rows) carry one constant column, dropped again in _ipc_rows: Arrow sends no batch
        # of no column.
        from pyspark.sql import functions as F

        picked = [df[name].alias(f"c{i}") for i, name in enumerate(columns)] or [F.lit(True).alias("none")]
        selected = df.select(*picked)
        # One partition at a time: the adapter's memory holds a partition, not the table. A file's partition
        # can hold millions of rows (a row group each), more than a default driver's heap takes at once, so
        # the table's rows (a count Parquet, ORC and JDBC answer from metadata or the database) set how many.
        total = int(self._run("reading rows", table.count))
        wanted = -(-total // LOCAL_PARTITION_ROWS)
        if selected.rdd.getNumPartitions() < wanted:
            selected = selected.repartition(wanted)
        # Rows come back as Arrow batches, each one value of a one-column frame (its IPC stream), and become
        # tuples here: a pickled Row a row cost about 3x the CPU, in the JVM and in the adapter.
        batches = selected.mapInArrow(_ipc_batches, "batch binary").rdd.map(_first)
        # The jobs run from a thread the JVM starts now, which takes this thread's job group with it.
        blobs = self._run("reading rows", lambda: batches.toLocalIterator(prefetchPartitions=False))
        try:
            for blob in blobs:
                yield from _ipc_rows(blob)
        except (DataSourceError, InvalidInput):
            raise
        except Exception as exc:
            raise DataSourceError(f"{self._label}: Spark failed while reading rows: {_scrubbed(exc)}") from None

    def map_chunks(self, columns: Sequence[str], where: Filter | None, size: int,
                   task: Callable[[K, list[tuple[Any, ...]]], T], keyed: K, rows_hint: int = 0,
                   doing: str = "computing tokens", row_bytes: int = 64) -> Iterator[T]:
        """Run `task` on the executors over chunks of the selected rows; results come back one group of
        partitions (one per core) at a time, so the adapter holds a group's results, not the table's."""
        self._group(doing)
        spark = self._sessions.get()
        sc = spark.sparkContext
        df = self._frame()
        if where is not None:
            df = df.filter(to_spark(where, df))
        # Positional names: Arrow refuses a batch with two columns of one name (a key field also disclosed).
        selected = df.select(*(df[name].alias(f"c{i}") for i, name in enumerate(columns)))
        cores = max(1, sc.defaultParallelism)
        wanted = max(cores, -(-rows_hint // partition_rows(row_bytes)))
        if selected.rdd.getNumPartitions() < wanted:
            # A file of a few row groups is one or two partitions: spread it over every core. (The shuffle's
            # files are encrypted, see _start.)
            selected = selected.repartition(wanted)
        from pyspark import inheritable_thread_target

        keys = sc.broadcast(keyed)
        jobs: collections.deque[cf.Future[list[Any]]] = collections.deque()
        threads = cf.ThreadPoolExecutor(2, thread_name_prefix="fedgate-spark-job")
        try:
            def arrow_work(batches: Iterable[Any]) -> Iterable[Any]:
                return _run_arrow_chunks(keys, task, size, iter(batches))

            # Rows reach the Python workers as Arrow batches (columnar, no pickled Row per row: about 4x cheaper
            # than the RDD of Rows), and each chunk's result comes back as one pickled value in a one-column frame.
            rdd = selected.mapInArrow(arrow_work, "chunk binary").rdd.map(_unpickled_chunk)
            partitions = rdd.getNumPartitions()
            groups = [range(first, min(partitions, first + cores)) for first in range(0, partitions, cores)]
            # Each group's job on a thread carrying this thread's job group (the query id).
            run = inheritable_thread_target(lambda group: self._run(
                doing, functools.partial(sc.runJob, rdd, _listed, group)))
            # Two groups in flight: the cores a group's last tasks leave idle take the next group's first.
            for group in groups:
                jobs.append(threads.submit(run, group))
                if len(jobs) < 2:
                    continue
                yield from _results(jobs.popleft().result())
            while jobs:
                yield from _results(jobs.popleft().result())
        finally:
            for job in jobs:
                job.cancel()
            threads.shutdown(wait=True)  # no task may still read the keys when they are destroyed
            keys.destroy()  # the keys leave the executors (and the driver's broadcast file) with the job

    def batch_rows(self) -> int:
        """A partition's rows for every core: a job's fixed cost (about a chunk's work) is small against that."""
        return max(1, self._sessions.get().sparkContext.defaultParallelism) * BATCH_PART_POINTS

    def map_parts(self, task: Callable[[K, P], T], keyed: K, parts: Sequence[P], doing: str) -> list[T]:
        """Run `task` on the executors over `parts` in one job, spread over every core; results in order."""
        if not parts:
            return []
        self._group(doing)  # this thread's jobs from now on: run it on the thread that runs the job
        sc = self._sessions.get().sparkContext
        keys = sc.broadcast(keyed)
        try:
            # Consecutive runs of parts, one per core: collect() keeps partitions' and parts' order.
            slices = min(len(parts), max(1, sc.defaultParallelism))
            work = functools.partial(_run_parts, keys, task)
            return list(_results(self._run(doing, lambda: sc.parallelize(list(parts), slices)
                                           .mapPartitions(work).collect())))
        finally:
            keys.destroy()  # the keys leave the executors (and the driver's broadcast file) with the job

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sessions.leave()


@dataclass(frozen=True)
class _Failed:
    """A domain error an executor's task raised (a value out of range), carried back to be raised as itself."""

    error: FedgateError


def _results(items: list[Any]) -> Iterator[Any]:
    for item in items:
        if isinstance(item, _Failed):
            raise item.error
        yield item


def _listed(items: Iterable[Any]) -> list[Any]:
    return list(items)


def _unpickled_chunk(row: Any) -> Any:
    # The adapter's own executors pickled it (_run_arrow_chunks): as trusted as PySpark's own results.
    return pickle.loads(row[0])


def _first(row: Any) -> Any:
    return row[0]


def _ipc_batches(batches: Iterable[Any]) -> Iterator[Any]:
    """On an executor: each Arrow batch of rows as one value, its IPC stream."""
    import pyarrow as pa

    for columnar in batches:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, columnar.schema) as writer:
            writer.write_batch(columnar)
        yield pa.RecordBatch.from_arrays([pa.array([sink.getvalue().to_pybytes()], pa.binary())], ["batch"])


def _ipc_rows(blob: bytes) -> Iterator[tuple[Value, ...]]:
    """In the adapter: the rows of one batch `_ipc_batches` made, as tuples of Python values."""
    import pyarrow as pa

    for columnar in pa.ipc.open_stream(blob):
        if columnar.schema.names == ["none"]:  # rows with no column asked for: as many empty tuples
            yield from [()] * columnar.num_rows
        else:
            yield from zip(*(column.to_pylist() for column in columnar.columns))


def _run_arrow_chunks(keys: Broadcast[Any], task: Callable[[Any, list[tuple[Any, ...]]], Any], size: int,
                      batches: Iterator[Any]) -> Iterator[Any]:
    """On an executor: `task` over a partition's Arrow batches, `size` rows at a time, each result one pickled row."""
    import pyarrow as pa

    keyed = keys.value
    pending: list[tuple[Any, ...]] = []

    def result(chunk: list[tuple[Any, ...]]) -> tuple[Any, bool]:
        try:
            return task(keyed, chunk), False
        except FedgateError as exc:
            return _Failed(exc), True

    def batch(value: Any) -> Any:
        return pa.RecordBatch.from_arrays([pa.array([pickle.dumps(value)], pa.binary())], ["chunk"])

    for columnar in batches:
        pending.extend(zip(*(column.to_pylist() for column in columnar.columns)))
        while len(pending) >= size:
            chunk, pending = pending[:size], pending[size:]
            value, failed = result(chunk)
            yield batch(value)
            if failed:
                return
    if pending:
        yield batch(result(pending)[0])


def _run_parts(keys: Broadcast[Any], task: Callable[[Any, Any], Any], parts: Iterable[Any]) -> Iterator[Any]:
    """On an executor: `task` over a partition's parts; a domain error ends the partition, carried back."""
    keyed = keys.value
    for part in parts:
        try:
            yield task(keyed, part)
        except FedgateError as exc:
            yield _Failed(exc)
            return


# ---------------------------------------------------------------------------
# Configuration: source = { kind = "spark", ... }
# ---------------------------------------------------------------------------


def _read(table: Table) -> SourceSpec:
    where = [key for key in ("table", "path", "jdbc") if table.has(key)]
    if len(where) != 1:
        raise table.error("kind", "a Spark source names exactly one of `table` (a Spark catalog table), "
                                  "`path` (with `format`) or `jdbc` (a table in a database)"
                                  + (f"; found {', '.join(where)}" if where else ""))
    master = table.text("master", "")
    if master and not (re.fullmatch(r"local(\[([0-9]+|\*)(, *[0-9]+)?\])?", master)
                       or master.startswith(("spark://", "k8s://", "mesos://")) or master == "yarn"):
        raise table.error("master", f"{master!r} is not a Spark master: local[N], spark://host:port, yarn or "
                                    "k8s://https://host:port")
    conf: list[tuple[str, str]] = []
    if table.has("conf"):
        settings = table.table("conf")
        for key in settings.keys():
            if not key.startswith("spark."):
                raise settings.error(key, 'not a Spark setting: write "spark.…" = "value"')
            conf.append((key, settings.text(key)))  # Spark reads every setting as text: "4", "true"
        settings.done()
    common = {"master": master, "app_name": table.text("app_name", "fedgate-adapter"), "conf": tuple(conf)}
    if where == ["path"]:
        fmt = table.text("format", "")
        if fmt not in FORMATS:
            raise table.error("format", f"a Spark path needs format = {' or '.join(repr(f) for f in FORMATS)}")
        if "://" in table.text("path"):  # the cluster's storage, not a file beside this TOML
            return SparkSpec("spark", location=table.text("path"), format=fmt, **common)
        return SparkSpec("spark", path=table.path("path"), format=fmt, **common)
    if table.has("format"):
        raise table.error("format", "only a Spark `path` takes a format")
    if where == ["table"]:
        name = table.text("table")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}", name):
            raise table.error("table", "write a Spark catalog table as name, database.name or catalog.database.name")
        return SparkSpec("spark", table=name, **common)
    jdbc = table.table("jdbc")
    url = jdbc.text("url")
    if not url.startswith("jdbc:"):
        raise jdbc.error("url", "a JDBC URL starts with jdbc: (jdbc:postgresql://host/db)")
    if _URL_SECRET.search(url):
        raise jdbc.error("url", "no password in the URL: name the environment variable holding it in `password_env`")
    spec = SparkSpec("spark", url=url, table=jdbc.text("table"), jdbc_user=jdbc.text("user", ""),
                     password_env=jdbc.text("password_env", ""), **common)
    jdbc.done()
    return spec


def _open(spec: SourceSpec, types: Mapping[str, FieldType]) -> SparkSource:
    assert isinstance(spec, SparkSpec)  # read by _read
    return SparkSource(spec)


# `source = { kind = "spark", table = "warehouse.subsidies" }`, or `path = "data/subsidies.parquet", format =
# "parquet"`, or `jdbc = { url = "jdbc:postgresql://db/hrss", table = "subsidies", user = "reader",
# password_env = "HRSS_DB_PASSWORD" }`; with `master`, `app_name` and `conf = { "spark.executor.memory" = "2g" }`.
KIND = SourceKind("spark", _read, _open)

