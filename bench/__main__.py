"""fedgate side by side with its peers and its limits, in one run: ``python -m bench`` (or ``make bench``).

Usage::

    python -m bench --spark [...]   # Spark mode: the departments' rows read through Spark (bench/spark_match.py)
    python -m bench [--sizes 10000,100000] [--size 1000000] [--modes keyed,ecdh,sum,compare]
                    [--openmined-path DIR] [--out bench/results/latest] [--workdir DIR]

For each size (rows per side) and mode, on this machine and in this run:

* **end to end** through a real gateway and two department adapters, each a
  separate process on loopback with mTLS (``bench.match`` for ``keyed`` and
  ``ecdh`` private matching, ``bench.homomorphic`` for ``sum`` and
  ``compare``); every answer is checked against the plaintext computation;
* **the arithmetic floor** for the same rows: the same cryptography in a tight
  loop on a pool of all cores, no transport, no gRPC, no storage;
* **peers**: the ``openmined-psi`` package's own protocol (cardinality PSI,
  in one process) on the same identifiers when it is importable, and, for the
  Paillier modes, ``phe``'s plain ``encrypt`` scaled to the values encrypted;
* the **per-query overhead** every query pays: one policy decision and one
  durable audit append (``bench.decide_and_append``);
* the **privacy checks** (``bench.privacy``): a noise draw, a budget charge,
  the set-size safeguards and, per size, the department's difference check
  against ``--privacy-kept`` sets already kept (``--privacy-sizes``, by
  default the sizes above).

Written to ``--out``: ``results.json`` (everything), ``results.md`` (the
table, the machine and the command) and ``time_vs_rows.png`` (log-log time
against rows per mode, with the peers), when matplotlib is installed
(``pip install '.[bench]'``).

openmined-psi pins protobuf 6 and fedgate needs protobuf 7, so it cannot live
in the same environment: ``make bench`` installs it with ``--no-deps`` into
``.bench-peers/``, which this command finds by default (``--openmined-path``).

Defaults (10k and 100k rows, every mode, peers up to 100k) take about six
minutes on 2 cores. ``--size 1000000`` adds a million rows per side; the
comparison is skipped above ``--compare-max`` (default 100,000) and
openmined-psi above ``--openmined-max`` (default 100,000), because each would
take longer than the rest of the run together (both measured and documented in
docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import datetime as dt
import json
import multiprocessing
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from bench import decide_and_append, homomorphic, privacy
from bench import match as matching
from bench.match import LEFT, RIGHT, SUPERVISOR, console
from fedgate.server import pki
from fedgate.core.identity import Identity
from fedgate.server.worker_pool import default_workers

MODES = ("keyed", "ecdh", "sum", "compare")
# Cores each peer's figure used: openmined-psi runs its C++ on one core; the phe figure is already spread
# over all of fedgate's cores. A ratio "per core" divides by fedgate's cores over the peer's, so no ratio
# flatters fedgate by counting cores.
PEER_CORES = {"openmined-psi": 1, "phe encrypt (scaled)": None}
REPO = Path(__file__).resolve().parent.parent
DEFAULT_PEERS = REPO / ".bench-peers"


@dataclass
class Row:
    """One (mode, size): what the table, the Markdown and the plot show."""

    mode: str
    size: int
    ok: bool = False
    wall_s: float | None = None
    rows_per_s: float | None = None
    floor_s: float | None = None
    floor_ratio: float | None = None
    # Peer name -> seconds for the same rows (openmined-psi: its whole protocol; phe: encryption only).
    peers: dict[str, float] = field(default_factory=dict)
    peak_mib: dict[str, float] = field(default_factory=dict)
    wire_bytes_per_row: float | None = None
    answer: str = ""
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    # The cores fedgate's processes shared (gateway and both adapters, on one machine).
    cores: int = 1


def _peaks(gateway: Any, left: Any, right: Any) -> dict[str, float]:
    return {name: p.peak_mib for name, p in (("gateway", gateway), (LEFT, left), (RIGHT, right)) if p is not None}


def run_match(mode: str, workdir: Path, certs: Path, ds: matching.DataSet, warm: matching.DataSet, workers: int,
              timeout: float, pool: cf.ProcessPoolExecutor, ids: tuple[list[bytes], list[bytes]],
              profile: Path | None = None) -> Row:
    r = matching.run_servers(workdir, certs, ds, warm, mode, workers, timeout, profile)
    row = Row(mode, ds.size, ok=r.ok and not r.error, note=r.error, detail=asdict(r))
    if r.error:
        return row
    r.floor_s = round(matching.arithmetic_floor(pool, mode, *ids), 3)
    row.wall_s, row.rows_per_s, row.floor_s = r.wall_s, r.rows_per_s, r.floor_s
    row.floor_ratio = round(r.wall_s / r.floor_s, 2)
    row.peak_mib = _peaks(r.gateway, r.adapter_left, r.adapter_right)
    row.wire_bytes_per_row = round(r.wire_bytes / (2 * ds.size), 1)
    row.answer = f"{r.cardinality:,} matched"
    row.detail = asdict(r)
    return row


def run_homomorphic(mode: str, workdir: Path, certs: Path, ds: matching.DataSet, warm: matching.DataSet,
                    workers: int, timeout: float, profile: Path | None = None) -> Row:
    r = homomorphic.run_kind(mode, workdir, certs, ds, warm, "keyed", workers, timeout, 200, profile)
    row = Row(mode, ds.size, ok=r.ok and not r.error, note=r.error, detail=asdict(r))
    if r.error:
        return row
    row.wall_s, row.rows_per_s, row.floor_s, row.floor_ratio = r.wall_s, r.rows_per_s, r.floor_s, r.floor_ratio
    row.peers["phe encrypt (scaled)"] = r.floors["phe_encrypt_s_scaled"]
    row.peak_mib = _peaks(r.gateway, r.adapter_left, r.adapter_right)
    row.wire_bytes_per_row = round(r.wire_bytes / (2 * ds.size), 1)
    row.answer = (f"total {r.got:,} over {r.got_rows:,} rows" if mode == "sum"
                  else f"{r.got:,} of {r.got_rows:,} pairs flagged")
    return row


def table(rows: list[Row]) -> Table:
    t = Table("mode", "rows/side", "end to end", "rows/s", "rows/s\nper core", "floor", "e2e/floor", "openmined-psi, 1 core\n(e2e faster by)",
              "phe encrypt\n(e2e faster by)", "peak RSS MiB\ngw / L / R", "wire\nB/row", "answer",
              title="fedgate end to end (gateway + 2 adapters, mTLS on loopback) against its floor and its peers")
    for r in rows:
        if r.wall_s is None:
            t.add_row(r.mode, f"{r.size:,}", f"[red]{r.note or 'skipped'}[/]", *[""] * 9)
            continue
        t.add_row(r.mode, f"{r.size:,}", f"{r.wall_s:.2f} s", f"{r.rows_per_s:,.0f}", _per_core_rate(r),
                  _s(r.floor_s), _x(r.floor_ratio), _peer(r, "openmined-psi"), _peer(r, "phe encrypt (scaled)"),
                  " / ".join(f"{v:,.0f}" for v in r.peak_mib.values()), _n(r.wire_bytes_per_row),
                  ("✓ " if r.ok else "[red]✗[/] ") + r.answer)
    return t


def _per_core_rate(r: Row) -> str:
    return "—" if r.rows_per_s is None else f"{r.rows_per_s / max(r.cores, 1):,.0f}"


def _s(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} s"


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _n(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def per_core(ratio: float, cores: int, peer_cores: int | None) -> float:
    """A speed-up in core-seconds: fedgate's wall time times its cores against the peer's (None: same cores)."""
    return ratio if peer_cores is None else ratio * peer_cores / max(cores, 1)


def _peer(r: Row, name: str) -> str:
    if name not in r.peers or not r.wall_s:
        return "—"
    ratio = r.peers[name] / r.wall_s
    peer_cores = PEER_CORES.get(name)
    if peer_cores is None or peer_cores == r.cores:
        return f"{r.peers[name]:.1f} s ({ratio:.1f}×)"
    return f"{r.peers[name]:.1f} s ({ratio:.1f}×; {per_core(ratio, r.cores, peer_cores):.1f}× per core)"


def markdown(rows: list[Row], info: dict[str, Any]) -> str:
    m = info["machine"]
    lines = [
        f"Measured {info['when']} on {m['cpu_model']}, {m['cores']} cores, {m['mem_gib']} GiB; Python "
        f"{m['python']}; adapters and gateway with `workers = {info['workers']}`.",
        "",
        f"Command: `{info['command']}`",
        "",
        "| mode | rows/side | end to end | rows/s | rows/s per core | floor | e2e / floor | openmined-psi, 1 core (e2e faster by; per core) "
        "| phe encrypt, scaled (e2e faster by) | peak RSS MiB gateway / left / right | wire bytes/row | answer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.wall_s is None:
            lines.append(f"| {r.mode} | {r.size:,} | {r.note or 'skipped'} | | | | | | | | | |")
            continue
        lines.append(
            f"| {r.mode} | {r.size:,} | {r.wall_s:.2f} s | {r.rows_per_s:,.0f} | {_per_core_rate(r)} | "
            f"{_s(r.floor_s)} | "
            f"{_x(r.floor_ratio)} | {_peer(r, 'openmined-psi')} | {_peer(r, 'phe encrypt (scaled)')} | "
            f"{' / '.join(f'{v:,.0f}' for v in r.peak_mib.values())} | {_n(r.wire_bytes_per_row)} | "
            f"{'✓' if r.ok else '✗'} {r.answer} |")
    da = info.get("decide_and_append")
    if da:
        both = da["decide_and_append"]
        lines += ["", f"Per-query overhead (policy decision + durable audit append, {da['store']}, "
                      f"{da['queries']:,} queries): median {both['median_ms']:.2f} ms, p99 {both['p99_ms']:.2f} ms "
                      f"(decision {da['decide']['median_ms']:.2f} ms, append {da['append']['median_ms']:.2f} ms)."]
    if info.get("privacy_md"):
        lines += ["", "Privacy checks, per query (`bench.privacy`):", "", info["privacy_md"].rstrip()]
    if info.get("openmined"):
        lines += ["", f"openmined-psi: {info['openmined']}"]
    return "\n".join(lines) + "\n"


def plot(rows: list[Row], path: Path) -> str:
    """Log-log time against rows per side, one line per mode and peer; '' or why no plot was drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]')"
    fig, ax = plt.subplots(figsize=(8.5, 6))
    colours = {mode: f"C{i}" for i, mode in enumerate(MODES)}
    # label -> (colour, line style, points): each mode in its colour, its floor dotted and its phe
    # baseline dash-dotted in the same colour; openmined-psi dashed in black.
    series: dict[str, tuple[str, str, list[tuple[int, float]]]] = {}

    def add(label: str, colour: str, style: str, size: int, seconds: float) -> None:
        series.setdefault(label, (colour, style, []))[2].append((size, seconds))

    for r in rows:
        if r.wall_s is None:
            continue
        colour = colours[r.mode]
        add(f"{r.mode} (end to end)", colour, "-", r.size, r.wall_s)
        if r.floor_s:
            add(f"{r.mode} floor", colour, ":", r.size, r.floor_s)
        for peer, seconds in r.peers.items():
            if peer == "openmined-psi":
                add("openmined-psi (peer)", "black", "--", r.size, seconds)
            else:
                add(f"{r.mode}: {peer}", colour, "-.", r.size, seconds)
    for label, (colour, style, points) in series.items():
        points = sorted(set(points))
        ax.plot([p[0] for p in points], [p[1] for p in points], style, color=colour, marker="o", markersize=4,
                label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows per side")
    ax.set_ylabel("seconds (wall)")
    ax.set_title("fedgate: time against rows per side (gateway + 2 adapters, mTLS on loopback)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return ""


def main(argv: list[str] | None = None) -> int:
    if "--spark" in (sys.argv[1:] if argv is None else argv):  # Spark mode: bench/spark_match.py
        from bench import spark_match

        return spark_match.main(argv)
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="rows per side, comma-separated")
    ap.add_argument("--size", type=int, action="append", default=[], help="one more size (repeatable), e.g. 1000000")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--compare-max", type=int, default=100_000)
    ap.add_argument("--openmined-max", type=int, default=100_000)
    ap.add_argument("--openmined-path", default=os.environ.get("OPENMINED_PSI_PATH", str(DEFAULT_PEERS)))
    ap.add_argument("--queries", type=int, default=1000, help="queries for the decide-and-append measurement")
    ap.add_argument("--privacy-sizes", help="set sizes for the difference check (default: the sizes above)")
    ap.add_argument("--privacy-kept", default=privacy.DEFAULT_KEPT, help="sets already kept, comma-separated")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fedgate-bench")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest")
    ap.add_argument("--profile", type=Path, help="record py-spy stacks of every server during the runs of the "
                    "largest size into this directory (needs py-spy; profiled runs are slower)")
    args = ap.parse_args(argv)
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s} | set(args.size))
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in MODES for m in modes):
        ap.error(f"modes are {', '.join(MODES)}")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "machine": matching.machine(), "code": matching.code_fingerprint(), "workers": args.workers,
        "overlap": args.overlap, "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]).strip()}
    console.log(f"machine: {info['machine']['cpu_model']}, {info['machine']['cores']} cores; sizes {sizes}; "
                f"modes {modes}; results in {args.out}")
    certs = workdir / "certs"
    if not (certs / "ca.pem").exists():
        pki.init_dir(certs, [Identity.department(LEFT), Identity.department(RIGHT), SUPERVISOR])
    warm = matching.make_dataset(workdir, matching.WARMUP_ROWS, args.overlap)
    om_reason = matching.openmined_available(args.openmined_path)
    info["openmined"] = f"not importable ({om_reason}); install with `make bench`" if om_reason else "importable"
    rows: list[Row] = []
    pool = cf.ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
    list(pool.map(matching._noop, range(args.workers * 4)))  # spawn the floor workers before any timing
    try:
        for size in sizes:
            ds = matching.make_dataset(workdir, size, args.overlap)
            ids = (matching.valid_ids(matching.read_ids(ds.left_csv)), matching.valid_ids(matching.read_ids(ds.right_csv)))
            openmined: dict[str, Any] | None = None
            if not om_reason and size <= args.openmined_max and {"keyed", "ecdh"} & set(modes):
                console.log(f"openmined-psi {size:,} x {size:,} …")
                openmined = matching.run_openmined(args.openmined_path, *ids, args.timeout)
                if openmined["cardinality"] != ds.expected:
                    openmined["error"] = f"cardinality {openmined['cardinality']} != {ds.expected}"
            profile = args.profile if size == sizes[-1] else None
            for mode in modes:
                console.rule(f"{mode} {size:,} × {size:,}")
                if mode == "compare" and size > args.compare_max:
                    rows.append(Row(mode, size, note=f"skipped: above --compare-max {args.compare_max:,}"))
                    continue
                if mode in ("keyed", "ecdh"):
                    row = run_match(mode, workdir, certs, ds, warm, args.workers, args.timeout, pool, ids, profile)
                    if openmined and "error" not in openmined:
                        row.peers["openmined-psi"] = openmined["total_s"]
                        row.detail["openmined"] = openmined
                else:
                    row = run_homomorphic(mode, workdir, certs, ds, warm, args.workers, args.timeout, profile)
                row.cores = info["machine"]["cores"]
                rows.append(row)
                _write(args.out, info, rows)
    finally:
        pool.shutdown(cancel_futures=True)
    with tempfile.TemporaryDirectory() as tmp:
        info["decide_and_append"] = asyncio.run(
            decide_and_append.measure(f"sqlite+pysqlite:///{tmp}/audit.db", args.queries))
    checks = privacy.overhead(privacy.ints(args.privacy_sizes) if args.privacy_sizes else sizes,
                              privacy.ints(args.privacy_kept), args.queries, privacy.DEFAULT_MAX_KEPT_REFS)
    info["privacy"], info["privacy_md"] = asdict(checks), privacy.overhead_markdown(checks)
    console.print(table(rows))
    console.print(privacy.overhead_table(checks))
    both = info["decide_and_append"]["decide_and_append"]
    console.print(f"per-query overhead (policy decision + durable audit append, SQLite): median "
                  f"{both['median_ms']:.2f} ms, p99 {both['p99_ms']:.2f} ms")
    _write(args.out, info, rows)
    why_not = plot(rows, args.out / "time_vs_rows.png")
    console.print(f"plot: {why_not}" if why_not else f"plot: {args.out / 'time_vs_rows.png'}")
    console.print(f"results: {args.out / 'results.json'}, {args.out / 'results.md'}")
    return 0 if all(r.ok for r in rows if r.wall_s is not None) and not any(
        r.note and not r.note.startswith("skipped") for r in rows) else 1


def _write(out: Path, info: dict[str, Any], rows: list[Row]) -> None:
    (out / "results.json").write_text(json.dumps({**info, "rows": [asdict(r) for r in rows]}, indent=2,
                                                 ensure_ascii=False, default=str))
    (out / "results.md").write_text(markdown(rows, info))


if __name__ == "__main__":
    sys.exit(main())
