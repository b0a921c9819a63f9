"""End-to-end private matching benchmark: real gateway and adapters on loopback, over mTLS.

Usage::

    python -m bench.match --sizes 10000,100000,1000000 --modes keyed,ecdh \\
        [--overlap 0.5] [--workdir DIR] [--json out.json] \\
        [--openmined [--openmined-max N] [--openmined-path DIR]] \\
        [--profile DIR] [--no-floor] [--no-task-floor]

Results, the measured table and the analysis: docs/performance-matching.md.
``--profile`` output is summarised by ``python -m bench.profile_summary``.

For every (size, mode) the benchmark starts a fresh certificate-authenticated
gateway and two department adapters (``hrss`` on the left, ``civil`` on the
right) as separate processes, each adapter with ``workers`` = all cores, and
runs one cardinality-only match of N x N rows through ``GatewayClient.match``.
A small warm-up match first spawns the adapters' worker pools and opens the
gateway's channels, so the timed match measures matching, not process start.
Processes are restarted per run so each run's peak memory (VmHWM, a lifetime
peak) is its own.

Reported per run:

* wall time from the client's call to its result, and rows/s = 2N / time;
* peak RSS (VmHWM) of the gateway, and of each adapter including its worker
  processes (the sum of every descendant's VmHWM);
* CPU seconds each process tree spent during the timed match;
* the arithmetic floor, measured in the same run after the servers stopped:
  ECDH: ``hash_and_blind`` N ids + ``blind_points`` N points per side (4N
  scalar multiplications), keyed: ``hmac_tokens`` of 2N ids, spread over all
  cores with a spawn-context process pool in chunks of the adapters' size, no
  transport; ratio = end to end / floor;
* the task floor: the same pool running exactly what adapter workers run per
  chunk (``tokens_for`` from raw strings, incl. normalisation, and ``reblind``);
* optionally the ``openmined-psi`` package's own protocol (server setup,
  client request, server response, client intersection size) run in one
  process on the same valid identifiers.

A wrong cardinality fails the benchmark (exit code 1).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedgate.server import pki
from fedgate.adapters.matching import chunk_rows
from fedgate.adapters.pool_tasks import domain_for, tokens_for
from fedgate.client.gateway import GatewayClient, MatchResult, Side
from fedgate.crypto import psi
from fedgate.core.classification import policies_dir
from fedgate.demo import processes, synthetic_ids
from fedgate.demo.deployment import Deployment, GatewaySpec, TomlValue, policy_copy
from fedgate.demo.synthetic_ids import LEFT, RIGHT, DataSet, people_departments, read_ids, valid_ids
from fedgate.query import protocols
from fedgate.query.protocols.ecdh import reblind
from fedgate.core.identity import Identity, Role
from fedgate.server.tls import TlsFiles

SUPERVISOR = Identity(Role.SUPERVISOR, "dcb", "bench")
DATASET = "people"
WARMUP = "warmup"
WARMUP_ROWS = 2000
PURPOSE = "性能基准：私有匹配 (benchmark)"
CASE = "BENCH-MATCH"
SHIPPED_MAX_MATCH_ROWS = 5_000_000
DEFAULT_OPENMINED_MAX = 100_000

console = Console(width=None if sys.stdout.isatty() else 200)


# --------------------------------------------------------------------------- data and deployment


# The cores fedgate's processes share on this machine: a ratio with a one-core peer is also given per core.
CORES = max(len(os.sched_getaffinity(0)), 1)

def make_dataset(workdir: Path, size: int, overlap: float) -> DataSet:
    """`synthetic_ids.make_dataset`, saying on the console when it generates."""
    return synthetic_ids.make_dataset(workdir, size, overlap, say=console.log)


# Comparison weights come from policy (a compare.weights rule per field pair): the benchmark compares its
# datasets' `value` fields at 1:1.
BENCH_COMPARISON_RULES = "".join(
    f"p, supervisor, *, {LEFT}.{name}.value>{RIGHT}.{name}.value, compare.weights, 1:1\n" for name in (DATASET, WARMUP))


def policy_dir_for(workdir: Path, size: int) -> Path:
    """A copy of the shipped policies with the benchmark's comparison rules, and max_match_rows raised when
    `size` needs it."""
    text = None
    if size > SHIPPED_MAX_MATCH_ROWS:
        text = (policies_dir() / "safeguards.toml").read_text(encoding="utf-8")
        text = text.replace(f"max_match_rows = {SHIPPED_MAX_MATCH_ROWS}", f"max_match_rows = {size}")
        assert f"max_match_rows = {size}" in text, "safeguards.toml changed shape"
    # Exact answers: each run is checked against the truth, and repeats would run out of privacy budget.
    return policy_copy(workdir / "policies", text, BENCH_COMPARISON_RULES, exact=True)


# --------------------------------------------------------------------------- /proc


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                kids = Path(f"/proc/{p}/task/{t}/children").read_text().split()
            except OSError:
                continue
            for k in kids:
                out.append(int(k))
                todo.append(int(k))
    return out


def vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def system_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, steal / tick


def loopback_bytes() -> int:
    """Bytes transmitted on the loopback interface since boot (/proc/net/dev); only our servers talk there."""
    try:
        for line in Path("/proc/net/dev").read_text().splitlines():
            name, _, counters = line.partition(":")
            if name.strip() == "lo":
                return int(counters.split()[8])   # transmit bytes (lo receives the same)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_cpu(pid: int) -> dict[int, float]:
    return {p: cpu_seconds(p) for p in [pid, *descendants(pid)]}


@dataclass
class ProcStats:
    peak_mib: float           # own VmHWM + every descendant's
    main_peak_mib: float
    children: int
    cpu_s: float              # CPU seconds of the tree during the timed match
    main_cpu_s: float


class AnonPeak:
    """The peak RssAnon of one process, sampled on a thread every 50 ms until `stop`."""

    def __init__(self, pid: int) -> None:
        self._pid, self._peak_kib = pid, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while True:
            try:
                for line in Path(f"/proc/{self._pid}/status").read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        self._peak_kib = max(self._peak_kib, int(line.split()[1]))
            except OSError:
                return
            if self._done.wait(0.05):
                return

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return round(self._peak_kib / 1024, 1)


def proc_stats(pid: int, cpu_before: dict[int, float]) -> ProcStats:
    kids = descendants(pid)
    main = vm_hwm_kib(pid)
    total = main + sum(vm_hwm_kib(k) for k in kids)
    after = tree_cpu(pid)
    cpu = sum(v - cpu_before.get(p, 0.0) for p, v in after.items())
    return ProcStats(round(total / 1024, 1), round(main / 1024, 1), len(kids), round(cpu, 2),
                     round(after.get(pid, 0.0) - cpu_before.get(pid, 0.0), 2))


# --------------------------------------------------------------------------- profiling (optional)


def start_profilers(out_dir: Path, label: str, servers: list[processes.ServerProcess]) -> list[tuple[subprocess.Popen[bytes], Path]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for server in servers:
        path = out_dir / f"{label}-{server.name}.txt"
        proc = subprocess.Popen([spy, "record", "--pid", str(server.proc.pid), "--format", "raw", "--rate", "50",
                                 "--subprocesses", "--nonblocking", "--output", str(path)],
                                stdout=subprocess.DEVNULL, stderr=(out_dir / f"{label}-{server.name}.log").open("wb"))
        started.append((proc, path))
    time.sleep(1.0)   # let py-spy attach before the timed call
    return started


def stop_profilers(started: list[tuple[subprocess.Popen[bytes], Path]]) -> list[str]:
    for proc, _ in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc, _ in started:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return [str(path) for _, path in started]


# --------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    size: int
    mode: str
    wall_s: float = 0.0
    rows_per_s: float = 0.0
    cardinality: int = -1
    expected: int = -1
    ok: bool = False
    left_invalid: int = -1
    right_invalid: int = -1
    phases: dict[str, float] = field(default_factory=dict)  # seconds from call start to first event
    warmup_s: float = 0.0
    startup_s: float = 0.0
    gateway: ProcStats | None = None
    adapter_left: ProcStats | None = None
    adapter_right: ProcStats | None = None
    floor_s: float | None = None
    floor_ratio: float | None = None
    task_floor_s: float | None = None
    openmined: dict[str, Any] | None = None
    profiles: list[str] = field(default_factory=list)
    # CPU seconds the rest of the machine (not the servers, not this process) used during the
    # timed match, and hypervisor steal: non-zero means the timing was disturbed.
    other_cpu_s: float = 0.0
    steal_s: float = 0.0
    # Bytes sent over loopback during the timed match (TLS records, HTTP/2 framing and all).
    wire_bytes: int = 0
    # The gateway's anonymous memory (RssAnon: its heap, not the files it maps), peak sampled every 50 ms during
    # the timed match: what spilling bounds. VmHWM (ProcStats.peak_mib) also counts mapped spill files' pages.
    gateway_anon_peak_mib: float = 0.0
    error: str = ""


@contextlib.contextmanager
def deployment(run_dir: Path, certs: Path, ds: DataSet, warm: DataSet, workers: int,
               stopped: dict[str, int | None],
               gateway_options: Mapping[str, TomlValue] | None = None,
               source: str = "csv") -> Iterator[list[processes.ServerProcess]]:
    """A fresh gateway and the two adapters (the timed and the warm-up datasets) as processes.

    Yields [gateway, left adapter, right adapter] once all are ready; on the way
    out stops them, putting each exit code in `stopped`, and on an error shows
    their log tails first.
    """
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    gateway = GatewaySpec.in_dir(Path("gateway-data"), certs, policy_dir=policy_dir_for(run_dir, ds.size),
                                 options=dict(gateway_options or {}))
    servers = Deployment(run_dir, gateway, people_departments(certs, workers, [(DATASET, ds), (WARMUP, warm)],
                                                                  source=source))
    try:
        servers.start_gateway()
        servers.start_adapters(timeout=300)
        yield [servers.procs["gateway"], servers.procs[LEFT], servers.procs[RIGHT]]
    except Exception:
        for proc in servers.procs.values():
            console.log(f"[red]{proc.name} log tail:[/]\n{proc.log_tail(20)}")
        raise
    finally:
        stopped.update(servers.stop())


def unclean_stop(stopped: dict[str, int | None]) -> str:
    """An error for servers that did not exit 0, or ''."""
    bad = {k: v for k, v in stopped.items() if v != 0}
    return f"servers did not stop cleanly: {bad}" if bad else ""


def run_servers(workdir: Path, certs: Path, ds: DataSet, warm: DataSet, mode: str, workers: int,
                timeout: float, profile: Path | None,
                gateway_options: Mapping[str, TomlValue] | None = None, source: str = "csv") -> RunResult:
    res = RunResult(ds.size, mode, expected=ds.expected)
    stopped: dict[str, int | None] = {}
    t0 = time.perf_counter()
    try:
        with deployment(workdir / "runs" / f"n{ds.size}-{mode}-{source}", certs, ds, warm, workers, stopped,
                        gateway_options, source) as started:
            res.startup_s = round(time.perf_counter() - t0, 2)
            gw, left, right = started
            cpu = asyncio.run(_timed_match(f"127.0.0.1:{gw.port}", certs, ds, warm, mode, res, started, timeout,
                                           profile))
            res.gateway = proc_stats(gw.proc.pid, cpu[0])
            res.adapter_left = proc_stats(left.proc.pid, cpu[1])
            res.adapter_right = proc_stats(right.proc.pid, cpu[2])
            ours = (res.gateway.cpu_s + res.adapter_left.cpu_s + res.adapter_right.cpu_s
                    + res.phases.pop("_self_cpu"))
            res.other_cpu_s = round(max(0.0, res.phases.pop("_busy_cpu") - ours), 2)
            res.steal_s = round(res.phases.pop("_steal_cpu"), 2)
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    res.error = res.error or unclean_stop(stopped)
    return res


async def _timed_match(address: str, certs: Path, ds: DataSet, warm: DataSet, mode: str, res: RunResult,
                       servers: list[processes.ServerProcess], timeout: float,
                       profile: Path | None) -> list[dict[int, float]]:
    """Warm up, then time one match; returns each server tree's CPU times taken just before it."""
    tls = TlsFiles.in_dir(certs, SUPERVISOR)
    async with GatewayClient(address, tls) as client:
        # Warm-up: spawns the adapters' worker pools and opens every channel.
        t = time.perf_counter()
        got = await client.match(left=Side(f"{LEFT}.{WARMUP}", "resident_id"),
                                 right=Side(f"{RIGHT}.{WARMUP}", "resident_id"), purpose=PURPOSE, case_number=CASE,
                                 mode=mode)
        res.warmup_s = round(time.perf_counter() - t, 2)
        if got.cardinality != warm.expected:
            raise AssertionError(f"warm-up cardinality {got.cardinality} != {warm.expected}")
        await asyncio.sleep(0.5)
        gw, left, right = servers
        cpu = [tree_cpu(gw.proc.pid), tree_cpu(left.proc.pid), tree_cpu(right.proc.pid)]
        spies = start_profilers(profile, f"n{ds.size}-{mode}", servers) if profile else []
        phases: dict[str, float] = {}
        busy0, steal0 = system_cpu()
        self0 = cpu_seconds(os.getpid())
        wire0 = loopback_bytes()
        t0 = time.perf_counter()

        def on_progress(phase: str, department: str, tokens: int) -> None:
            key = f"{phase}:{department}" if department else phase
            phases.setdefault(key + ":first", round(time.perf_counter() - t0, 2))
            phases[key + ":last"] = round(time.perf_counter() - t0, 2)

        sampler = AnonPeak(gw.proc.pid)
        try:
            result: MatchResult = await asyncio.wait_for(client.match(
                left=Side(f"{LEFT}.{DATASET}", "resident_id"), right=Side(f"{RIGHT}.{DATASET}", "resident_id"),
                purpose=PURPOSE, case_number=CASE, mode=mode, on_progress=on_progress), timeout)
            wall = time.perf_counter() - t0
            res.wire_bytes = loopback_bytes() - wire0
            busy1, steal1 = system_cpu()
            phases.update(_busy_cpu=busy1 - busy0, _steal_cpu=steal1 - steal0,
                          _self_cpu=cpu_seconds(os.getpid()) - self0)
        finally:
            res.gateway_anon_peak_mib = sampler.stop()
            if spies:
                res.profiles = stop_profilers(spies)
    res.wall_s = round(wall, 3)
    res.rows_per_s = round(2 * ds.size / wall)
    res.cardinality = result.cardinality
    res.left_invalid, res.right_invalid = result.left.invalid_identifiers, result.right.invalid_identifiers
    res.ok = (result.cardinality == ds.expected and result.left.invalid_identifiers == ds.left_invalid
              and result.right.invalid_identifiers == ds.right_invalid
              and result.left.rows == ds.size and result.right.rows == ds.size)
    res.phases = phases
    return cpu


# --------------------------------------------------------------------------- floors


def _hash_and_blind(scalar: bytes, ids: list[bytes]) -> bytes:
    return bytes(psi.hash_and_blind(scalar, domain_for("resident_id"), ids))


def _blind(scalar: bytes, points: bytes) -> bytes:
    return bytes(psi.blind_points(scalar, points))


def _hmac(key: bytes, ids: list[bytes]) -> bytes:
    return bytes(psi.hmac_tokens(key, domain_for("resident_id"), ids))


def _noop(x: int) -> int:
    return x


def _chunks(items: list[Any], workers: int = 2) -> list[list[Any]]:
    """Chunks of the size the adapters use for a set of this many rows."""
    size = chunk_rows(len(items), workers)
    return [items[i:i + size] for i in range(0, len(items), size)]


Task = tuple[int, Callable[..., Any], tuple[Any, ...]]          # (side 0/1, function, arguments)
Then = Callable[[int, Any], "cf.Future[Any]"] | None               # next stage for a side's output


def _two_stage(pool: cf.ProcessPoolExecutor, first: list[Task], then: Then) -> float:
    """Run every first-stage task; as each finishes, `then(side, output)` submits its second stage.

    Returns the seconds until every task of both stages is done.
    """
    t0 = time.perf_counter()
    side_of: dict[cf.Future[Any], int] = {}
    for first_side, fn, args in first:
        side_of[pool.submit(fn, *args)] = first_side
    pending = set(side_of)
    while pending:
        done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
        for f in done:
            out = f.result()
            if then is not None and f in side_of:   # a first-stage task: submit its second stage
                pending.add(then(side_of.pop(f), out))
    return time.perf_counter() - t0


def arithmetic_floor(pool: cf.ProcessPoolExecutor, mode: str, left: list[bytes], right: list[bytes]) -> float:
    """The bare crypto of a match over all cores, no transport: ECDH 4N scalar mults, keyed 2N HMACs."""
    sides = ((0, left), (1, right))
    if mode == "keyed":
        key = psi.new_psi_key()
        return _two_stage(pool, [(side, _hmac, (key, c)) for side, ids in sides for c in _chunks(ids)], None)
    scalars = (psi.new_scalar(), psi.new_scalar())

    def blind_again(side: int, points: bytes) -> cf.Future[Any]:
        # Side s's points are blinded again with the other side's scalar, as the peer adapter does.
        return pool.submit(_blind, scalars[1 - side], points)

    return _two_stage(pool, [(side, _hash_and_blind, (scalars[side], c)) for side, ids in sides for c in _chunks(ids)],
                      blind_again)


def task_floor(pool: cf.ProcessPoolExecutor, mode: str, left_raw: list[str], right_raw: list[str]) -> float:
    """Exactly the adapters' worker tasks (tokens_for from raw strings, then reblind) over all cores."""
    if mode == "keyed":
        key = psi.new_psi_key()   # both sides hold the same key
        secrets = (key, key)
    else:
        secrets = (psi.new_scalar(), psi.new_scalar())
    tasks: list[Task] = [(side, tokens_for, (protocols.get(mode).tokens, secrets[side], "resident_id", c, False))
                         for side, raw in ((0, left_raw), (1, right_raw)) for c in _chunks(raw)]

    def reblind_peer(side: int, out: tuple[bytes, int, bytes]) -> cf.Future[Any]:
        return pool.submit(reblind, secrets[1 - side], out[0])

    return _two_stage(pool, tasks, None if mode == "keyed" else reblind_peer)


# --------------------------------------------------------------------------- openmined-psi (optional)


def _openmined_child(extra_path: str, client_items: list[str], server_items: list[str]) -> dict[str, Any]:
    import resource
    if extra_path:
        sys.path.insert(0, extra_path)
    import private_set_intersection.python as om  # type: ignore[import-not-found,unused-ignore]

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    client = om.client.CreateWithNewKey(False)       # cardinality only, like our benchmark
    server = om.server.CreateWithNewKey(False)
    t = time.perf_counter()
    setup = server.CreateSetupMessage(1e-9, len(client_items), server_items)
    setup_bytes = setup.SerializeToString()
    times["server_setup_s"] = time.perf_counter() - t
    t = time.perf_counter()
    request = client.CreateRequest(client_items)
    request_bytes = request.SerializeToString()
    times["client_request_s"] = time.perf_counter() - t
    t = time.perf_counter()
    response = server.ProcessRequest(request)
    response_bytes = response.SerializeToString()
    times["server_response_s"] = time.perf_counter() - t
    t = time.perf_counter()
    size = client.GetIntersectionSize(setup, response)
    times["client_intersect_s"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    return {"version": getattr(om, "__version__", "?"), "total_s": round(total, 3), "cardinality": int(size),
            **{k: round(v, 3) for k, v in times.items()},
            "bytes": len(setup_bytes) + len(request_bytes) + len(response_bytes),
            "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def openmined_available(extra_path: str) -> str:
    """'' when importable, else the reason."""
    code = ("import sys; p = sys.argv[1]\nif p: sys.path.insert(0, p)\n"
            "import private_set_intersection.python as om; print(om.__version__)")
    got = subprocess.run([sys.executable, "-c", code, extra_path], capture_output=True, text=True, timeout=60)
    return "" if got.returncode == 0 else (got.stderr.strip().splitlines() or ["import failed"])[-1]


def run_openmined(extra_path: str, left: list[bytes], right: list[bytes], timeout: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        items = ([x.decode() for x in left], [x.decode() for x in right])
        return pool.submit(_openmined_child, extra_path, *items).result(timeout)


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import cryptography
    import grpc
    import numpy
    from cryptography.hazmat.backends.openssl.backend import backend
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1])
    except OSError:
        pass
    return {"cpu_model": model, "cores": len(os.sched_getaffinity(0)), "logical_cpus": os.cpu_count(),
            "mem_gib": round(mem / 1024 / 1024, 1), "kernel": platform.release(),
            "python": platform.python_version(), "cryptography": cryptography.__version__,
            "openssl": backend.openssl_version_text(), "grpcio": grpc.__version__, "numpy": numpy.__version__}


def code_fingerprint() -> dict[str, Any]:
    """Which package code was measured: a digest over every source file, and the newest file.

    Other work may change the package between two runs; the digest tells runs of the same code apart.
    """
    import hashlib

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    newest = (0.0, "")
    for folder in ("fedgate", "adapters", "gateway", "crypto", "policies"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix not in (".py", ".toml", ".csv", ".conf") or "__pycache__" in path.parts:
                continue
            rel = path.relative_to(root).as_posix()
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
            newest = max(newest, (path.stat().st_mtime, rel))
    return {"sha256": digest.hexdigest()[:16], "newest_file": newest[1],
            "newest_mtime": dt.datetime.fromtimestamp(newest[0], dt.UTC).isoformat(timespec="seconds")}


def _mib(p: ProcStats | None) -> str:
    return "—" if p is None else f"{p.peak_mib:,.0f}"


def table(results: list[RunResult]) -> Table:
    t = Table("mode", "rows/side", "wall s", "rows/s", "floor s", "e2e/floor", "task floor s",
              "gateway\npeak MiB", f"{LEFT}\npeak MiB\n(+workers)", f"{RIGHT}\npeak MiB\n(+workers)",
              "CPU s\ngw/L/R", "other\nCPU s", "matched\n(expected)", "openmined s, 1 core\n(speed-up; per core)",
              title="fedgate private matching, end to end over mTLS on loopback (cardinality only)")
    for r in results:
        cpu = ("—" if r.gateway is None or r.adapter_left is None or r.adapter_right is None
               else f"{r.gateway.cpu_s:.1f}/{r.adapter_left.cpu_s:.1f}/{r.adapter_right.cpu_s:.1f}")
        om = "—"
        if r.openmined:
            # openmined-psi runs on one core, fedgate on all of them: per core divides by their number.
            om = (f"{r.openmined['total_s']:.2f} ({r.openmined['total_s'] / r.wall_s:.1f}×; "
                  f"{r.openmined['total_s'] / r.wall_s / CORES:.1f}×)"
                  if "total_s" in r.openmined and r.wall_s else r.openmined.get("skipped", "?"))
        t.add_row(r.mode, f"{r.size:,}", f"{r.wall_s:.2f}" if r.wall_s else "FAILED",
                  f"{r.rows_per_s:,.0f}", "—" if r.floor_s is None else f"{r.floor_s:.2f}",
                  "—" if r.floor_ratio is None else f"{r.floor_ratio:.2f}",
                  "—" if r.task_floor_s is None else f"{r.task_floor_s:.2f}",
                  _mib(r.gateway), _mib(r.adapter_left), _mib(r.adapter_right), cpu, f"{r.other_cpu_s:.1f}",
                  f"{r.cardinality:,} ({r.expected:,}) " + ("✓" if r.ok else "✗"), om)
    return t


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.match", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="rows per side, comma-separated")
    ap.add_argument("--modes", default="keyed,ecdh")
    ap.add_argument("--overlap", type=float, default=0.5, help="share of each side's rows planted on both sides")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fedgate-bench-match",
                    help="data, certificates, server logs (default: a folder in the temp dir)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                    help="adapter blinding processes and floor pool size (default: all cores)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed for one timed match")
    ap.add_argument("--no-floor", action="store_true", help="skip the arithmetic floor")
    ap.add_argument("--no-task-floor", action="store_true", help="skip the adapters' worker-task floor")
    ap.add_argument("--openmined", action="store_true", help="also time the openmined-psi package's protocol")
    ap.add_argument("--openmined-max", type=int, default=DEFAULT_OPENMINED_MAX,
                    help="largest size to run openmined-psi on (default 100000; 1M may take very long)")
    ap.add_argument("--openmined-path", default=os.environ.get("OPENMINED_PSI_PATH", ""),
                    help="extra sys.path entry holding private_set_intersection (e.g. a pip --target dir)")
    ap.add_argument("--profile", type=Path, help="record py-spy raw stacks of every server (and its workers) "
                    "during each timed match into this directory (perturbs timings: profile in separate runs)")
    args = ap.parse_args(argv)

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in ("keyed", "ecdh") for m in modes):
        ap.error("modes are keyed and ecdh")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    info["code"] = code_fingerprint()
    console.log(f"machine: {info['cpu_model']}, {info['cores']} cores, {info['mem_gib']} GiB; "
                f"adapters with workers={args.workers}; workdir {workdir}; code {info['code']}")
    certs = workdir / "certs"
    pki.init_dir(certs, [Identity.department(LEFT), Identity.department(RIGHT), SUPERVISOR])
    warm = make_dataset(workdir, WARMUP_ROWS, args.overlap)

    om_reason = ""
    if args.openmined:
        om_reason = openmined_available(args.openmined_path)
        if om_reason:
            console.log(f"[yellow]openmined-psi not importable, skipped: {om_reason}")

    floor_pool = cf.ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
    list(floor_pool.map(_noop, range(args.workers * 4)))   # spawn the workers before any timing
    results: list[RunResult] = []
    failed = False
    try:
        for size in sizes:
            ds = make_dataset(workdir, size, args.overlap)
            # The same identifiers, for the floors and openmined-psi (read outside any timing).
            left_raw, right_raw = read_ids(ds.left_csv), read_ids(ds.right_csv)
            left_ok, right_ok = valid_ids(left_raw), valid_ids(right_raw)
            for mode in modes:
                console.rule(f"{mode} {size:,} × {size:,}")
                r = run_servers(workdir, certs, ds, warm, mode, args.workers, args.timeout, args.profile)
                if r.error or not r.ok:
                    failed = True
                    console.log(f"[red]FAILED: {r.error or f'cardinality {r.cardinality} != {r.expected}'}")
                else:
                    console.log(f"end to end {r.wall_s:.2f} s, {r.rows_per_s:,} rows/s, matched {r.cardinality:,} ✓"
                                f" (startup {r.startup_s} s, warm-up {r.warmup_s} s, other CPU {r.other_cpu_s} s, "
                                f"steal {r.steal_s} s); phases {r.phases}")
                if not args.no_floor:
                    r.floor_s = round(arithmetic_floor(floor_pool, mode, left_ok, right_ok), 3)
                    r.floor_ratio = round(r.wall_s / r.floor_s, 3) if r.wall_s else None
                    console.log(f"arithmetic floor {r.floor_s:.2f} s → end to end / floor = {r.floor_ratio}")
                if not args.no_task_floor:
                    r.task_floor_s = round(task_floor(floor_pool, mode, left_raw, right_raw), 3)
                    console.log(f"adapter worker-task floor {r.task_floor_s:.2f} s")
                if args.openmined and mode == "ecdh":
                    if om_reason:
                        r.openmined = {"skipped": f"not importable: {om_reason}"}
                    elif size > args.openmined_max:
                        r.openmined = {"skipped": f"size above --openmined-max {args.openmined_max:,}"}
                    else:
                        console.log("running openmined-psi's protocol in one process …")
                        r.openmined = run_openmined(args.openmined_path, left_ok, right_ok, args.timeout)
                        r.openmined["cardinality_ok"] = r.openmined["cardinality"] == ds.expected
                        if r.wall_s:
                            r.openmined["speedup"] = round(r.openmined["total_s"] / r.wall_s, 2)
                            r.openmined["speedup_per_core"] = round(r.openmined["speedup"] / CORES, 2)
                        console.log(f"openmined-psi: {r.openmined}")
                results.append(r)
                _write_json(args.json, info, args, results)
    finally:
        floor_pool.shutdown(cancel_futures=True)
    console.print(table(results))
    _write_json(args.json, info, args, results)
    return 1 if failed else 0


def _write_json(path: Path | None, info: dict[str, Any], args: argparse.Namespace, results: list[RunResult]) -> None:
    if path is None:
        return
    doc = {"machine": info, "command": " ".join([Path(sys.executable).name, "-m", "bench.match", *sys.argv[1:]]),
           "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "overlap": args.overlap, "workers": args.workers, "chunk_rows": "chunk_rows(rows, workers)",
           "results": [asdict(r) for r in results]}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
