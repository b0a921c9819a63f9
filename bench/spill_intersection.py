"""Anonymous memory of a spilled intersection alone, at growing sizes: it should not grow with the rows.

Usage::

    python -m bench.spill_intersection --sizes 1000000,4000000 [--buckets 64] [--bucket-rows 1048576]

Each size runs in a fresh process: random 16-byte tokens, half of each side common, fed in chunks of
65,536 to a ``SpillingIntersector`` that spills from the first token, then ``finish``. Reported from
``/proc/self/status``: RssAnon before, its peak (sampled every 2 ms) during ``finish`` and after it while
the result is held, and RssFile after (the file-backed positions).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from fedgate.gateway.spill import DEFAULT_BUCKET_ROWS, DEFAULT_BUCKETS, QuerySpill

CHUNK = 65_536


def _mib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(key)


def measure(rows: int, buckets: int, bucket_rows: int) -> str:
    """One size in this process: the figures as a line."""
    chunks = -(-rows // CHUNK)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _mib("RssAnon"))
            time.sleep(0.002)

    with tempfile.TemporaryDirectory() as tmp:
        spill = QuerySpill(Path(tmp) / "q", 0, buckets, bucket_rows)
        box = spill.intersector(rows, 16)
        for k in range(chunks):
            count = min(CHUNK, rows - k * CHUNK)
            box.add("left", np.random.default_rng(k).bytes(16 * count))
            # The right side's first half is the left side's second half.
            box.add("right", np.random.default_rng(k + chunks // 2).bytes(16 * count))
        base = _mib("RssAnon")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        result = box.finish()
        seconds = time.monotonic() - started
        time.sleep(0.02)
        stop.set()
        sampler.join()
        line = (f"{rows:>11,} rows a side, {buckets} buckets, bucket_rows {bucket_rows:,}: matched {result.cardinality:,};"
                f" RssAnon {base} MiB before finish, peak +{peak[0] - base}, after +{_mib('RssAnon') - base} holding"
                f" the result; RssFile after {_mib('RssFile')} MiB; finish {seconds:.1f} s")
        del result
        spill.remove()
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,4000000")
    parser.add_argument("--buckets", type=int, default=DEFAULT_BUCKETS)
    parser.add_argument("--bucket-rows", type=int, default=DEFAULT_BUCKET_ROWS)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(measure(args.one, args.buckets, args.bucket_rows))
        return
    for rows in (int(s) for s in args.sizes.split(",")):
        # A fresh process a size: RssAnon of one run does not carry over into the next.
        subprocess.run([sys.executable, "-m", "bench.spill_intersection", "--one", str(rows), "--buckets",
                        str(args.buckets), "--bucket-rows", str(args.bucket_rows)], check=True)


if __name__ == "__main__":
    main()
