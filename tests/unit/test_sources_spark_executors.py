"""The Spark source's executors do a match's per-row work (issue 16): the same tokens, hashes and ciphertexts as the
adapter's pool makes from the same rows, under the query's job group, with the keys' broadcast destroyed after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import phe  # type: ignore[import-untyped]
import pytest

import support
from fedgate.adapters.pool_tasks import ChunkTokens, TokenJob, ValueOutOfRange, job_tokens
from fedgate.adapters.sources import chunk_mapper, serving
from fedgate.adapters.sources.csv_file import CsvSource
from fedgate.adapters.sources.guard import GuardedSource
from fedgate.adapters.sources.spark import SESSIONS, SparkSource, SparkSpec
from fedgate.crypto import paillier, psi
from fedgate.core.filters import parse

CONF = tuple(support.SPARK_TEST_CONF.items())
SCHEMA = "uscc string, amount_fen bigint"
# Valid, invalid, missing keys and a missing value: what the pool counts, the executors count too.
ROWS = [(support.uscc(i), 100 * i) for i in range(40)] + [("not-a-uscc", 5), (None, 7), ("", 1),
                                                         (support.uscc(41), None)]


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Path:
    directory = tmp_path_factory.mktemp("spark-exec")
    spark.createDataFrame(ROWS, SCHEMA).coalesce(1).write.parquet(str(directory / "rows.parquet"))
    return directory / "rows.parquet"


def _source(path: Path) -> SparkSource:
    return SparkSource(SparkSpec("spark", path=path, format="parquet", master=support.SPARK_TEST_MASTER, conf=CONF))


def _joined(chunks: list[ChunkTokens]) -> tuple[bytes, bytes, int, int, int]:
    return (b"".join(c.tokens for c in chunks), b"".join(c.hashes for c in chunks), sum(c.invalid for c in chunks),
            sum(c.missing_values for c in chunks), sum(c.rows for c in chunks))


def _by_row(chunks: list[ChunkTokens], width: int) -> set[tuple[bytes, bytes]]:
    """(token, local hash) pairs: the executors may give the rows in another order, never other pairs."""
    tokens, hashes, *_ = _joined(chunks)
    return {(tokens[i * width:(i + 1) * width], hashes[i * 16:(i + 1) * 16]) for i in range(len(hashes) // 16)}


@pytest.mark.parametrize("mode", ["keyed", "ecdh"])
def test_executors_make_the_tokens_the_pool_makes(parquet: Path, mode: str) -> None:
    tokens_of, secret, width = ((psi.hmac_tokens, b"k" * 32, psi.TOKEN_BYTES) if mode == "keyed"
                                else (psi.hash_and_blind, psi.new_scalar(), psi.POINT_BYTES))
    job = TokenJob(tokens_of, secret, "uscc", keep_hashes=True)
    source = _source(parquet)
    try:
        mapper = chunk_mapper(source)
        assert mapper is not None and chunk_mapper(CsvSource.__new__(CsvSource)) is None
        # As the adapter serves it: wrapped in its guard, which offers the executors too.
        mapper = chunk_mapper(GuardedSource("subsidies", source))
        assert mapper is not None and chunk_mapper(GuardedSource("x", CsvSource.__new__(CsvSource))) is None
        where = parse("amount_fen > 500")
        spark = list(mapper.map_chunks(["uscc", "amount_fen"], where, 7, job_tokens, job, rows_hint=len(ROWS)))
        local = [job_tokens(job, list(source.rows(["uscc", "amount_fen"], where)))]
    finally:
        source.close()
    assert len(spark) > 1 and all(c.rows <= 7 for c in spark)  # chunks, spread over both cores' partitions
    assert _joined(spark)[2:] == _joined(local)[2:]
    assert _by_row(spark, width) == _by_row(local, width) and len(_by_row(local, width)) > 20


def test_executors_encrypt_the_values_under_the_supervisors_key(parquet: Path) -> None:
    public, private = phe.generate_paillier_keypair(n_length=2048)
    key = paillier.public_key_to_bytes(public)
    job = TokenJob(psi.hmac_tokens, b"k" * 32, "uscc", True, ("amount_fen",), key, ((0, 3000),))
    source = _source(parquet)
    try:
        mapper = chunk_mapper(source)
        assert mapper is not None
        chunks = list(mapper.map_chunks(["uscc", "amount_fen"], None, 16, job_tokens, job, rows_hint=len(ROWS)))
    finally:
        source.close()
    width = paillier.ciphertext_bytes(public.n)
    data = b"".join(c.ciphertexts for c in chunks)
    values = [private.decrypt(phe.EncryptedNumber(public, int.from_bytes(data[i:i + width], "big")))
              for i in range(0, len(data), width)]
    assert sorted(values) == sorted(min(100 * i, 3000) for i in range(40))  # clamped, each valid row once
    assert _joined(chunks)[2:] == (3, 1, len(ROWS))


def test_the_job_runs_under_the_query_id_and_its_keys_are_destroyed_after(parquet: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    source = _source(parquet)
    sc = SESSIONS.get().sparkContext
    made = support.record_broadcasts(monkeypatch).made
    job = TokenJob(psi.hmac_tokens, b"s" * 32, "uscc", False)
    try:
        mapper = chunk_mapper(source)
        assert mapper is not None
        with serving("ab" * 16):
            assert sum(c.rows for c in mapper.map_chunks(["uscc"], None, 8, job_tokens, job)) == len(ROWS)
            # A reader that stops early (the session ended) destroys the keys too.
            early = mapper.map_chunks(["uscc"], None, 8, job_tokens, job)
            next(early)
            early.close()
        assert sc.statusTracker().getJobIdsForGroup("ab" * 16)
        assert "s" * 32 not in repr(job)
    finally:
        source.close()
    assert len(made) == 2
    # Destroyed: no executor can read the keys any more.
    assert all(support.Broadcasts.destroyed(keys) for keys in made)


def test_a_domain_error_on_an_executor_is_raised_as_itself(parquet: Path) -> None:
    """A value out of range refuses the query with its own message, as the pool's does, not as a Spark failure."""
    def refuse(keyed: object, chunk: object) -> object:
        raise ValueOutOfRange("field 'amount_fen' holds a value outside the signed 64-bit range")

    source = _source(parquet)
    try:
        mapper = chunk_mapper(source)
        assert mapper is not None
        with pytest.raises(ValueOutOfRange, match="amount_fen"):
            list(mapper.map_chunks(["uscc", "amount_fen"], None, 8, refuse, None))
    finally:
        source.close()


def test_rows_read_back_in_bounded_partitions_are_every_row_once(parquet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file's one partition is split before it is read back (a partition at a time is in the driver's heap),
    and the split loses or repeats no row, filtered or not."""
    from fedgate.adapters.sources import spark

    monkeypatch.setattr(spark, "LOCAL_PARTITION_ROWS", 8)
    source = _source(parquet)
    reads: list[int] = []
    from pyspark import RDD

    original = RDD.toLocalIterator

    def counting(self: RDD[Any], prefetchPartitions: bool = False) -> Any:
        reads.append(self.getNumPartitions())
        return original(self, prefetchPartitions)

    monkeypatch.setattr(RDD, "toLocalIterator", counting)
    try:
        everything = sorted(source.rows(["uscc", "amount_fen"]), key=repr)
        filtered = sorted(source.rows(["uscc"], parse("amount_fen > 500")), key=repr)
    finally:
        source.close()
    assert everything == sorted(ROWS, key=repr)
    assert filtered == sorted(((u,) for u, a in ROWS if a is not None and a > 500), key=repr)
    assert reads and all(parts >= -(-len(ROWS) // 8) for parts in reads)  # 44 rows, at most 8 a partition
