"""A match's disclosure on a Spark source runs on the executors (issue 16): the adapter gets the masked matched
rows, never the table's rows, and they are the rows its in-process path gives from the same data."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

import support
from fedgate.adapters.disclose_tasks import DiscloseJob
from fedgate.adapters.matching import _Session
from fedgate.adapters.pool_tasks import local_hash
from fedgate.adapters.sources import Source, Value, chunk_mapper
from fedgate.adapters.sources.guard import GuardedSource
from fedgate.adapters.sources.spark import SparkSource, SparkSpec
from fedgate.core.classification import default_levels
from fedgate.core.datasets import DatasetDecl, FieldDecl, FieldGrant
from fedgate.core.filters import Filter
from fedgate.crypto.ids import normalise
from fedgate.query import match_side as side
from fedgate.query import protocols
from fedgate.protos.fedgate.v1 import common_pb2

pytestmark = pytest.mark.spark

CONF = tuple(support.SPARK_TEST_CONF.items())
COLUMNS = ("uscc", "company_name", "amount_fen")
SCHEMA = "uscc string, company_name string, amount_fen bigint"
GOOD = [(support.uscc(i), f"公司{i}", 100 * i) for i in range(30)]
NAMELESS = (support.uscc(31), None, 7)  # a matched row whose disclosed field is null
BAD_KEY = ("not-a-uscc", "坏键", 5)
NO_VALUE = (support.uscc(32), "缺值", None)  # a value that is not an integer: it made no token
ROWS = [*GOOD, NAMELESS, BAD_KEY, NO_VALUE]
DECL = DatasetDecl("hrss", "subsidies", (FieldDecl.build("uscc", "string", "L3", "uscc"),
                                         FieldDecl.build("company_name", "string", "L2"),
                                         FieldDecl.build("amount_fen", "int", "L3")))
GRANTS = (FieldGrant("uscc", "L3", "masked"), FieldGrant("company_name", "L2", "plaintext"))


class _Rows:
    """The same rows as the Parquet file, served in the adapter (no executors): the in-process path."""

    def rows(self, columns: Sequence[str], where: Filter | None = None) -> Iterator[tuple[Value, ...]]:
        assert where is None
        for row in ROWS:
            yield tuple(row[COLUMNS.index(c)] for c in columns)


class _Release:
    def release(self, request: object) -> None:
        pass


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Path:
    directory = tmp_path_factory.mktemp("spark-disclose")
    spark.createDataFrame(ROWS, SCHEMA).coalesce(1).write.parquet(str(directory / "rows.parquet"))
    return directory / "rows.parquet"


def _hash(row: tuple[Any, ...]) -> bytes:
    """The row's local hash as its token's was made; for the two rows that made none, the hash a finder that did
    not skip them would compute (so a finder that discloses them is caught)."""
    key = row[0] if row is BAD_KEY else normalise("uscc", row[0])
    return local_hash(key.encode(), [row[2]])


def _session(source: Source, limit: int) -> _Session:
    start = side.SideStart("subsidies", "uscc", "", b"", "keyed", "left", "samr", cast(Any, None), grants=GRANTS,
                           limit=limit, action="query.sum", value_fields=("amount_fen",))
    plan = side.SessionPlan(start, DECL, protocols.get("keyed"), "uscc", None, "query.sum", ("amount_fen",))
    session = _Session(plan, side.SideMachine(plan, lambda n: None), source, b"", cast(Any, SimpleNamespace(
        params=None)), cast(Any, SimpleNamespace(parallelism=2)), default_levels(), cast(Any, _Release()),
        cast(Any, None), subjects=cast(Any, SimpleNamespace(secret=b"r" * 32)))
    session.hashes = bytearray(b"".join(_hash(row) for row in ROWS))
    return session


Disclosed = tuple[tuple[str, ...], tuple[bool, ...]]


def _disclose(source: Source, positions: list[int], limit: int) -> tuple[set[Disclosed], list[int]]:
    """The disclosed rows as ((values), (nulls)), and the subject references recorded for them."""
    session = _session(source, limit)
    rows = session._disclose(positions, len(ROWS))
    assert session.disclosed is not None
    return {_plain(r) for r in rows}, [int(v) for v in session.disclosed.refs().values]


def _plain(row: common_pb2.DisclosedRow) -> Disclosed:
    return tuple(row.values), tuple(row.null)


@pytest.fixture
def spark_only(parquet: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedSource]:
    """The Spark source as the adapter serves it, whose rows must not reach the adapter."""
    def streamed(*args: object, **kwargs: object) -> Iterator[tuple[Value, ...]]:
        raise AssertionError("the disclosure streamed the table's rows to the adapter")

    monkeypatch.setattr(SparkSource, "rows", streamed)
    source = SparkSource(SparkSpec("spark", path=parquet, format="parquet", master=support.SPARK_TEST_MASTER, conf=CONF))
    try:
        yield GuardedSource("subsidies", source)
    finally:
        source.close()


def test_executors_disclose_the_rows_the_adapter_would(spark_only: GuardedSource) -> None:
    assert chunk_mapper(spark_only) is not None and chunk_mapper(cast(Source, _Rows())) is None
    positions = [3, 7, 8, 29, 30, 31, 32]  # two good rows' neighbours, the null-field row, and the two traps
    spark, refs = _disclose(spark_only, positions, limit=50)
    local, local_refs = _disclose(cast(Source, _Rows()), positions, limit=50)
    assert spark == local and refs == local_refs and len(refs) == 5
    by_name = {values[1]: nulls for values, nulls in spark}
    # Neither trap; the null field as null.
    assert by_name == {"公司3": (False, False), "公司7": (False, False), "公司8": (False, False),
                       "公司29": (False, False), "": (False, True)}
    masked = {values[0] for values, _ in spark}
    assert all("*" in m for m in masked) and not masked & {support.uscc(i) for i in range(33)}


def test_more_matches_than_the_limit_give_exactly_limit_rows(spark_only: GuardedSource,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen = support.record_broadcasts(monkeypatch)
    made, jobs = seen.made, seen.values
    everything, _ = _disclose(cast(Source, _Rows()), list(range(30)), limit=50)
    spark, refs = _disclose(spark_only, list(range(30)), limit=4)
    local, local_refs = _disclose(cast(Source, _Rows()), list(range(30)), limit=4)
    assert len(spark) == len(local) == len(refs) == len(local_refs) == 4 and spark <= everything
    # Stopped at the limit: the job's broadcast of the matched rows' hashes is destroyed, not left to a collector.
    assert len(made) == 1 and not made[0]._jbroadcast.isValid()
    job = jobs[0]
    assert isinstance(job, DiscloseJob)
    shown = repr(job) + str(job)
    assert len(job.wanted) == 30 and job.subject_key == b"r" * 32
    assert not [h for h in job.wanted if h.hex() in shown or repr(h) in shown] and repr(job.subject_key) not in shown
