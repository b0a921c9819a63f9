"""Load: many supervisors at once, mixing listing, matching, sums and counts, in rounds.

Usage::

    python -m bench.load [--supervisors 24] [--rounds 3] [--rows 2000] [--workdir DIR] [--json out.json]

The command line over `fedgate.demo.load`, which describes the run. Reported per
round: wall time, throughput (operations per second), p50 and p99 latency per
operation, errors by status, and each server's resident memory (VmRSS) after
the round, to show that memory does not grow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.match import console
from fedgate.demo.load import GREEDY_EXTRA, deploy, run_load


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    ap.add_argument("--supervisors", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fedgate-load")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    with deploy(args.workdir, args.supervisors, args.rounds, args.rows) as servers:
        report = asyncio.run(run_load(args.workdir, args.supervisors, args.rounds, args.rows, servers,
                                      say=console.log))
    print(json.dumps(asdict(report), indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False))
    return 0 if not report.unexpected and report.quota_refusals == GREEDY_EXTRA else 1


if __name__ == "__main__":
    sys.exit(main())
