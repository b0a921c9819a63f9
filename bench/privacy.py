"""What the privacy defences cost: per-query overhead of each check, and their utility cost on the demo data.

Usage::

    python -m bench.privacy [--sizes 10000,100000,1000000] [--kept 10,100] [--json out.json] [--md out.md]
    python -m bench.privacy --utility [--json out.json] [--md out.md]

Overhead, in one process (no servers), per query:

* **noise**: one OpenDP discrete Laplace draw for a count (``fedgate.query.noise``);
* **row refs**: a department's keyed hash of every row of the answer's set
  (``RowRefs``, what the difference check compares);
* **difference check**: ``RowHistory.record_unless_near`` against ``--kept``
  sets of the same size already kept (SQLite, every kept set read and
  compared, the new one written), so no kept set is skipped for its size. Twice:
  with kept sets 4,000 rows from the new one (a comparison leaves a set as soon
  as the difference reaches k, after a few percent of it), and with kept sets
  exactly k rows from it, the worst case: each is compared to its end;
* **budget charge**: one ``BudgetBook.charge`` on a SQLite ledger;
* **set sizes**: the gateway's ADMIT and SIZES safeguards for a count.

A (size, kept) pair above ``--max-kept-refs`` rows in total is skipped: its
cost is linear in the kept sets, measured at the smaller pair.

``--utility`` generates the demo data (default seed), answers realistic
filtered counts with the shipped ε of each noisy level and reports the error
against the truth, then runs a supervisor's varied legitimate queries through
the department's difference check and counts the refusals.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from fedgate.adapters.matching import encrypted_noise
from fedgate.adapters.ref_sets import RefSet
from fedgate.adapters.row_history import RefBasis, RowHistory, RowRefs, RowSets
from fedgate.adapters.sources import Source, SourceSpec
from fedgate.adapters.sources.kinds import open_source
from fedgate.core.classification import DpPolicy, Levels, policies_dir
from fedgate.core.datasets import DatasetDecl, FieldDecl
from fedgate.core.filters import parse_checked
from fedgate.core.identity import Identity, Role
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.demo import datagen
from fedgate.gateway.budget import BudgetBook
from fedgate.query.audit_params import QueryParams
from fedgate.query.noise import noisy_count
from fedgate.query.sum_noise import SumNoise
from fedgate.query.safeguards import (AnswerRows, DifferenceCheck, DifferenceRefused, Release, Request,
                                      SafeguardConfig, Safeguards)
from fedgate.query.sizes import Sizes

console = Console()
CALLER = Identity(Role.SUPERVISOR, "dcb", "bench")
AGENCY = "dcb"
DEFAULT_SIZES = "10000,100000,1000000"
DEFAULT_KEPT = "10,100"
DEFAULT_MAX_KEPT_REFS = 100_000_000
# Each set (kept or asked) is one set with 2 * STEP new references, others for each: two differ by 4 * STEP rows.
# STEP: far apart (a comparison leaves early); k // 4: exactly k apart, never near, the worst case.
STEP = 1000


@dataclass
class Stat:
    """Median and 99th percentile of one measurement, in microseconds, over `n` samples."""

    median_us: float
    p99_us: float
    n: int


def stat(seconds: Sequence[float]) -> Stat:
    ordered = sorted(seconds)
    return Stat(round(statistics.median(ordered) * 1e6, 1),
                round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6, 1), len(ordered))


def timed(fn: Callable[[int], object], n: int, warm: int = 20) -> Stat:
    """`fn(i)` timed `n` times after `warm` untimed calls."""
    for i in range(warm):
        fn(i)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    return stat(samples)


@dataclass
class DiffRow:
    """The difference check for one set size against `kept` sets of that size."""

    rows: int
    kept: int
    refs: Stat | None = None        # building the set's references (keyed hash per row)
    check: Stat | None = None       # record_unless_near: compare with every kept set (4 * STEP rows apart), keep
    worst: Stat | None = None       # the same with every kept set exactly k rows apart: each compared to its end
    stored_mib: float | None = None  # the history file with `kept` sets
    note: str = ""


@dataclass
class Overhead:
    noise: Stat
    budget: Stat
    set_sizes: Stat
    difference: list[DiffRow] = field(default_factory=list)
    # A noisy sum's department: one total's noise drawn (OpenDP) and encrypted under a 2048-bit key.
    sum_noise: Stat | None = None


class _NoQuota:
    """A quota ledger without quotas: the set-size pipeline is timed alone."""

    def charge_query(self, who: Identity) -> int | None:
        return None

    def charge_rows(self, who: Identity, count: int) -> None:
        return None


def _levels() -> Levels:
    return Levels.from_file(policies_dir() / "levels.toml")


def measure_noise(n: int) -> Stat:
    epsilon = _levels().dp_for("hrss.subsidies", "L3").epsilon
    return timed(lambda i: noisy_count(1000 + i, epsilon), n)


def measure_sum_noise(n: int) -> Stat:
    """What a noisy sum adds at its value department: one total's noise, drawn and encrypted."""
    key = SupervisorKey.generate()
    noise = SumNoise(((0, 2_000_000),), _levels().dp_for("hrss.subsidies", "L3").epsilon / 2)
    return timed(lambda i: encrypted_noise(noise, key.public_bytes), n)


def measure_budget(n: int, tmp: Path) -> Stat:
    engine = sa.create_engine(f"sqlite+pysqlite:///{tmp}/budget.db")
    book = BudgetBook(engine)
    policy = DpPolicy("noisy", 0.25, 1e9, "month")  # a budget never used up: every charge is timed
    try:
        return timed(lambda i: book.charge(AGENCY, "hrss.subsidies", policy), n)
    finally:
        engine.dispose()


def measure_set_sizes(n: int) -> Stat:
    levels = _levels()
    pipeline = Safeguards.for_gateway(SafeguardConfig(), levels, _NoQuota())

    def one(i: int) -> None:
        request = Request(CALLER, "count", QueryParams(), aggregate_levels=("L2", "L3"))
        pipeline.admit(request)
        pipeline.size_check(request)(Sizes(aggregated_rows=5_000 + i, total_rows={"filtered": 100_000}))
    return timed(one, n)


def _references(secret: bytes, rows: int, start: int = 0) -> RowRefs:
    refs = RowRefs(secret, RefBasis(("id",), "plain"))
    refs.add_rows((f"ID{i:012d}",) for i in range(start, start + rows))
    return refs


def _variant(refs: RefSet, step: int, rng: random.Random) -> RefSet:
    """The set with 2 * step new references: every variant of a set has the same size, and two of them
    differ by 4 * step rows (whatever the set's size)."""
    fresh = np.array([rng.getrandbits(64) for _ in range(2 * step)], dtype=np.uint64)
    return RefSet.of(np.concatenate([refs.values, fresh]))


def _timed_checks(refs: RefSet, kept: int, repeats: int, path: Path, step: int, k: int) -> tuple[Stat, float]:
    """A history of `kept` variants of `refs`, then `repeats` further variants checked and kept: their timing,
    and the history's size on disk (MiB). Its files are removed after."""
    history = RowHistory(path, b"\x07" * 32, max_sets=kept)
    rng = random.Random(len(refs) * 1000 + kept + step)
    total = len(refs) * 10
    try:
        for i in range(kept):  # k = 0: kept without comparing (filling the history is not what is timed)
            history.record_unless_near(AnswerRows(AGENCY, "d", _variant(refs, step, rng), total, f"f{i}"), 0)
        samples = []
        for r in range(repeats):
            answer = AnswerRows(AGENCY, "d", _variant(refs, step, rng), total, f"q{r}")
            t0 = time.perf_counter()
            recorded = history.record_unless_near(answer, k)
            samples.append(time.perf_counter() - t0)
            if not recorded:
                raise AssertionError("a set at least k rows from every kept one was refused")
        if history.kept(AGENCY, "d") != kept:
            raise AssertionError("the history does not hold the sets it was given")
        # The comparisons still see every difference: at a k just above their distance, the sets are near.
        if history.record_unless_near(AnswerRows(AGENCY, "d", _variant(refs, step, rng), total, "x"), 4 * step + 1):
            raise AssertionError("a set fewer than k rows from a kept one was recorded")
    finally:
        history.close()
    files = list(path.parent.glob(path.name + "*"))
    mib = round(sum(p.stat().st_size for p in files) / 2**20, 1)
    for p in files:
        p.unlink()
    return stat(samples), mib


def measure_difference(rows: int, kept: int, repeats: int, tmp: Path, k: int = 100) -> DiffRow:
    """Build one set's references, fill a history with `kept` sets of its size, then time the check: against
    sets far apart, then against sets exactly k apart."""
    secret = b"\x07" * 32
    out = DiffRow(rows, kept)
    samples = []
    for r in range(repeats):
        t0 = time.perf_counter()
        refs = _references(secret, rows, r * rows)
        samples.append(time.perf_counter() - t0)
    out.refs = stat(samples)
    out.check, out.stored_mib = _timed_checks(refs.refs, kept, repeats, tmp / f"history-{rows}-{kept}.db", STEP, k)
    out.worst, _ = _timed_checks(refs.refs, kept, repeats, tmp / f"worst-{rows}-{kept}.db", k // 4, k)
    return out


def overhead(sizes: Sequence[int], kept: Sequence[int], queries: int, max_kept_refs: int) -> Overhead:
    """Every per-query measurement; the difference check for each (size, kept) within `max_kept_refs`."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Overhead(measure_noise(queries), measure_budget(queries, Path(tmp)), measure_set_sizes(queries),
                          sum_noise=measure_sum_noise(min(queries, 200)))
        for rows in sizes:
            for n in kept:
                if rows * n > max_kept_refs:
                    result.difference.append(DiffRow(rows, n, note=f"skipped: above --max-kept-refs {max_kept_refs:,}"))
                    continue
                console.log(f"difference check: {rows:,} rows against {n} kept sets …")
                repeats = 5 if rows * n <= 1_000_000 else 1
                result.difference.append(measure_difference(rows, n, repeats, Path(tmp)))
    return result


def _us(s: Stat | None) -> str:
    if s is None:
        return "—"
    if s.median_us >= 10_000:
        return f"{s.median_us / 1e6:.2f} s / {s.p99_us / 1e6:.2f} s"
    return f"{s.median_us:,.1f} / {s.p99_us:,.1f} µs"


def overhead_table(o: Overhead) -> Table:
    t = Table("check", "per query: median / p99", title="privacy checks: cost per query (in process, one core)")
    t.add_row("OpenDP noise draw (count)", _us(o.noise))
    t.add_row("noisy sum: one total's noise drawn and encrypted", _us(o.sum_noise))
    t.add_row("budget ledger charge (SQLite)", _us(o.budget))
    t.add_row("set sizes: ADMIT + SIZES (count)", _us(o.set_sizes))
    for d in o.difference:
        if d.check is None:
            t.add_row(f"difference: {d.rows:,} rows, {d.kept} kept", d.note)
            continue
        t.add_row(f"row refs: {d.rows:,} rows", _us(d.refs))
        t.add_row(f"difference: {d.rows:,} rows, {d.kept} kept ({d.stored_mib} MiB)", _us(d.check))
        t.add_row(f"difference: {d.rows:,} rows, {d.kept} kept k apart (worst)", _us(d.worst))
    return t


def overhead_markdown(o: Overhead) -> str:
    lines = ["| check | median | p99 |", "|---|---|---|"]

    def row(name: str, s: Stat | None, note: str = "") -> None:
        if s is None:
            lines.append(f"| {name} | {note} | |")
        else:
            lines.append(f"| {name} | {_one(s.median_us)} | {_one(s.p99_us)} |")
    row("OpenDP noise draw (count, or a match's cardinality)", o.noise)
    row("noisy sum: one total's noise drawn and encrypted (department, 2048-bit key)", o.sum_noise)
    row("budget ledger charge (SQLite, synchronous)", o.budget)
    row("set sizes: ADMIT + SIZES safeguards (count)", o.set_sizes)
    for d in o.difference:
        if d.check is None:
            row(f"difference check, {d.rows:,} rows against {d.kept} kept sets", None, d.note)
            continue
        row(f"row references of a {d.rows:,}-row set (keyed hash per row)", d.refs)
        row(f"difference check, {d.rows:,} rows against {d.kept} kept sets ({d.stored_mib} MiB kept)", d.check)
        row("the same, every kept set exactly k rows away (worst case)", d.worst)
    return "\n".join(lines) + "\n"


def _one(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e3:
        return f"{us / 1e3:.1f} ms"
    return f"{us:.1f} µs"


# ---------------------------------------------------------------------------------------------------------------
# Utility cost on the demo data
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class NoiseError:
    """The error of noisy answers at one ε, over the demo's counts (each answered `draws` times)."""

    level: str
    epsilon: float
    answers_per_period: int
    period: str
    counts: int
    draws: int
    mean_abs_error: float
    p95_abs_error: float
    median_relative_error_pct: float


@dataclass
class RefusalRun:
    """A supervisor's legitimate queries through the department's difference check at one k."""

    k: int
    queries: int
    checked: int     # within k..total-k rows: the rest are suppressed or refused by the set-size checks instead
    refused: int
    refused_filters: list[str] = field(default_factory=list)


@dataclass
class Utility:
    rows: int
    seed: int
    noise: list[NoiseError]
    refusals: list[RefusalRun]
    true_counts: tuple[int, int, int] = (0, 0, 0)  # the smallest, median and largest true count asked


def _decl(department: str, ds: datagen.DemoDataset) -> DatasetDecl:
    return DatasetDecl(department, ds.name, tuple(FieldDecl.build(f.name, f.type, f.level, f.key) for f in ds.fields))


def _source(root: Path, ds: datagen.DemoDataset, decl: DatasetDecl) -> Source:
    spec = SourceSpec(ds.source["kind"], path=root / ds.source["path"], table=ds.source.get("table"))
    return open_source(spec, decl.field_types)


def _quote(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def supervisor_filters(source: Source, decl: DatasetDecl) -> list[str]:
    """The filters a supervisor plausibly asks of a dataset: each category of a few-valued text field, and
    ranges of every number and date at its quartiles (alone, and within the largest category)."""
    filters: list[str] = []
    categories: list[str] = []
    for f in decl.fields:
        if f.key is not None:
            continue
        values = [v for (v,) in source.rows([f.name]) if v is not None]
        distinct = sorted(set(values), key=str)
        if f.type.value == "string" and 1 < len(distinct) <= 20:
            ranked = sorted(distinct, key=lambda v: -values.count(v))
            categories += [f"{f.name} = {_quote(v)}" for v in ranked]
        elif f.type.value in ("int", "date"):
            ordered = sorted(values, key=str) if f.type.value == "date" else sorted(values)
            q = [ordered[len(ordered) * p // 4] for p in (1, 2, 3)]
            lit = [str(v) if f.type.value == "int" else _quote(v) for v in q]
            filters += [f"{f.name} < {lit[0]}", f"{f.name} >= {lit[2]}", f"{f.name} >= {lit[0]} and {f.name} < {lit[1]}",
                        f"{f.name} >= {lit[1]} and {f.name} < {lit[2]}"]
    ranges = list(filters)
    filters = categories + ranges
    if categories:
        filters += [f"{categories[0]} and {r}" for r in ranges[:4]]
    return filters


def _true_counts(root: Path) -> list[tuple[DatasetDecl, Source, str, int, int]]:
    """(declaration, source, filter, rows it selects, the dataset's rows) for every supervisor filter."""
    out = []
    for dept in datagen.DEPARTMENTS:
        for ds in dept.datasets:
            decl = _decl(dept.code, ds)
            source = _source(root, ds, decl)
            total = source.count(None)
            for text in supervisor_filters(source, decl):
                out.append((decl, source, text, source.count(parse_checked(text, decl.field_types)), total))
    return out


def noise_errors(truths: Sequence[int], levels: Levels, draws: int) -> list[NoiseError]:
    """Per noisy level, the error of `draws` noisy answers to each true count at its shipped ε."""
    out = []
    for level in levels.levels:
        policy = level.dp
        if not policy.noisy:
            continue
        errors, relative = [], []
        for truth in truths:
            for _ in range(draws):
                e = abs(noisy_count(truth, policy.epsilon) - truth)
                errors.append(e)
                if truth:
                    relative.append(e / truth)
        errors.sort()
        out.append(NoiseError(level.name, policy.epsilon, int(round(policy.budget / policy.epsilon)), policy.period,
                              len(truths), draws, round(statistics.fmean(errors), 2),
                              float(errors[int(len(errors) * 0.95)]),
                              round(statistics.median(relative) * 100, 3) if relative else 0.0))
    return out


def refusals(counts: Sequence[tuple[DatasetDecl, Source, str, int, int]], k: int, data_dir: Path) -> RefusalRun:
    """The counts, in order, through a fresh department history and the DifferenceCheck safeguard at `k`."""
    sets = RowSets.open(data_dir)
    check = DifferenceCheck(sets.history)
    run = RefusalRun(k, len(counts), 0, 0)
    params = QueryParams(min_aggregate=k)
    try:
        for decl, source, text, rows, total in counts:
            refs = sets.read(source, decl, parse_checked(text, decl.field_types))
            if k <= rows <= total - k:
                run.checked += 1
            try:
                check.release(Release(params, answer=RowSets.answer(str(CALLER), decl, refs, total, text)))
            except DifferenceRefused:
                run.refused += 1
                run.refused_filters.append(f"{decl.department}.{decl.name}: {text}")
    finally:
        sets.history.close()
    return run


def utility(rows: int = 10_000, seed: int = 20261129, draws: int = 200) -> Utility:
    """Noise error and difference-check refusals on the demo data, generated afresh."""
    levels = _levels()
    ks = sorted({lv.min_aggregate for lv in levels.levels if lv.min_aggregate > 1} | {SafeguardConfig().min_set_size})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        datagen.generate(root, rows, seed)
        counts = _true_counts(root)
        try:
            noise = noise_errors([c[3] for c in counts], levels, draws)
            runs = [refusals(counts, k, Path(tmp) / f"dept-{k}") for k in ks]
        finally:
            for source in {id(c[1]): c[1] for c in counts}.values():
                source.close()
    truths = sorted(c[3] for c in counts)
    return Utility(rows, seed, noise, runs, (truths[0], truths[len(truths) // 2], truths[-1]))


def utility_table(u: Utility) -> Table:
    t = Table("level", "ε per answer", "answers / period", "mean |error|", "p95 |error|", "median rel. error",
              title=f"noisy counts on the demo data ({u.noise[0].counts if u.noise else 0} filtered counts, "
                    f"{u.noise[0].draws if u.noise else 0} draws each)")
    for n in u.noise:
        t.add_row(n.level, f"{n.epsilon:g}", f"{n.answers_per_period} per {n.period}", f"{n.mean_abs_error:.2f}",
                  f"{n.p95_abs_error:.0f}", f"{n.median_relative_error_pct:.3f} %")
    return t


def utility_markdown(u: Utility) -> str:
    low, mid, high = u.true_counts
    lines = [f"Demo data: `generate(rows={u.rows:,}, seed={u.seed})`; true counts from {low:,} to {high:,} rows "
             f"(median {mid:,}).", "",
             "| level | ε per answer | answers per agency, dataset and period | mean abs. error | p95 abs. error "
             "| median relative error |", "|---|---|---|---|---|---|"]
    for n in u.noise:
        lines.append(f"| {n.level} | {n.epsilon:g} | {n.answers_per_period} per {n.period} | {n.mean_abs_error:.2f} "
                     f"| {n.p95_abs_error:.0f} | {n.median_relative_error_pct:.3f} % |")
    lines += ["", "| difference check k | legitimate queries | of them checked | refused |", "|---|---|---|---|"]
    for r in u.refusals:
        lines.append(f"| {r.k} | {r.queries} | {r.checked} | {r.refused} |")
    return "\n".join(lines) + "\n"


def ints(text: str) -> list[int]:
    return sorted({int(s.replace("_", "")) for s in text.split(",") if s})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.privacy", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="rows per set for the difference check, comma-separated")
    ap.add_argument("--kept", default=DEFAULT_KEPT, help="sets already kept, comma-separated")
    ap.add_argument("--max-kept-refs", type=int, default=DEFAULT_MAX_KEPT_REFS)
    ap.add_argument("--queries", type=int, default=1000, help="samples for the noise, budget and set-size timings")
    ap.add_argument("--utility", action="store_true", help="the utility cost on the demo data instead")
    ap.add_argument("--rows", type=int, default=10_000, help="demo rows per dataset (--utility)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path, help="the results as Markdown tables")
    args = ap.parse_args(argv)
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc: dict[str, Any]
    if args.utility:
        u = utility(args.rows)
        console.print(utility_table(u))
        for r in u.refusals:
            console.print(f"difference check at k={r.k}: {r.refused} of {r.queries} refused")
            for f in r.refused_filters:
                console.print(f"  refused: {f}")
        doc, md = {"when": when, "utility": asdict(u)}, utility_markdown(u)
    else:
        o = overhead(ints(args.sizes), ints(args.kept), args.queries, args.max_kept_refs)
        console.print(overhead_table(o))
        doc, md = {"when": when, "privacy_overhead": asdict(o)}, overhead_markdown(o)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    if args.md:
        args.md.write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
