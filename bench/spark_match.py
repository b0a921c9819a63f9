"""`make bench` in Spark mode: a match end to end with both departments' rows read through Spark, against the
same match with the same rows in CSV files read by the adapters themselves.

Usage::

    python -m bench --spark [--sizes 1000000,10000000] [--modes keyed,ecdh] [--out bench/results/spark]
    (or: make bench EXTRAS=dev,spark BENCH_ARGS="--spark --sizes 1000000,10000000")

For each size N (rows per side) and mode, the synthetic people of ``bench.match`` (half of each side on both,
a few invalid identifiers) are written once as CSV and once as Parquet (one file per side, as an export from a
warehouse would be; Spark spreads it over the cores). Then, each in a fresh deployment of a real gateway and
two adapters on loopback with mTLS:

* **in-process**: ``kind = "csv"``; the adapter reads the file and its worker pool does the per-row work;
* **spark**: ``kind = "spark"``, ``local[cores]``: Spark reads the Parquet and its executors do the per-row
  work (tokens, ECDH's re-blinding), results streamed back into the adapter's gRPC stream.

Reported per run: end-to-end time, rows/s (2N rows) and rows/s per core (every process shares this machine's
cores), the Spark run's rate against the in-process run's (same rows, same cores, so the per-core ratio is
the same ratio), and the peak memory of the gateway and of each adapter with everything it started (Spark's
JVM and Python workers included). The gateway's peak is the figure to watch across N: it spills tokens by
hash bucket past ``spill_above_rows``, so it should not grow with N beyond its buckets.
Written to ``--out``: ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import match as matching
from bench.match import SUPERVISOR, console
from fedgate.core.identity import Identity
from fedgate.demo.synthetic_ids import LEFT, RIGHT, DataSet, parquet_path
from fedgate.server import pki
from fedgate.server.worker_pool import default_workers

SOURCES = ("csv", "spark")


@dataclass
class Run:
    """One deployment's timed match."""

    source: str
    mode: str
    size: int
    ok: bool
    wall_s: float | None
    rows_per_s: float | None
    per_core: float | None
    gateway_peak_mib: float | None
    gateway_anon_peak_mib: float | None
    left_peak_mib: float | None
    right_peak_mib: float | None
    startup_s: float | None
    error: str = ""
    # Seconds from the query's start to the first and last progress report of each phase and department.
    phases: dict[str, float] = field(default_factory=dict)


def write_parquet(ds: DataSet) -> None:
    """Each side's CSV as one Parquet file beside it (kept while the CSV is unchanged)."""
    import pyarrow as pa
    from pyarrow import csv, parquet

    schema = pa.schema([("resident_id", pa.string()), ("value", pa.int64())])
    for path in (ds.left_csv, ds.right_csv):
        target = parquet_path(path)
        if target.exists() and target.stat().st_mtime >= path.stat().st_mtime:
            continue
        table = csv.read_csv(path, convert_options=csv.ConvertOptions(column_types=schema))
        tmp = target.with_suffix(".tmp")
        parquet.write_table(table, tmp)
        tmp.replace(target)


def run_one(source: str, mode: str, workdir: Path, certs: Path, ds: DataSet, warm: DataSet, workers: int,
            timeout: float) -> Run:
    r = matching.run_servers(workdir, certs, ds, warm, mode, workers, timeout, None, source=source)
    error = r.error or ("" if r.ok else f"wrong answer: {r.cardinality} matched, {r.expected} expected")
    if r.error:
        return Run(source, mode, ds.size, False, None, None, None, None, None, None, None, None, error)
    assert r.gateway and r.adapter_left and r.adapter_right
    return Run(source, mode, ds.size, r.ok, r.wall_s, r.rows_per_s, round(r.rows_per_s / matching.CORES),
               r.gateway.peak_mib, r.gateway_anon_peak_mib, r.adapter_left.peak_mib, r.adapter_right.peak_mib,
               r.startup_s, error, r.phases)


def ratios(runs: list[Run]) -> list[dict[str, Any]]:
    """Spark's rate against the in-process rate for each (mode, size) that has both."""
    out = []
    for spark in (r for r in runs if r.source == "spark" and r.rows_per_s):
        csv = next((r for r in runs if r.source == "csv" and r.mode == spark.mode and r.size == spark.size
                    and r.rows_per_s), None)
        if csv is not None and csv.rows_per_s and spark.rows_per_s:
            out.append({"mode": spark.mode, "size": spark.size,
                        "spark_vs_in_process": round(spark.rows_per_s / csv.rows_per_s, 2)})
    return out


def markdown(runs: list[Run], info: dict[str, Any]) -> str:
    m = info["machine"]
    lines = [f"Measured {info['when']} on {m['cpu_model']}, {m['cores']} cores, {m['mem_gib']} GiB; Python "
             f"{m['python']}; adapters with `workers = {info['workers']}`, Spark `local[{m['cores']}]`.", "",
             f"Command: `{info['command']}`", "",
             "| mode | rows/side | source | end to end | rows/s | rows/s per core | Spark / in-process | "
             "peak MiB gateway / left / right | gateway RssAnon peak MiB | answer |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    by_key = {(x["mode"], x["size"]): x["spark_vs_in_process"] for x in ratios(runs)}
    for r in runs:
        if r.wall_s is None:
            lines.append(f"| {r.mode} | {r.size:,} | {r.source} | failed: {r.error} | | | | | | |")
            continue
        ratio = f"{by_key[(r.mode, r.size)]:.2f}×" if r.source == "spark" and (r.mode, r.size) in by_key else ""
        lines.append(f"| {r.mode} | {r.size:,} | {r.source} | {r.wall_s:.1f} s | {r.rows_per_s:,.0f} | "
                     f"{r.per_core:,.0f} | {ratio} | {r.gateway_peak_mib:,.0f} / {r.left_peak_mib:,.0f} / "
                     f"{r.right_peak_mib:,.0f} | {_mib(r.gateway_anon_peak_mib)} | {'✓' if r.ok else '✗ ' + r.error} |")
    return "\n".join(lines) + "\n"


def _mib(value: float | None) -> str:
    return "—" if not value else f"{value:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench --spark", description=__doc__.splitlines()[0])
    ap.add_argument("--spark", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="1000000", help="rows per side, comma-separated")
    ap.add_argument("--modes", default="keyed,ecdh")
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--timeout", type=float, default=7200, help="seconds allowed for one timed match")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fedgate-bench")
    ap.add_argument("--out", type=Path, default=Path("bench/results/spark"))
    args = ap.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    sources = [s for s in args.sources.split(",") if s]
    if any(m not in ("keyed", "ecdh") for m in modes) or any(s not in SOURCES for s in sources):
        ap.error("modes are keyed and ecdh; sources are csv and spark")
    if "spark" in sources and shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        ap.error("Spark mode needs Java 17 (java on the PATH or JAVA_HOME) and the spark extra "
                 "(make bench EXTRAS=dev,spark)")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    certs = workdir / "certs"
    if not (certs / "ca.pem").exists():
        pki.init_dir(certs, [Identity.department(LEFT), Identity.department(RIGHT), SUPERVISOR])
    warm = matching.make_dataset(workdir, matching.WARMUP_ROWS, args.overlap)
    write_parquet(warm)
    info: dict[str, Any] = {
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": matching.machine(),
        "workers": args.workers, "code": matching.code_fingerprint()}
    runs: list[Run] = []
    for size in sizes:
        ds = matching.make_dataset(workdir, size, args.overlap)
        write_parquet(ds)
        for mode in modes:
            for source in sources:
                console.log(f"{mode} {size:,} rows per side, {source} sources")
                run = run_one(source, mode, workdir, certs, ds, warm, args.workers, args.timeout)
                runs.append(run)
                console.log(json.dumps(asdict(run)))
                _write(args.out, info, runs)  # after every run: a long run interrupted keeps what it measured
    console.print(markdown(runs, info))
    return 0 if all(r.ok for r in runs) else 1


def _write(out: Path, info: dict[str, Any], runs: list[Run]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({**info, "runs": [asdict(r) for r in runs],
                                                  "ratios": ratios(runs)}, indent=2))
    (out / "results.md").write_text(markdown(runs, info))


if __name__ == "__main__":
    raise SystemExit(main())
