"""The gateway's peak memory for a keyed match and an intersection-sum: everything in memory, and spilled.

Usage::

    python -m bench.gateway_memory --sizes 100000,1000000 [--kinds match,sum] [--json out.json]

For each size and kind, two fresh deployments as ``bench.match`` and
``bench.homomorphic`` run them (same data, a checked answer): one whose
``spill_above_rows`` lies above both sides' rows (the in-memory path), one with
the gateway's defaults (it spills past ``spill_above_rows`` = 250,000 and
intersects in ``spill_buckets`` = 64 buckets). Reported: the gateway
process's VmHWM (its worker processes, which hold only the batch they work on,
apart), the end-to-end time and the answer's check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

from bench import homomorphic
from bench.match import LEFT, RIGHT, SUPERVISOR, console, machine, make_dataset, run_servers
from fedgate.core.identity import Identity
from fedgate.demo.deployment import TomlValue
from fedgate.gateway.spill import DEFAULT_ABOVE_ROWS, DEFAULT_BUCKETS
from fedgate.server import pki
from fedgate.server.worker_pool import default_workers

KINDS = ("match", "sum")


@dataclass
class MemoryRun:
    kind: str
    size: int
    store: str                   # "memory" or "spilled"
    gateway_peak_mib: float = 0.0
    gateway_tree_peak_mib: float = 0.0
    wall_s: float = 0.0
    ok: bool = False
    error: str = ""


def run(kind: str, store: str, workdir: Path, certs: Path, size: int, workers: int, timeout: float,
        overlap: float, above_rows: int = DEFAULT_ABOVE_ROWS) -> MemoryRun:
    ds, warm = make_dataset(workdir, size, overlap), make_dataset(workdir, 2000, overlap)
    options: dict[str, TomlValue] = ({"spill_above_rows": 4 * size + 1} if store == "memory" else
                                     {"spill_above_rows": above_rows, "spill_buckets": DEFAULT_BUCKETS})
    console.log(f"{kind} {size:,} x {size:,} keyed, {store} ...")
    if kind == "match":
        r = run_servers(workdir, certs, ds, warm, "keyed", workers, timeout, None, options)
        gateway, wall, ok, error = r.gateway, r.wall_s, r.ok, r.error
    else:
        h = homomorphic.run_one("sum", workdir, certs, ds, warm, "keyed", workers, timeout, gateway_options=options)
        gateway, wall, ok, error = h.gateway, h.wall_s, h.ok, h.error
    out = MemoryRun(kind, size, store, wall_s=wall, ok=ok, error=error)
    if gateway is not None:
        out.gateway_peak_mib, out.gateway_tree_peak_mib = gateway.main_peak_mib, gateway.peak_mib
    console.log(json.dumps(asdict(out)))
    return out


def table(results: list[MemoryRun]) -> Table:
    t = Table(title="Gateway peak memory (VmHWM), keyed, in memory vs spilled")
    for name in ("kind", "rows/side", "store", "gateway MiB", "with workers MiB", "end to end", "answer"):
        t.add_column(name)
    for r in results:
        t.add_row(r.kind, f"{r.size:,}", r.store, f"{r.gateway_peak_mib:,.0f}", f"{r.gateway_tree_peak_mib:,.0f}",
                  f"{r.wall_s:.1f} s", "✓" if r.ok and not r.error else f"✗ {r.error}")
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--stores", default="memory,spilled")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fedgate-bench")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--spill-above-rows", type=int, default=DEFAULT_ABOVE_ROWS, help="the spilled runs' threshold")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    certs = args.workdir / "certs"
    if not (certs / "ca.pem").exists():
        pki.init_dir(certs, [Identity.department(LEFT), Identity.department(RIGHT), SUPERVISOR])
    results = [run(kind, store, args.workdir, certs, int(size), args.workers, args.timeout, args.overlap,
                   args.spill_above_rows)
               for size in args.sizes.split(",") for kind in args.kinds.split(",") for store in args.stores.split(",")]
    console.print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "workers": args.workers,
                                         "results": [asdict(r) for r in results]}, indent=2, ensure_ascii=False))
    return 0 if all(r.ok and not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
