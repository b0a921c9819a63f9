"""bench.privacy on tiny sizes: the report's shape, and that the difference check it times really refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import privacy
from fedgate.core.classification import DpPolicy, Level, Levels
from fedgate.core.datasets import DatasetDecl, FieldDecl


def test_overhead_reports_every_check_and_skips_pairs_above_the_cap() -> None:
    o = privacy.overhead([1500], [2, 4], queries=30, max_kept_refs=1500 * 3)
    for s in (o.noise, o.budget, o.set_sizes):
        assert s.n == 30 and 0 < s.median_us <= s.p99_us
    assert o.sum_noise is not None and 0 < o.sum_noise.median_us <= o.sum_noise.p99_us
    measured, skipped = o.difference
    assert (measured.rows, measured.kept) == (1500, 2) and measured.check is not None and measured.refs is not None
    assert measured.check.median_us > 0 and measured.stored_mib is not None
    assert skipped.check is None and skipped.note.startswith("skipped")
    md = privacy.overhead_markdown(o)
    assert "| OpenDP noise draw (count, or a match's cardinality) |" in md and "noisy sum" in md
    assert "1,500 rows against 2 kept sets" in md and "skipped" in md


def test_main_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    assert privacy.main(["--sizes", "1200", "--kept", "1", "--queries", "20", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())["privacy_overhead"]
    assert doc["difference"][0]["rows"] == 1200 and doc["budget"]["n"] == 20


def test_noise_error_shrinks_with_more_epsilon_and_names_the_answers_allowed() -> None:
    levels = Levels((Level("A", "", 1, dp=DpPolicy("noisy", 1.0, 4.0)), Level("B", "", 2, dp=DpPolicy("noisy", 0.1, 0.5)),
                     Level("C", "", 3)))
    a, b = privacy.noise_errors([500, 1000], levels, draws=300)
    assert (a.level, a.answers_per_period, b.answers_per_period) == ("A", 4, 5)
    assert 0 < a.mean_abs_error < b.mean_abs_error and a.p95_abs_error < b.p95_abs_error


class _Source:
    """A one-column source: rows 0..n-1, filtered by a Python predicate on the value."""

    def __init__(self, n: int) -> None:
        self.n = n

    def rows(self, columns: list[str], where: object = None) -> list[tuple[str]]:
        keep = where if callable(where) else (lambda i: True)
        return [(f"R{i}",) for i in range(self.n) if keep(i)]


def test_refusals_counts_a_near_duplicate_and_passes_distinct_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decl = DatasetDecl("d", "t", (FieldDecl.build("id", "string", "L2", "plain"),))
    predicates = {"a": lambda i: i < 300, "b": lambda i: i >= 500, "a2": lambda i: i < 302}
    monkeypatch.setattr(privacy, "parse_checked", lambda text, types: predicates[text])
    source: Any = _Source(1000)
    counts = [(decl, source, t, sum(map(predicates[t], range(1000))), 1000) for t in ("a", "b", "a2")]
    run = privacy.refusals(counts, 5, tmp_path)
    assert (run.queries, run.checked, run.refused) == (3, 3, 1) and run.refused_filters == ["d.t: a2"]


def test_utility_markdown_has_both_tables() -> None:
    noise = privacy.NoiseError("L3", 0.25, 4, "month", 10, 5, 3.9, 12.0, 0.1)
    u = privacy.Utility(10_000, 1, [noise], [privacy.RefusalRun(100, 10, 9, 1, ["d.t: x"])], (5, 2_000, 9_000))
    md = privacy.utility_markdown(u)
    assert "| L3 | 0.25 | 4 per month | 3.90 | 12 | 0.100 % |" in md and "| 100 | 10 | 9 | 1 |" in md
    assert "from 5 to 9,000 rows (median 2,000)" in md
