"""A Spark source's rows read back into the adapter: Arrow batches (``SparkSource.rows``) against pickled Rows.

Usage::

    python -m bench.spark_readback [--sizes 1000000] [--cores 2] [--repeat 2] [--json out.json]

What the difference check, a count's subject references and ``disclose`` read through a Spark source comes
back to the adapter row by row. N rows of (USCC, amount, date) are written once as one Parquet file and
read back on ``local[--cores]`` twice each way, the best kept: through ``SparkSource.rows`` (Arrow IPC
batches, partitions of at most 2^17 rows), and as the source did before, ``DataFrame.toLocalIterator`` over
the same partitions (a pickled Row a row). Reported: wall seconds and the adapter process's own CPU seconds
(the JVM's and the Python workers' are not in it). Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fedgate.adapters.sources.spark import LOCAL_PARTITION_ROWS, SESSIONS, SparkSource, SparkSpec
from fedgate.crypto.ids import make_uscc

COLUMNS = ["uscc", "amount_fen", "paid_on"]


def _pickled_rows(path: Path) -> Iterator[tuple[Any, ...]]:
    """The rows as the source read them before Arrow: the same partitions, a Row each through toLocalIterator."""
    df = SESSIONS.get().read.parquet(str(path)).select(*COLUMNS)
    wanted = -(-df.count() // LOCAL_PARTITION_ROWS)
    if df.rdd.getNumPartitions() < wanted:
        df = df.repartition(wanted)
    for row in df.toLocalIterator(prefetchPartitions=False):
        yield tuple(row)


def _timed(read: Callable[[], Iterator[tuple[Any, ...]]], n: int, repeat: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), os.times()
        rows = sum(1 for _ in read())
        after = os.times()
        assert rows == n, f"read {rows} rows of {n}"
        run = {"wall_s": round(time.perf_counter() - wall, 2),
               "adapter_cpu_s": round(after.user - cpu.user + after.system - cpu.system, 2)}
        if not best or run["wall_s"] < best["wall_s"]:
            best = run
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.spark_readback", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    master = f"local[{args.cores}]"
    results: dict[str, Any] = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "master": master,
                               "sizes": {}}
    holder = SparkSource(SparkSpec("spark", table="unread", master=master))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in (int(s.replace("_", "")) for s in args.sizes.split(",") if s):
                path = Path(tmp) / f"rows-{n}.parquet"
                rows = [(make_uscc(f"91330100MA{i:07d}"), 100 * i, None if i % 7 else dt.date(2026, 1, 1 + i % 28))
                        for i in range(n)]
                SESSIONS.get().createDataFrame(rows, "uscc string, amount_fen bigint, paid_on date") \
                    .coalesce(1).write.parquet(str(path))
                del rows
                source = SparkSource(SparkSpec("spark", path=path, format="parquet", master=master))
                try:
                    arrow = _timed(functools.partial(source.rows, COLUMNS), n, args.repeat)
                finally:
                    source.close()
                pickled = _timed(functools.partial(_pickled_rows, path), n, args.repeat)
                results["sizes"][n] = {"arrow": arrow, "pickled_rows": pickled}
                print(f"{n:,} rows: Arrow {arrow['wall_s']} s wall, {arrow['adapter_cpu_s']} s adapter CPU; "
                      f"pickled Rows {pickled['wall_s']} s wall, {pickled['adapter_cpu_s']} s adapter CPU")
    finally:
        holder.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
