"""End-to-end intersection-sum and comparison benchmark: real gateway and adapters on loopback, over mTLS.

Usage::

    python -m bench.homomorphic --sizes 10000,100000 [--kinds sum,compare] [--modes keyed,ecdh] \\
        [--overlap 0.5] [--workdir DIR] [--json out.json] [--phe-sample 200]

For every (kind, size, mode) a fresh gateway and two department adapters
(``hrss`` on the left, ``civil`` on the right) run as separate processes with
``workers`` = all cores, on the data of ``bench.match`` (N rows per side, one
identifier in 50 invalid, ``value`` uniform in [1, 10^6)). A small warm-up
query of the same kind spawns the worker pools and builds each process's
encryption table first; the timed query uses the same fresh 2048-bit key.

* ``sum``: ``GatewayClient.intersection_sum`` of the left ``value`` over the
  left rows whose key is on the right. Checked against the plaintext sum
  computed here from the CSV files.
* ``compare``: ``GatewayClient.compare`` of left ``value`` > right ``value``
  for every matched pair, flags only. Checked against the plaintext flags.

A wrong answer fails the run (exit code 1). Per phase, from the client's
progress events (seconds from the call): ``stream`` until both sides' tokens
and ciphertexts have reached the gateway (normalising, blinding, encrypting,
overlapped in the adapters' pools); ``match`` the intersection; ``aggregate``
the gateway's ciphertext arithmetic (products, or blinding and packing); and
``decrypt`` in the client.

The floor, in the same run after the servers stop, with no transport, on a
spawn pool of ``workers`` processes: encrypting the values (N for a sum, 2N
for a comparison), turning both sides' rows into tokens as the adapters do,
and for a comparison blinding and packing every pair and decrypting the
packed results (these two on a sample, scaled to the real count). ``phe``'s
own ``encrypt`` is timed on a sample (``--phe-sample``) and scaled to the
values encrypted, spread over all cores: the baseline for the fast path.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Mapping
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
    ProcStats,
    console,
    deployment,
    loopback_bytes,
    machine,
    make_dataset,
    proc_stats,
    start_profilers,
    stop_profilers,
    tree_cpu,
    unclean_stop,
    valid_ids,
)
from fedgate.demo.deployment import TomlValue
from fedgate.server import pki
from fedgate.adapters.pool_tasks import tokens_for
from fedgate.query import protocols
from fedgate.query.protocols.ecdh import reblind
from fedgate.client.gateway import GatewayClient, Side
from fedgate.crypto import psi
from fedgate.crypto.compare import packing_for
from fedgate.crypto.paillier import FastEncryptor, ciphertexts_to_bytes
from fedgate.demo import processes
from fedgate.core.encryptors import VALUE_BOUND
from fedgate.gateway.homomorphic import blind_and_pack
from fedgate.core.identity import Identity
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.server.tls import TlsFiles
from fedgate.server.worker_pool import default_workers

PURPOSE = "性能基准：同态核查 (benchmark)"
CASE = "BENCH-HOMOMORPHIC"
CHUNK = 2048
KINDS = ("sum", "compare")
SAMPLE_PAIRS = 1024


@dataclass
class HomRun:
    kind: str
    size: int
    mode: str
    expected: int = 0          # sum: the total; compare: pairs flagged
    expected_rows: int = 0     # sum: rows summed; compare: pairs compared
    got: int = -1
    got_rows: int = -1
    ok: bool = False
    wall_s: float = 0.0
    rows_per_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    floors: dict[str, float] = field(default_factory=dict)
    floor_s: float | None = None
    floor_ratio: float | None = None
    gateway: ProcStats | None = None
    adapter_left: ProcStats | None = None
    adapter_right: ProcStats | None = None
    wire_bytes: int = 0
    profiles: list[str] = field(default_factory=list)
    error: str = ""


def _values(path: Path) -> list[tuple[str, int]]:
    with path.open(encoding="utf-8") as fh:
        next(fh)
        return [(ident, int(value)) for ident, value in (line.rstrip("\n").split(",", 1) for line in fh)]


def _valid_values(path: Path) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    for ident, value in _values(path):
        normalised = valid_ids([ident])
        if normalised:
            out[normalised[0]] = value
    return out


def expected_answer(kind: str, ds: DataSet) -> tuple[int, int]:
    """The plaintext reference: (total, rows summed) for a sum; (pairs flagged, pairs) for a comparison."""
    left, right = _valid_values(ds.left_csv), _valid_values(ds.right_csv)
    matched = [(v, right[k]) for k, v in left.items() if k in right]  # identifiers are unique per side
    if kind == "sum":
        return sum(x for x, _ in matched), len(matched)
    return sum(1 for x, y in matched if x > y), len(matched)


def run_one(kind: str, workdir: Path, certs: Path, ds: DataSet, warm: DataSet, mode: str, workers: int,
            timeout: float, profile: Path | None = None,
            gateway_options: Mapping[str, TomlValue] | None = None) -> HomRun:
    res = HomRun(kind, ds.size, mode)
    res.expected, res.expected_rows = expected_answer(kind, ds)
    stopped: dict[str, int | None] = {}
    try:
        with deployment(workdir / "runs" / f"{kind}-n{ds.size}-{mode}", certs, ds, warm, workers,
                        stopped, gateway_options) as started:
            cpu = asyncio.run(_timed(kind, f"127.0.0.1:{started[0].port}", certs, mode, res, started, timeout,
                                     profile))
            res.gateway = proc_stats(started[0].proc.pid, cpu[0])
            res.adapter_left = proc_stats(started[1].proc.pid, cpu[1])
            res.adapter_right = proc_stats(started[2].proc.pid, cpu[2])
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    res.error = res.error or unclean_stop(stopped)
    return res


async def _query(client: GatewayClient, kind: str, dataset: str, mode: str, key: SupervisorKey,
                 on_progress: object = None) -> tuple[int, int]:
    left, right = Side(f"{LEFT}.{dataset}", "resident_id"), Side(f"{RIGHT}.{dataset}", "resident_id")
    if kind == "sum":
        got = await client.intersection_sum(values=left, value_fields=["value"], other=right, purpose=PURPOSE,
                                            case_number=CASE, mode=mode, key=key,
                                            on_progress=on_progress)  # type: ignore[arg-type]
        return got.totals["value"], got.cardinality
    compared = await client.compare(left=left, left_value="value", right=right, right_value="value", purpose=PURPOSE,
                                    case_number=CASE, weights=(1, 1), mode=mode, key=key,
                                    on_progress=on_progress)  # type: ignore[arg-type]
    return len(compared.flagged), compared.pairs


async def _timed(kind: str, address: str, certs: Path, mode: str, res: HomRun,
                 servers: list[processes.ServerProcess], timeout: float,
                 profile: Path | None) -> list[dict[int, float]]:
    tls = TlsFiles.in_dir(certs, SUPERVISOR)
    async with GatewayClient(address, tls, timeout=timeout) as client:
        t = time.perf_counter()
        key = SupervisorKey.generate()
        res.phases["keygen"] = round(time.perf_counter() - t, 3)
        await _query(client, kind, WARMUP, mode, key)   # pools spawned, encryption tables built
        await asyncio.sleep(0.5)
        cpu = [tree_cpu(s.proc.pid) for s in servers]
        spies = start_profilers(profile, f"{kind}-n{res.size}-{mode}", servers) if profile else []
        marks: dict[str, float] = {}
        wire0 = loopback_bytes()
        t0 = time.perf_counter()

        def on_progress(phase: str, department: str, count: int) -> None:
            now = round(time.perf_counter() - t0, 3)
            marks.setdefault(f"{phase}:first", now)
            marks[f"{phase}:last"] = now

        try:
            res.got, res.got_rows = await asyncio.wait_for(_query(client, kind, DATASET, mode, key, on_progress),
                                                           timeout)
            res.wall_s = round(time.perf_counter() - t0, 3)
            res.wire_bytes = loopback_bytes() - wire0
        finally:
            if spies:
                res.profiles = stop_profilers(spies)
    res.rows_per_s = round(2 * res.size / res.wall_s)
    res.ok = (res.got, res.got_rows) == (res.expected, res.expected_rows)
    work = "aggregate" if kind == "sum" else "compare"
    stream_end = marks["intersect:first"]
    res.phases.update(
        stream=stream_end,
        match=round(marks[f"{work}:first"] - stream_end, 3),
        aggregate=round(marks["decrypt:first"] - marks[f"{work}:first"], 3),
        decrypt=round(marks["decrypt:last"] - marks["decrypt:first"], 3),
    )
    return cpu


# --------------------------------------------------------------------------- floors (no transport)

_encryptor: FastEncryptor | None = None


def _init(n: int) -> None:
    global _encryptor
    _encryptor = FastEncryptor(phe.PaillierPublicKey(n))


def _encrypt(values: list[int]) -> bytes:
    assert _encryptor is not None
    return ciphertexts_to_bytes(_encryptor.encrypt_many(values), _encryptor.public_key)


def _tokens(mode: str, secret: bytes, raw: list[str]) -> bytes:
    return tokens_for(protocols.get(mode).tokens, secret, "resident_id", [(r,) for r in raw], False).tokens


def _chunked(items: list[object], size: int = CHUNK) -> list[list[object]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def floors(kind: str, ds: DataSet, mode: str, workers: int, phe_sample: int, pairs: int) -> dict[str, float]:
    """The same cryptography with no transport, on a pool of ``workers`` processes; phe's baseline."""
    key = SupervisorKey.generate()
    n = key.public_key.n
    left = [v for _, v in _values(ds.left_csv)]
    values = left if kind == "sum" else left + [v for _, v in _values(ds.right_csv)]
    out: dict[str, float] = {}
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(n,)) as pool:
        list(pool.map(_encrypt, [[1]] * workers * 2))  # tables built in every worker
        t = time.perf_counter()
        encrypted = list(pool.map(_encrypt, _chunked(values)))  # type: ignore[arg-type]
        out["encrypt_s"] = round(time.perf_counter() - t, 3)
        secret = psi.new_psi_key() if mode == "keyed" else psi.new_scalar()
        raw = [ident for ident, _ in _values(ds.left_csv)] + [ident for ident, _ in _values(ds.right_csv)]
        chunks = _chunked(raw)  # type: ignore[arg-type]
        t = time.perf_counter()
        tokens = list(pool.map(_tokens, [mode] * len(chunks), [secret] * len(chunks), chunks))
        if mode == "ecdh":  # each side also blinds the other's points once more
            list(pool.map(reblind, [secret] * len(tokens), tokens))
        out["blind_s"] = round(time.perf_counter() - t, 3)
        if kind == "compare" and pairs:
            packing = packing_for(1, 1, VALUE_BOUND, VALUE_BOUND, n)
            width = len(encrypted[0]) // min(CHUNK, len(values))
            blob = b"".join(encrypted)
            cts = [blob[i * width:(i + 1) * width] for i in range(min(2 * SAMPLE_PAIRS, len(values)))]
            xs, ys = cts[0::2], cts[1::2]
            step = packing.slots * 8
            public = key.public_bytes
            t = time.perf_counter()
            packed = list(pool.map(blind_and_pack, [public] * len(xs[::step]), _chunked(xs, step),  # type: ignore[arg-type]
                                   _chunked(ys, step), [1] * len(xs[::step]), [1] * len(xs[::step]),  # type: ignore[arg-type]
                                   [VALUE_BOUND] * len(xs[::step]), [packing] * len(xs[::step])))
            out["blind_pack_s_scaled"] = round((time.perf_counter() - t) * pairs / len(xs), 3)
            first = b"".join(packed)
            t = time.perf_counter()
            key.decrypt_flags(first, len(xs), packing)
            per_packed = (time.perf_counter() - t) / -(-len(xs) // packing.slots)
            out["decrypt_s_scaled"] = round(per_packed * -(-pairs // packing.slots), 3)
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
               phe_encrypt_s_scaled=round(plain * len(values) / workers, 1))
    return out


def floor_total(kind: str, f: dict[str, float]) -> float:
    """The whole floor: everything the run must compute, run back to back on the same cores."""
    return round(f["encrypt_s"] + f["blind_s"] + f.get("blind_pack_s_scaled", 0.0) + f.get("decrypt_s_scaled", 0.0),
                 3)


# --------------------------------------------------------------------------- report


def table(results: list[HomRun]) -> Table:
    t = Table("kind", "rows per side", "mode", "end to end", "stream", "match", "aggregate", "decrypt", "floor",
              "e2e/floor", "phe encrypt\n(scaled)", "speed-up\nper value", "answer",
              title="Paillier cross-checks, end to end through gateway and adapters (fresh 2048-bit key)")
    for r in results:
        if r.error:
            t.add_row(r.kind, f"{r.size:,}", r.mode, f"[red]{r.error}[/]", *[""] * 9)
            continue
        p, f = r.phases, r.floors
        t.add_row(r.kind, f"{r.size:,}", r.mode, f"{r.wall_s:.2f} s", f"{p['stream']:.2f} s", f"{p['match']:.2f} s",
                  f"{p['aggregate']:.2f} s", f"{p['decrypt']:.2f} s",
                  "—" if r.floor_s is None else f"{r.floor_s:.2f} s",
                  "—" if r.floor_ratio is None else f"{r.floor_ratio:.2f}",
                  f"{f.get('phe_encrypt_s_scaled', 0):.0f} s", f"{f.get('speedup_per_value', 0):.0f}×",
                  "✓" if r.ok else "[red]✗[/]")
    return t


def run_kind(kind: str, workdir: Path, certs: Path, ds: DataSet, warm: DataSet, mode: str, workers: int,
             timeout: float, phe_sample: int, profile: Path | None = None) -> HomRun:
    """One timed run and its floor."""
    console.log(f"{kind} {ds.size:,} x {ds.size:,} {mode} ...")
    res = run_one(kind, workdir, certs, ds, warm, mode, workers, timeout, profile)
    if not res.error:
        res.floors = floors(kind, ds, mode, workers, phe_sample, res.expected_rows if kind == "compare" else 0)
        res.floor_s = floor_total(kind, res.floors)
        res.floor_ratio = round(res.wall_s / res.floor_s, 2) if res.floor_s else None
    console.log(json.dumps(asdict(res)))
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.homomorphic", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--kinds", default="sum,compare")
    parser.add_argument("--modes", default="keyed")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fedgate-bench")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--phe-sample", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if any(k not in KINDS for k in kinds):
        parser.error("kinds are sum and compare")
    args.workdir.mkdir(parents=True, exist_ok=True)
    certs = args.workdir / "certs"
    if not (certs / "ca.pem").exists():
        pki.init_dir(certs, [Identity.department(LEFT), Identity.department(RIGHT), SUPERVISOR])
    warm = make_dataset(args.workdir, 2000, args.overlap)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        ds = make_dataset(args.workdir, size, args.overlap)
        for kind in kinds:
            for mode in args.modes.split(","):
                results.append(run_kind(kind, args.workdir, certs, ds, warm, mode, args.workers, args.timeout,
                                        args.phe_sample))
    console.print(table(results))
    if args.json:
        info = {"machine": machine(), "workers": args.workers, "overlap": args.overlap}
        args.json.write_text(json.dumps({**info, "results": [asdict(r) for r in results]}, indent=2,
                                        ensure_ascii=False))
    return 0 if all(r.ok and not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
