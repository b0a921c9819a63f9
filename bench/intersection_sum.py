"""End-to-end intersection-sum benchmark: real gateway and adapters on loopback, over mTLS.

Usage::

    python -m bench.intersection_sum --sizes 10000,100000 [--modes keyed,ecdh] \\
        [--overlap 0.5] [--workdir DIR] [--json out.json] [--phe-sample 200]

For every (size, mode) a fresh gateway and two department adapters (``hrss``
holds the values, ``civil`` the other set) run as separate processes with
``workers`` = all cores, on the data of ``bench.match`` (N rows per side, one
identifier in 50 invalid, ``value`` uniform in [1, 10^6)). A small warm-up sum
spawns the worker pools and builds each process's encryption table first. The
timed query is one ``GatewayClient.intersection_sum`` of ``value`` under a
fresh 2048-bit supervisor key; its total is checked against the plaintext sum
computed here from the CSV files (a wrong total fails the run, exit code 1).

Per phase, from the client's progress events (seconds from the call):

* ``stream``: until both sides' tokens (and the value holder's ciphertexts)
  have reached the gateway: normalising, blinding and encrypting, overlapped
  in the adapters' worker pools;
* ``match``: the gateway's intersection;
* ``aggregate``: multiplying the matched ciphertexts and the final
  re-randomisation, in the gateway's worker pool;
* ``decrypt``: the supervisor's client decrypting the total.

In the same run, after the servers stop, with no transport: encrypting N
values with ``FastEncryptor`` on all cores and on one core, blinding both
sides' rows as the adapters do (``tokens_for``, and for ECDH ``reblind`` of
every point, on all cores), and ``phe``'s own ``encrypt`` on a sample
of values (``--phe-sample``), extrapolated to N — the baseline the fast path
is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import json
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import phe  # type: ignore[import-untyped]
from rich.table import Table

from bench.match import (
    DATASET,
    LEFT,
    RIGHT,
    SUPERVISOR,
    WARMUP,
    DataSet,
    adapter_toml,
    console,
    gateway_toml,
    machine,
    make_dataset,
    valid_ids,
)
from fedgate import pki
from fedgate.adapters.pool_tasks import reblind, tokens_for
from fedgate.client import GatewayClient, SumResult
from fedgate.crypto import psi
from fedgate.crypto.paillier import FastEncryptor
from fedgate.demo import processes
from fedgate.identity import Identity
from fedgate.supervisor_keys import SupervisorKey
from fedgate.tls import TlsFiles
from fedgate.worker_pool import default_workers

PURPOSE = "性能基准：隐私求和 (benchmark)"
CASE = "BENCH-SUM"
CHUNK = 2048


@dataclass
class SumRun:
    size: int
    mode: str
    expected_total: int = 0
    expected_rows: int = 0
    total: int = 0
    rows: int = 0
    ok: bool = False
    wall_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    floors: dict[str, float] = field(default_factory=dict)
    error: str = ""


def _values(path: Path) -> list[tuple[str, int]]:
    with path.open(encoding="utf-8") as fh:
        next(fh)
        return [(ident, int(value)) for ident, value in (line.rstrip("\n").split(",", 1) for line in fh)]


def plaintext_sum(ds: DataSet) -> tuple[int, int]:
    """The reference: total and count of left values whose (valid) identifier is valid on the right."""
    left = _values(ds.left_csv)
    right = set(valid_ids([ident for ident, _ in _values(ds.right_csv)]))
    total = rows = 0
    for ident, value in left:
        normalised = valid_ids([ident])
        if normalised and normalised[0] in right:
            total += value
            rows += 1
    return total, rows


def run_one(workdir: Path, certs: Path, ds: DataSet, warm: DataSet, mode: str, workers: int,
            timeout: float) -> SumRun:
    res = SumRun(ds.size, mode)
    res.expected_total, res.expected_rows = plaintext_sum(ds)
    run_dir = workdir / "runs" / f"sum-n{ds.size}-{mode}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    (run_dir / "gateway.toml").write_text(gateway_toml(certs, None))
    started: list[processes.ServerProcess] = []
    try:
        gw = processes.start("gateway", ["gateway", "serve", "--config", str(run_dir / "gateway.toml")], run_dir)
        started.append(gw)
        processes.wait_ready(gw)
        address = f"127.0.0.1:{gw.port}"
        for dept, csv, wcsv in ((LEFT, ds.left_csv, warm.left_csv), (RIGHT, ds.right_csv, warm.right_csv)):
            cfg = run_dir / f"adapter-{dept}.toml"
            cfg.write_text(adapter_toml(dept, address, certs, workers, [(DATASET, csv), (WARMUP, wcsv)]))
            started.append(processes.start(f"adapter-{dept}", ["adapter", "serve", "--config", str(cfg)], run_dir))
        for proc in started[1:]:
            processes.wait_ready(proc, timeout=300)
        asyncio.run(_timed_sum(address, certs, mode, res, timeout))
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        for proc in started:
            console.log(f"[red]{proc.name} log tail:[/]\n{proc.log_tail(20)}")
    finally:
        codes = {p.name: processes.stop(p) for p in reversed(started)}
        bad = {k: v for k, v in codes.items() if v != 0}
        if bad and not res.error:
            res.error = f"servers did not stop cleanly: {bad}"
    return res


async def _timed_sum(address: str, certs: Path, mode: str, res: SumRun, timeout: float) -> None:
    tls = TlsFiles.in_dir(certs, SUPERVISOR)
    left, right = (f"{LEFT}.{DATASET}", "resident_id", ""), (f"{RIGHT}.{DATASET}", "resident_id", "")
    async with GatewayClient(address, tls, timeout=timeout) as client:
        # Warm-up on the small sets with the timed query's key: pools spawned, encryption tables built.
        t = time.perf_counter()
        key = SupervisorKey.generate()
        res.phases["keygen"] = round(time.perf_counter() - t, 3)
        await client.intersection_sum((f"{LEFT}.{WARMUP}", "resident_id", ""), ["value"],
                                      (f"{RIGHT}.{WARMUP}", "resident_id", ""), PURPOSE, CASE, mode, key)
        marks: dict[str, float] = {}
        t0 = time.perf_counter()

        def on_progress(phase: str, department: str, count: int) -> None:
            now = round(time.perf_counter() - t0, 3)
            marks.setdefault(f"{phase}:first", now)
            marks[f"{phase}:last"] = now

        got: SumResult = await asyncio.wait_for(
            client.intersection_sum(left, ["value"], right, PURPOSE, CASE, mode, key, on_progress), timeout)
        res.wall_s = round(time.perf_counter() - t0, 3)
    res.total, res.rows = got.totals["value"], got.cardinality
    res.ok = (res.total, res.rows) == (res.expected_total, res.expected_rows)
    stream_end = marks["intersect:first"]
    res.phases.update(
        stream=stream_end,
        match=round(marks["aggregate:first"] - stream_end, 3),
        aggregate=round(marks["decrypt:first"] - marks["aggregate:first"], 3),
        decrypt=round(marks["decrypt:last"] - marks["decrypt:first"], 3),
    )


# --------------------------------------------------------------------------- floors (no transport)

_encryptor: FastEncryptor | None = None


def _init(n: int) -> None:
    global _encryptor
    _encryptor = FastEncryptor(phe.PaillierPublicKey(n))


def _encrypt(values: list[int]) -> int:
    assert _encryptor is not None
    return len(_encryptor.encrypt_many(values))


def _tokens(mode: str, secret: bytes, raw: list[str]) -> bytes:
    return tokens_for(mode, secret, "resident_id", [(r,) for r in raw], False).tokens


def floors(ds: DataSet, mode: str, workers: int, phe_sample: int) -> dict[str, float]:
    """Encryption and blinding of the same rows with no transport, and phe's per-value baseline."""
    key = SupervisorKey.generate()
    n = key.public_key.n
    values = [v for _, v in _values(ds.left_csv)]
    chunks = [values[i:i + CHUNK] for i in range(0, len(values), CHUNK)]
    out: dict[str, float] = {}
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(n,)) as pool:
        list(pool.map(_encrypt, [[1]] * workers * 2))  # tables built in every worker
        t = time.perf_counter()
        assert sum(pool.map(_encrypt, chunks)) == len(values)
        out["encrypt_all_cores_s"] = round(time.perf_counter() - t, 3)
        secret = psi.new_psi_key() if mode == "keyed" else psi.new_scalar()
        raw = [ident for ident, _ in _values(ds.left_csv)] + [ident for ident, _ in _values(ds.right_csv)]
        t = time.perf_counter()
        tokens = list(pool.map(_tokens, [mode] * len(raw[::CHUNK]), [secret] * len(raw[::CHUNK]),
                               [raw[i:i + CHUNK] for i in range(0, len(raw), CHUNK)]))
        if mode == "ecdh":  # each side also blinds the other's points once more
            list(pool.map(reblind, [secret] * len(tokens), tokens))
        out["blind_both_sides_all_cores_s"] = round(time.perf_counter() - t, 3)
    enc = FastEncryptor(key.public_key)
    sample = values[:min(len(values), 5000)]
    t = time.perf_counter()
    enc.encrypt_many(sample)
    fast = (time.perf_counter() - t) / len(sample)
    t = time.perf_counter()
    for v in values[:phe_sample]:
        key.public_key.encrypt(v)
    plain = (time.perf_counter() - t) / min(phe_sample, len(values))
    out.update(fast_ms_per_value=round(fast * 1000, 4), phe_ms_per_value=round(plain * 1000, 3),
               speedup_per_value=round(plain / fast, 1),
               phe_encrypt_all_cores_s_extrapolated=round(plain * len(values) / workers, 1))
    return out


# --------------------------------------------------------------------------- report


def table(results: list[SumRun]) -> Table:
    t = Table("rows per side", "mode", "end to end", "stream\n(blind+encrypt)", "match", "aggregate", "decrypt",
              "encrypt floor\n(all cores)", "blind floor\n(all cores)", "phe encrypt\n(extrapolated)",
              "speed-up\nper value", "total",
              title="Intersection-sum, end to end through gateway and adapters (fresh 2048-bit key)")
    for r in results:
        if r.error:
            t.add_row(f"{r.size:,}", r.mode, f"[red]{r.error}[/]", *[""] * 9)
            continue
        p, f = r.phases, r.floors
        t.add_row(f"{r.size:,}", r.mode, f"{r.wall_s:.2f} s", f"{p['stream']:.2f} s", f"{p['match']:.2f} s",
                  f"{p['aggregate']:.2f} s", f"{p['decrypt'] * 1000:.1f} ms",
                  f"{f.get('encrypt_all_cores_s', 0):.2f} s", f"{f.get('blind_both_sides_all_cores_s', 0):.2f} s",
                  f"{f.get('phe_encrypt_all_cores_s_extrapolated', 0):.0f} s",
                  f"{f.get('speedup_per_value', 0):.0f}×", "✓" if r.ok else "[red]✗[/]")
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intersection_sum", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--modes", default="keyed")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fedgate-bench")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--phe-sample", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    args.workdir.mkdir(parents=True, exist_ok=True)
    certs = args.workdir / "certs"
    if not (certs / "ca.pem").exists():
        pki.init_dir(certs, [Identity.department(LEFT), Identity.department(RIGHT), SUPERVISOR])
    warm = make_dataset(args.workdir, 2000, args.overlap)
    results = []
    for size in sizes:
        ds = make_dataset(args.workdir, size, args.overlap)
        for mode in modes:
            console.log(f"intersection-sum {size:,} x {size:,} {mode} ...")
            res = run_one(args.workdir, certs, ds, warm, mode, args.workers, args.timeout)
            if not res.error:
                res.floors = floors(ds, mode, args.workers, args.phe_sample)
            results.append(res)
            console.log(json.dumps(asdict(res)))
    console.print(table(results))
    info = {"machine": machine(), "workers": args.workers, "overlap": args.overlap}
    if args.json:
        args.json.write_text(json.dumps({**info, "results": [asdict(r) for r in results]}, indent=2,
                                        ensure_ascii=False))
    return 0 if all(r.ok and not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
