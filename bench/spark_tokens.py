"""A match's per-row work on Spark's executors against the adapter's own worker pool, on the same rows.

Usage::

    python -m bench.spark_tokens [--sizes 100000,1000000] [--modes keyed,ecdh] [--cores 2] [--repeat 2]
                                 [--json out.json]

For each size N and mode, N valid USCCs are written once as Parquet, then turned into tokens
(``pool_tasks.job_tokens``: normalise, keyed hash or hash-to-curve and blind) twice:

* **pool**: the adapter's path for an in-process source: chunks of ``matching.chunk_rows`` rows, already
  in memory (the source's read is not counted), on a spawn process pool of ``--cores`` workers;
* **spark**: ``SparkSource.map_chunks`` on ``local[--cores]``: the Parquet read, the executors' work and
  the results back in the adapter, everything a Spark source's match does before the gRPC stream.

Then the ECDH second round (re-blinding the peer's points, as many as the largest size), in chunks of
``matching.chunk_rows`` points as the adapter receives them: on the pool, ``--cores`` chunks in flight,
and as a Spark source's session does it (``matching.Reblinding``: batches of ``batch_rows()`` points, one
``map_parts`` job each, two in flight). Each is run ``--repeat`` times and the best kept (a serving adapter
is warm). Reported: rows/s and rows/s per core. Results and the decision they support: docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

from fedgate.adapters.matching import Reblinding, chunk_rows
from fedgate.adapters.pool_tasks import TokenJob, job_tokens
from fedgate.adapters.sources import chunk_mapper
from fedgate.adapters.sources.spark import SESSIONS, SparkSource, SparkSpec
from fedgate.crypto import psi
from fedgate.crypto.ids import make_uscc
from fedgate.query.protocols import ecdh
from fedgate.server.worker_pool import WorkerPool


def _rows(n: int) -> list[tuple[str]]:
    return [(make_uscc(f"91330100MA{i:07d}"),) for i in range(n)]


def _job(mode: str) -> TokenJob:
    if mode == "keyed":
        return TokenJob(psi.hmac_tokens, b"k" * 32, "uscc", keep_hashes=False)
    return TokenJob(psi.hash_and_blind, psi.new_scalar(), "uscc", keep_hashes=False)


def _token_bytes(job: TokenJob) -> int:
    return psi.TOKEN_BYTES if job.tokens_of is psi.hmac_tokens else psi.POINT_BYTES


def _pool_rate(pool: cf.ProcessPoolExecutor, job: TokenJob, rows: list[tuple[str]], cores: int) -> float:
    size = chunk_rows(len(rows), cores)
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
    start = time.perf_counter()
    done = sum(c.rows for c in pool.map(job_tokens, [job] * len(chunks), chunks))
    assert done == len(rows)
    return len(rows) / (time.perf_counter() - start)


def _spark_rate(path: Path, job: TokenJob, n: int, cores: int, master: str) -> float:
    source = SparkSource(SparkSpec("spark", path=path, format="parquet", master=master))
    try:
        mapper = chunk_mapper(source)
        assert mapper is not None
        start = time.perf_counter()
        done = sum(c.rows for c in mapper.map_chunks(["uscc"], None, chunk_rows(n, cores), job_tokens, job, n,
                                                        row_bytes=job.result_bytes(_token_bytes(job))))
        assert done == n
        return n / (time.perf_counter() - start)
    finally:
        source.close()


def _reblind_rates(pool: cf.ProcessPoolExecutor, master: str, cores: int, points: int,
                   repeat: int) -> dict[str, float]:
    """Points re-blinded per second, `points` of them in chunks of `chunk_rows` points (as a 10^6-row peer
    sends them): on the pool, `cores` chunks in flight; through a Spark source's batches (``map_parts``)."""
    size = chunk_rows(10**6, cores)
    chunk = psi.hash_and_blind(psi.new_scalar(), b"d", [str(i).encode() for i in range(size)])
    count = -(-points // size)
    scalar = psi.new_scalar()

    def on_pool() -> float:
        start = time.perf_counter()
        list(pool.map(ecdh.reblind, [scalar] * count, [chunk] * count, chunksize=1))
        return count * size / (time.perf_counter() - start)

    source = SparkSource(SparkSpec("spark", table="unread", master=master))
    mapper = chunk_mapper(source)
    assert mapper is not None
    sent: list[int] = []

    async def send(data: bytes) -> None:
        sent.append(len(data))

    async def batched() -> None:
        reblinding = Reblinding(ecdh.reblind, scalar, psi.POINT_BYTES, WorkerPool(0), mapper, send)
        for _ in range(count):
            await reblinding.add(chunk)
        await reblinding.finish()

    def on_spark() -> float:
        sent.clear()
        start = time.perf_counter()
        asyncio.run(batched())
        rate = count * size / (time.perf_counter() - start)
        assert sent == [size * psi.TOKEN_BYTES] * count
        return rate

    try:
        pool_rate = max(on_pool() for _ in range(repeat))
        spark_rate = max(on_spark() for _ in range(repeat))
        return {"chunk_points": size, "points": count * size, "batch_points": mapper.batch_rows(),
                "pool": pool_rate, "spark": spark_rate, "spark_vs_pool": spark_rate / pool_rate}
    finally:
        source.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--modes", default="keyed,ecdh")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cores, master = args.cores, f"local[{args.cores}]"
    results: dict[str, Any] = {"cores": cores, "runs": []}
    # One session for the whole run (as an adapter's, started at its start-up checks), warmed up by one job.
    holder = SparkSource(SparkSpec("spark", table="unread", master=master))
    SESSIONS.get().sparkContext.parallelize(range(cores), cores).map(lambda i: i).collect()
    with tempfile.TemporaryDirectory() as tmp, \
            cf.ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(job_tokens, [_job("keyed")] * cores, [_rows(10)] * cores))  # workers started
        for n in (int(s) for s in args.sizes.split(",")):
            rows = _rows(n)
            path = Path(tmp) / f"rows-{n}.parquet"
            SESSIONS.get().createDataFrame(rows, "uscc string").coalesce(1).write.parquet(str(path))
            for mode in args.modes.split(","):
                job = _job(mode)
                # Best of --repeat: an adapter serving queries all day is warm (JIT, page cache, Python workers).
                pool_rate = max(_pool_rate(pool, job, rows, cores) for _ in range(args.repeat))
                spark_rate = max(_spark_rate(path, job, n, cores, master) for _ in range(args.repeat))
                run = {"rows": n, "mode": mode, "pool_rows_s": round(pool_rate), "spark_rows_s": round(spark_rate),
                       "pool_per_core": round(pool_rate / cores), "spark_per_core": round(spark_rate / cores),
                       "spark_vs_pool": round(spark_rate / pool_rate, 2)}
                results["runs"].append(run)
                print(json.dumps(run), flush=True)
        if "ecdh" in args.modes:
            most = max(int(s) for s in args.sizes.split(","))
            rates = _reblind_rates(pool, master, cores, most, args.repeat)
            results["reblind"] = {k: round(v, 2) if k == "spark_vs_pool" else round(v) for k, v in rates.items()}
            print(json.dumps(results["reblind"]), flush=True)
    holder.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
