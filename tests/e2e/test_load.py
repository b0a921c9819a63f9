"""Load: 24 supervisors at once, in rounds, against a gateway and two adapters running as processes."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path

from fedgate.demo.load import GREEDY_EXTRA, deploy, run_load

SUPERVISORS = 24
ROUNDS = 4
ROWS = 400


def test_many_supervisors_at_once_get_only_intended_refusals_and_memory_stays_flat(tmp_path: Path) -> None:
    with deploy(tmp_path, SUPERVISORS, ROUNDS, ROWS) as servers:
        report = asyncio.run(run_load(tmp_path, SUPERVISORS, ROUNDS, ROWS, servers))
    for n, r in enumerate(report.rounds, 1):  # shown with -s, and in the failure message below
        print(f"round {n}: {r.operations} operations in {r.wall_s} s ({r.throughput}/s); "
              f"p50/p99 ms {({op: (v['p50'], v['p99']) for op, v in r.latency_ms.items()})}; rss MiB {r.rss_mib}")
    # Every answer right, every error the intended quota refusal of the supervisor who kept asking.
    assert not report.unexpected, report.unexpected[:5]
    assert report.quota_refusals == GREEDY_EXTRA
    assert all(r.operations == 4 * SUPERVISORS and not r.errors for r in report.rounds), asdict(report)
    # Memory: after the first round (pools, tables, connections warmed up) the servers stop growing.
    for server in ("gateway", "hrss", "civil"):
        second, last = report.rounds[1].rss_mib[server], report.rounds[-1].rss_mib[server]
        assert last - second < 16, f"{server} grew from {second} to {last} MiB over {ROUNDS - 2} rounds"
