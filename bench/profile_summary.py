"""Summarise py-spy raw (collapsed) stacks written by ``python -m bench.match --profile DIR``.

Usage: python -m bench.profile_summary DIR/n1000000-keyed-adapter-hrss.txt [more files] [--top 15]

For each file, and within it for each process (py-spy ``--subprocesses`` puts
the process first in every stack), prints the share of samples by function:
"self" where the sample was taken, "incl." anywhere on the stack. Idle samples
are not recorded by py-spy unless ``--idle`` was given, so shares are of busy
time of that process.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

_LOC = re.compile(r"\s*\((?P<file>[^():]+?)(?::\d+)?\)\s*$")


def _frame(name: str) -> str:
    """'tokens_for (fedgate/adapters/pool_tasks.py:38)' -> 'tokens_for (pool_tasks.py)'."""
    m = _LOC.search(name)
    if not m:
        return name.strip()
    return f"{name[:m.start()].strip()} ({Path(m.group('file')).name})"


# py-spy --subprocesses starts each stack with the process chain, parent first:
# 'process 1234:"python -m fedgate adapter serve ...";process 1240:"python -c from
# multiprocessing.spawn import spawn_main; spawn_main(...)"' (command lines may hold ';').
_PROCESS = re.compile(r'process (\d+):"([^"]*)";?')


def _process_key(stack: str) -> tuple[str, str]:
    """(process label, the rest of the stack)."""
    chain = _PROCESS.findall(stack)
    rest = _PROCESS.sub("", stack)
    if not chain:
        return "main", rest
    pid, cmd = chain[-1]
    kind = ("worker" if "spawn_main" in cmd else "resource_tracker" if "resource_tracker" in cmd else "main")
    return f"process {pid} ({kind})", rest


def summarise(path: Path, top: int) -> str:
    per_proc_self: dict[str, Counter[str]] = defaultdict(Counter)
    per_proc_incl: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        proc, stack = _process_key(stack)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        totals[proc] += count
        names = [_frame(f) for f in frames]
        per_proc_self[proc][names[-1]] += count
        for name in set(names):
            per_proc_incl[proc][name] += count
    out = [f"== {path.name}: {sum(totals.values())} samples"]
    # Workers of one pool are alike: merge them.
    groups: dict[str, list[str]] = defaultdict(list)
    for proc in totals:
        groups["workers" if "(worker)" in proc else proc].append(proc)
    for group, procs in sorted(groups.items(), key=lambda kv: -sum(totals[p] for p in kv[1])):
        total = sum(totals[p] for p in procs)
        self_c: Counter[str] = Counter()
        incl_c: Counter[str] = Counter()
        for p in procs:
            self_c.update(per_proc_self[p])
            incl_c.update(per_proc_incl[p])
        out.append(f"-- {group} ({len(procs)} process(es)): {total} samples")
        out.append("   self%  function")
        for name, c in self_c.most_common(top):
            out.append(f"   {100 * c / total:5.1f}  {name}")
        out.append("   incl%  function")
        for name, c in incl_c.most_common(top):
            out.append(f"   {100 * c / total:5.1f}  {name}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_summary")
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    for path in args.files:
        print(summarise(path, args.top))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
