"""Noise for counts (OpenDP's discrete Laplace), the per-level DP policy and the privacy-budget ledger."""

from __future__ import annotations

import datetime as dt
import statistics
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import support
from fedgate.core.classification import DpPolicy, Levels, default_levels, policies_dir
from fedgate.core.errors import ConfigError, QuotaExceeded
from fedgate.gateway.budget import BudgetBook, period_of
from fedgate.gateway.registry_store import make_engine
from fedgate.query.noise import count_scale, noisy_count, to_micro

POLICY = DpPolicy("noisy", epsilon=0.25, budget=1.0, period="month")
NOW = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)


def test_the_scale_is_one_over_epsilon_for_a_count() -> None:
    assert count_scale(0.5) == 2.0
    assert count_scale(0.1) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        count_scale(0.0)


def test_noisy_counts_are_integers_centred_on_the_truth_with_the_scale_of_epsilon() -> None:
    draws = [noisy_count(1000, 0.5) for _ in range(4000)]
    assert all(isinstance(d, int) for d in draws)
    assert len(set(draws)) > 5                       # noise was added
    assert abs(statistics.mean(draws) - 1000) < 0.3  # unbiased (σ of the mean ≈ 0.045)
    # Discrete Laplace of scale 2: variance close to 2·scale² = 8.
    assert 6.0 < statistics.pvariance(draws) < 10.0


def test_a_noisy_count_is_never_negative() -> None:
    assert min(noisy_count(0, 0.1) for _ in range(500)) == 0


def test_shipped_levels_answer_public_data_exactly_and_the_rest_with_a_budget() -> None:
    levels = default_levels()
    assert not levels.dp_for("hrss.pensions", "L1").noisy
    assert not levels.dp_for("hrss.pensions", None).noisy  # an unfiltered count: the dataset's public size
    for name in ("L2", "L3", "L4"):
        policy = levels.dp_for("hrss.pensions", name)
        assert policy.noisy and 0 < policy.epsilon <= policy.budget


def _levels_with(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "levels.toml"
    path.write_text((policies_dir() / "levels.toml").read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


def test_a_dataset_overrides_its_levels_dp_keys(tmp_path: Path) -> None:
    levels = Levels.from_file(_levels_with(tmp_path, '\n[datasets."hrss.pensions"]\ndp_epsilon = 0.05\n'))
    assert levels.dp_for("hrss.pensions", "L2").epsilon == 0.05
    assert levels.dp_for("hrss.pensions", "L2").budget == 2.0   # the level's, not overridden
    assert levels.dp_for("hrss.other", "L2").epsilon == 0.5


def test_an_override_that_makes_no_sense_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dp_epsilon <= dp_budget"):
        Levels.from_file(_levels_with(tmp_path, '\n[datasets."hrss.pensions"]\ndp = "noisy"\n'))


def test_the_tests_policy_copy_is_exact(tmp_path: Path) -> None:
    import shutil
    shutil.copytree(policies_dir(), tmp_path / "p", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    levels = Levels.from_file(support.with_test_rules(tmp_path / "p") / "levels.toml")
    assert not any(lv.dp.noisy for lv in levels.levels)


def test_periods_and_when_they_renew() -> None:
    assert period_of("month", NOW) == ("2026-12", dt.date(2027, 1, 1))
    assert period_of("day", NOW) == ("2026-12-02", dt.date(2026, 12, 3))
    assert period_of("year", NOW) == ("2026", dt.date(2027, 1, 1))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        with support.private_pg_schema("fg_budget") as pg:
            yield pg


def test_the_ledger_spends_exactly_the_budget_then_refuses_until_the_next_period(url: str) -> None:
    book = BudgetBook(make_engine(url))
    lefts = [book.charge("audit-office", "hrss.pensions", POLICY, NOW).left_micro for _ in range(4)]
    assert lefts == [750_000, 500_000, 250_000, 0]
    with pytest.raises(QuotaExceeded, match="privacy budget for dataset hrss.pensions used up until 2027-01-01"):
        book.charge("audit-office", "hrss.pensions", POLICY, NOW)
    # Another agency, another dataset and the next month each have their own budget.
    assert book.charge("tax-office", "hrss.pensions", POLICY, NOW).left_micro == 750_000
    assert book.charge("audit-office", "hrss.other", POLICY, NOW).left_micro == 750_000
    assert book.charge("audit-office", "hrss.pensions", POLICY, NOW + dt.timedelta(days=30)).left_micro == 750_000
    uses = {(u.agency, u.dataset, u.period): u.spent_micro for u in book.uses("audit-office")}
    assert uses[("audit-office", "hrss.pensions", "2026-12")] == to_micro(1.0)


def test_concurrent_charges_through_two_replicas_never_overspend(url: str) -> None:
    replicas = [BudgetBook(make_engine(url)) for _ in range(2)]
    granted: list[int] = []
    refused: list[Exception] = []
    start = threading.Barrier(8)

    def supervisor(book: BudgetBook) -> None:
        start.wait()
        for _ in range(5):  # 40 attempts against a budget of 4 answers
            try:
                granted.append(book.charge("audit-office", "hrss.pensions", POLICY, NOW).left_micro)
            except QuotaExceeded as exc:
                refused.append(exc)

    threads = [threading.Thread(target=supervisor, args=(replicas[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(granted) == [0, 250_000, 500_000, 750_000]
    assert len(refused) == 36
