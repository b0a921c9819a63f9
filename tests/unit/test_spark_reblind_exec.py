"""ECDH's second round on a Spark source's executors (issue 16): the peer's chunks re-blinded in batches, one job
each, giving the bytes the pool gives, in the chunks' order, under the query's job group, the key destroyed after."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest

import support
from fedgate.adapters.matching import Reblinding
from fedgate.adapters.sources import ChunkMapper, chunk_mapper, serving
from fedgate.adapters.sources.csv_file import CsvSource
from fedgate.adapters.sources.guard import GuardedSource
from fedgate.adapters.sources.spark import SESSIONS, SparkSource, SparkSpec
from fedgate.core.errors import DataSourceError, RemoteProtocolError, SourceFailed
from fedgate.crypto import psi
from fedgate.query.protocols import ecdh
from fedgate.server.worker_pool import WorkerPool

K = TypeVar("K")
P = TypeVar("P")
T = TypeVar("T")
CONF = tuple(support.SPARK_TEST_CONF.items())
QUERY = "cd" * 16


def _points(count: int, seed: int) -> bytes:
    return psi.hash_and_blind(psi.new_scalar(), b"d", [f"{seed}-{i}".encode() for i in range(count)])


# Chunks of uneven sizes, as a peer's last chunk is: each must come back as itself, in its place.
CHUNKS = [_points(n, i) for i, n in enumerate([5, 9, 1, 7, 7, 3, 8, 2, 6])]


@pytest.fixture(scope="module")
def source(spark: Any) -> Iterator[SparkSource]:
    held = SparkSource(SparkSpec("spark", table="held", master=support.SPARK_TEST_MASTER, conf=CONF))
    try:
        yield held
    finally:
        held.close()


@pytest.fixture
def broadcasts(source: SparkSource, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every broadcast the tests make, to check each is destroyed."""
    return support.record_broadcasts(monkeypatch).made


_destroyed = support.Broadcasts.destroyed


async def _sent(reblinding: Reblinding, chunks: list[bytes], out: list[bytes]) -> list[bytes]:
    for chunk in chunks:
        await reblinding.add(chunk)
    await reblinding.finish()
    return out


def _run(reblind: Callable[[bytes, bytes], bytes], secret: bytes, mapper: ChunkMapper | None,
         chunks: list[bytes], query: str = QUERY) -> list[bytes]:
    out: list[bytes] = []

    async def send(data: bytes) -> None:
        out.append(data)

    reblinding = Reblinding(reblind, secret, psi.POINT_BYTES, WorkerPool(0), mapper, send)
    with serving(query):
        return asyncio.run(_sent(reblinding, chunks, out))


@pytest.mark.spark
def test_map_parts_keeps_the_order_and_reblinds_as_locally(source: SparkSource, broadcasts: list[Any]) -> None:
    secret = psi.new_scalar()
    mapper = chunk_mapper(GuardedSource("subsidies", source))  # as the adapter serves it
    assert mapper is not None and chunk_mapper(GuardedSource("x", CsvSource.__new__(CsvSource))) is None
    assert mapper.batch_rows() == 2 * 32_768  # a partition's points for each of local[2]'s cores
    with serving(QUERY):
        done = mapper.map_parts(ecdh.reblind, secret, CHUNKS, "re-blinding tokens")
    assert done == [ecdh.reblind(secret, chunk) for chunk in CHUNKS]
    assert len(set(done)) == len(CHUNKS) and all(len(d) == len(c) // 2 for d, c in zip(done, CHUNKS, strict=True))
    assert SESSIONS.get().sparkContext.statusTracker().getJobIdsForGroup(QUERY)
    assert mapper.map_parts(ecdh.reblind, secret, [], "re-blinding tokens") == []  # no job, no broadcast
    assert len(broadcasts) == 1 and _destroyed(broadcasts[0])


@pytest.mark.spark
def test_a_failing_job_destroys_the_key_and_says_no_value(source: SparkSource, broadcasts: list[Any]) -> None:
    secret = psi.new_scalar()

    def crash(keyed: bytes, points: bytes) -> bytes:
        raise RuntimeError(f"value {points.hex()}")

    with pytest.raises(DataSourceError) as failed:
        source.map_parts(crash, secret, CHUNKS, "re-blinding tokens")
    assert "re-blinding tokens" in str(failed.value)
    assert all(c.hex()[:16] not in str(failed.value) for c in CHUNKS) and secret.hex() not in str(failed.value)
    # Through the guard, only a reference leaves.
    mapper = chunk_mapper(GuardedSource("subsidies", source))
    assert mapper is not None
    with pytest.raises(SourceFailed):
        mapper.map_parts(crash, secret, CHUNKS, "re-blinding tokens")
    # A peer's malformed point is the peer's error, raised as itself as the pool raises it.
    bad = CHUNKS[:3] + [b"\xff" * psi.POINT_BYTES]
    with pytest.raises(RemoteProtocolError, match="non-canonical point at position 0"):
        mapper.map_parts(ecdh.reblind, secret, bad, "re-blinding tokens")
    assert len(broadcasts) == 3 and all(_destroyed(keys) for keys in broadcasts)


class _Small:
    """A Spark mapper whose batches hold `limit` points, each job recorded."""

    def __init__(self, inner: ChunkMapper, limit: int) -> None:
        self.inner, self.limit = inner, limit
        self.batches: list[int] = []

    def map_chunks(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not a token job")

    def batch_rows(self) -> int:
        return self.limit

    def map_parts(self, task: Callable[[K, P], T], keyed: K, parts: Sequence[P], doing: str) -> list[T]:
        self.batches.append(len(parts))
        return self.inner.map_parts(task, keyed, parts, doing)


@pytest.mark.spark
def test_the_sessions_batches_send_each_chunk_in_order_as_the_pool_does(source: SparkSource,
                                                                        broadcasts: list[Any]) -> None:
    secret = psi.new_scalar()
    inner = chunk_mapper(GuardedSource("subsidies", source))
    assert inner is not None
    mapper = _Small(inner, 12)
    spark = _run(ecdh.reblind, secret, mapper, CHUNKS, query="ef" * 16)
    pooled = _run(ecdh.reblind, secret, None, CHUNKS)
    assert spark == pooled == [ecdh.reblind(secret, chunk) for chunk in CHUNKS]  # message for message
    # Filled to 12 points or more, the last partial batch flushed at the end: one job (one key) per batch.
    assert mapper.batches == [2, 3, 3, 1]
    assert SESSIONS.get().sparkContext.statusTracker().getJobIdsForGroup("ef" * 16)  # from the jobs' threads
    assert len(broadcasts) == 4 and all(_destroyed(keys) for keys in broadcasts)


class _Slow:
    """A mapper that works locally and slowly, counting the batches in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.groups: list[str | None] = []

    def map_chunks(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not a token job")

    def batch_rows(self) -> int:
        return 10

    def map_parts(self, task: Callable[[K, P], T], keyed: K, parts: Sequence[P], doing: str) -> list[T]:
        from fedgate.adapters.sources import serving_query

        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.groups.append(serving_query())
        time.sleep(0.2)
        with self.lock:
            self.running -= 1
        return [task(keyed, part) for part in parts]


def test_at_most_two_batches_run_at_once_and_they_serve_the_query() -> None:
    secret = psi.new_scalar()
    mapper = _Slow()
    chunks = CHUNKS * 3
    assert _run(ecdh.reblind, secret, mapper, chunks) == [ecdh.reblind(secret, chunk) for chunk in chunks]
    assert mapper.most == 2 and len(mapper.groups) > 4 and set(mapper.groups) == {QUERY}
