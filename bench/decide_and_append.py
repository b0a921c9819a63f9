"""Per-query overhead: one policy decision plus one durable audit append, as the gateway does them.

Usage::

    python -m bench.decide_and_append [--queries 1000] [--url sqlite|postgresql+psycopg://...] [--json out.json]

Every query the gateway serves is decided by Casbin (``Policy.decide_for``,
the shipped policy) and written to the audit log before any department is
asked (``AuditLog.append``: the entry, the tree nodes it completes and a
signed checkpoint, in one transaction; SQLite in WAL mode with
``synchronous=FULL``, or PostgreSQL). This times both, back to back, for
``--queries`` realistic query entries in one process, and reports the median
and the 99th percentile. Target: median under 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.core.classification import Levels, policies_dir
from fedgate.gateway.audit import entry_for
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import AuditStore
from fedgate.gateway.policy import Policy
from fedgate.core.identity import Identity, Role
from fedgate.server.interceptors import RequestRecord
from fedgate.query.audit_params import LoggedFilter, QueryParams, SideParams, SideRef

CALLER = Identity(Role.SUPERVISOR, "dcb", "bench")
# A keyed match's parameters, as the gateway logs them.
PARAMS = QueryParams(
    sides={SideRef("hrss.subsidies", "left"): SideParams("uscc"),
           SideRef("samr.companies", "right"): SideParams("uscc", LoggedFilter("status in (?, ?)", "0" * 64))},
    mode="keyed", min_set_size=100, limit=100).encode()


def _record(i: int) -> RequestRecord:
    return RequestRecord(
        "/fedgate.v1.QueryService/Match", CALLER, "query.match", ["hrss.subsidies", "samr.companies"],
        ["hrss.subsidies.uscc", "samr.companies.uscc"], "核查稳岗补贴发放对象", f"DC-2026-{i:05d}",
        params=PARAMS,
        query_id=f"{i:032x}", trace_id=f"{i:032x}")


async def measure(url: str, queries: int) -> dict[str, Any]:
    """Median and p99, in ms, of decide + append over `queries` entries on a fresh log at `url`."""
    directory = policies_dir()
    policy = Policy.from_dir(directory, Levels.from_file(directory / "levels.toml"))
    store = AuditStore.open(url)
    log = await AuditLog.open(store, Ed25519PrivateKey.generate(), "bench.fedgate/audit")
    try:
        for i in range(20):  # warm-up: the first decision after a load and the first appends are slower
            policy.decide_for(CALLER, "hrss.subsidies.uscc", "match", "L3").require()
            await log.append(entry_for(_record(i), None, ""))
        decide_ms, append_ms, both_ms = [], [], []
        for i in range(queries):
            record = _record(i)
            t0 = time.perf_counter()
            record.rule = policy.decide_for(CALLER, "hrss.subsidies.uscc", "match", "L3").require()
            t1 = time.perf_counter()
            await log.append(entry_for(record, None, ""))
            t2 = time.perf_counter()
            decide_ms.append((t1 - t0) * 1000)
            append_ms.append((t2 - t1) * 1000)
            both_ms.append((t2 - t0) * 1000)
    finally:
        store.close()

    def stats(xs: list[float]) -> dict[str, float]:
        ordered = sorted(xs)
        return {"median_ms": round(statistics.median(ordered), 3),
                "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3)}

    return {"store": url.split(":", 1)[0], "queries": queries, "decide": stats(decide_ms),
            "append": stats(append_ms), "decide_and_append": stats(both_ms)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decide_and_append", description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--url", default="sqlite", help="sqlite (a temporary file) or an SQLAlchemy URL")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+pysqlite:///{tmp}/audit.db" if args.url == "sqlite" else args.url
        result = asyncio.run(measure(url, args.queries))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
