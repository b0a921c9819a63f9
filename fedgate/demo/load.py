"""The load driver: many supervisors at once, in rounds, against a gateway and two adapters as processes.

A gateway and two department adapters (``hrss``, ``civil``) run on loopback with
mTLS, on `fedgate.demo.synthetic_ids` data. Every supervisor has a certificate of
its own. In each round all of them, concurrently, list the datasets, run a keyed
private match, an intersection-sum (fresh Paillier key each) and a count; every
answer is checked against the plaintext. The daily query quota is set to
exactly what the rounds need, and one more supervisor keeps asking after its
allowance is used up: those refusals (RESOURCE_EXHAUSTED) are the only errors
expected. `python -m bench.load` is the command line over this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedgate.server import pki
from fedgate.client.gateway import GatewayClient, Side
from fedgate.demo.deployment import Deployment, GatewaySpec, deployed, policy_copy
from fedgate.demo.synthetic_ids import make_dataset, people_departments, valid_ids
from fedgate.core.errors import RemoteCallFailed
from fedgate.core.identity import Identity, Role
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.server.tls import TlsFiles

PURPOSE = "负载测试 (load test)"
CHARGED_PER_ROUND = 3      # match, sum and count count against the daily query quota; listing does not
GREEDY_EXTRA = 3


@dataclass
class Round:
    wall_s: float
    operations: int
    throughput: float
    latency_ms: dict[str, dict[str, float]]
    errors: dict[str, int]
    rss_mib: dict[str, float]


@dataclass
class LoadReport:
    supervisors: int
    rounds: list[Round] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    quota_refusals: int = 0


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _expected(left_csv: Path, right_csv: Path) -> tuple[int, int]:
    def read(path: Path) -> dict[bytes, int]:
        out = {}
        with path.open(encoding="utf-8") as fh:
            next(fh)
            for line in fh:
                ident, value = line.rstrip("\n").split(",", 1)
                ids = valid_ids([ident])
                if ids:
                    out[ids[0]] = int(value)
        return out

    left, right = read(left_csv), read(right_csv)
    matched = [v for k, v in left.items() if k in right]
    return len(matched), sum(matched)


async def _round(clients: list[GatewayClient], greedy: GatewayClient | None, expected: tuple[int, int],
                 rows: int, report: LoadReport) -> tuple[float, dict[str, list[float]], Counter[str]]:
    latencies: dict[str, list[float]] = {"list": [], "match": [], "sum": [], "count": []}
    errors: Counter[str] = Counter()
    people, others = Side("hrss.people", "resident_id"), Side("civil.people", "resident_id")

    async def timed(op: str, call: Any, check: Any) -> None:
        t = time.perf_counter()
        try:
            got = await call
        except RemoteCallFailed as exc:
            errors[exc.code] += 1
            report.unexpected.append(f"{op}: {exc}")
            return
        latencies[op].append((time.perf_counter() - t) * 1000)
        if not check(got):
            report.unexpected.append(f"{op}: wrong answer {got!r:.200}")

    async def supervisor(i: int, client: GatewayClient) -> None:
        case = f"LOAD-{i}"
        key = await asyncio.to_thread(SupervisorKey.generate)
        await timed("list", client.list_datasets(), lambda got: len(got) == 2)
        await timed("match", client.match(left=people, right=others, purpose=PURPOSE, case_number=case),
                    lambda got: got.cardinality == expected[0])
        await timed("sum", client.intersection_sum(values=people, value_fields=["value"], other=others,
                                                   purpose=PURPOSE, case_number=case, key=key),
                    lambda got: (got.cardinality, got.totals["value"]) == expected)
        await timed("count", client.count_rows("hrss.people", PURPOSE, case), lambda got: got[0] == rows)

    async def greedy_supervisor() -> None:
        assert greedy is not None
        for _ in range(GREEDY_EXTRA):
            try:
                await greedy.count_rows("hrss.people", PURPOSE, "LOAD-GREEDY")
            except RemoteCallFailed as exc:
                if exc.code == "RESOURCE_EXHAUSTED" and "quota" in exc.details:
                    report.quota_refusals += 1
                else:
                    report.unexpected.append(f"greedy: {exc}")
            else:
                report.unexpected.append("greedy: a query beyond the daily quota was served")

    t0 = time.perf_counter()
    await asyncio.gather(*(supervisor(i, c) for i, c in enumerate(clients)),
                         *([greedy_supervisor()] if greedy else []))
    return time.perf_counter() - t0, latencies, errors


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1) if ordered else 0.0


async def run_load(workdir: Path, supervisors: int, rounds: int, rows: int, servers: Deployment,
                   say: Callable[[str], None] = lambda _: None) -> LoadReport:
    """`rounds` rounds of `supervisors` concurrent supervisors against the running `servers` of `deploy`."""
    data = make_dataset(workdir, rows, 0.5)
    expected = _expected(data.left_csv, data.right_csv)
    address, certs = servers.address, servers.gateway.tls.ca.parent
    ids = [Identity(Role.SUPERVISOR, "dcb", f"load{i:03d}") for i in range(supervisors + 1)]
    clients = [GatewayClient(address, TlsFiles.in_dir(certs, who), timeout=300) for who in ids[:-1]]
    greedy = GatewayClient(address, TlsFiles.in_dir(certs, ids[-1]), timeout=300)
    report = LoadReport(supervisors)
    try:
        # The greedy supervisor uses up its allowance first, then asks again during the last round.
        for _ in range(CHARGED_PER_ROUND * rounds):
            await greedy.count_rows("hrss.people", PURPOSE, "LOAD-GREEDY")
        for n in range(rounds):
            wall, latencies, errors = await _round(clients, greedy if n == rounds - 1 else None, expected, rows,
                                                   report)
            await asyncio.sleep(0.5)  # let the servers settle before reading their memory
            ops = sum(len(v) for v in latencies.values())
            report.rounds.append(Round(
                round(wall, 2), ops, round(ops / wall, 1),
                {op: {"p50": _pct(v, 0.5), "p99": _pct(v, 0.99), "mean": round(statistics.fmean(v), 1) if v else 0}
                 for op, v in latencies.items()},
                dict(errors), {name: vm_rss_mib(p.proc.pid) for name, p in servers.procs.items()}))
            say(f"round {n + 1}: {asdict(report.rounds[-1])}")
    finally:
        for c in [*clients, greedy]:
            await c.close()
    return report


@contextlib.contextmanager
def deploy(workdir: Path, supervisors: int, rounds: int, rows: int) -> Iterator[Deployment]:
    """The gateway (with a daily quota of exactly the rounds' queries) and both adapters, running;
    certificates for every supervisor and one more who asks too often."""
    certs = workdir / "certs"
    ids = [Identity(Role.SUPERVISOR, "dcb", f"load{i:03d}") for i in range(supervisors + 1)]
    pki.init_dir(certs, [Identity.department("hrss"), Identity.department("civil"), *ids])
    data = make_dataset(workdir, rows, 0.5)
    policy = policy_copy(workdir / "policies", "min_set_size = 100\nmax_match_rows = 5000000\n\n"
                         f"[quotas.supervisor]\nqueries_per_day = {CHARGED_PER_ROUND * rounds}\n"
                         "disclosed_rows_per_day = 5000\n", exact=True)  # it checks every answer, from one agency
    gateway = GatewaySpec.in_dir(Path("gateway-data"), certs, policy_dir=policy)
    with deployed(workdir, gateway, people_departments(certs, 2, [("people", data)])) as servers:
        yield servers
