"""Privacy budgets in the registry database: ε spent per (agency, dataset, period), charged before a noisy answer.

One agency's supervisors share one budget (splitting a repeated query among
colleagues must not multiply it). ε is held in integer micro-ε, so a charge is
exact, and taken by one conditional UPDATE, so concurrent queries (other
replicas too) cannot both spend the last of it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from fedgate.core.classification import DpPolicy, Levels
from fedgate.core.errors import BudgetExhausted
from fedgate.query.noise import to_micro

_meta = sa.MetaData()
spent = sa.Table(
    "fedgate_privacy_budget", _meta,
    sa.Column("agency", sa.String(255), primary_key=True),
    sa.Column("dataset", sa.String(255), primary_key=True),
    sa.Column("period", sa.String(10), primary_key=True),   # 2026 | 2026-12 | 2026-12-02
    sa.Column("spent_micro", sa.BigInteger, nullable=False),
    sa.Column("budget_micro", sa.BigInteger, nullable=False),  # the budget of the latest charge's level
)


@dataclass(frozen=True)
class Charge:
    """One noisy answer's cost and what its agency has left of the dataset's budget this period (micro-ε)."""

    epsilon_micro: int
    left_micro: int


@dataclass(frozen=True)
class BudgetUse:
    """One ledger row, as `fedgate budget show` lists it."""

    agency: str
    dataset: str
    period: str
    spent_micro: int
    budget_micro: int


def period_of(period: str, now: dt.datetime) -> tuple[str, dt.date]:
    """The period's name (a ledger key) and the first day of the next one, when the budget is renewed."""
    day = now.astimezone(dt.UTC).date()
    if period == "day":
        return day.isoformat(), day + dt.timedelta(days=1)
    if period == "year":
        return f"{day.year:04d}", dt.date(day.year + 1, 1, 1)
    nxt = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return f"{day.year:04d}-{day.month:02d}", nxt


class BudgetBook:
    """The privacy-budget ledger, in the registry database so replicas and restarts share it."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        _meta.create_all(engine)

    def charge(self, agency: str, dataset: str, policy: DpPolicy, now: dt.datetime | None = None) -> Charge:
        """Spend one noisy answer's ε; BudgetExhausted (a QuotaExceeded), naming when the budget renews, if it would overspend."""
        return self.charge_all(agency, {dataset: policy}, now)

    def charge_all(self, agency: str, policies: dict[str, DpPolicy], now: dt.datetime | None = None) -> Charge:
        """Spend one answer's ε on each dataset it reveals about (each by its own policy), all or none: one
        transaction, so an answer refused by one dataset's budget costs the others nothing. The charge's
        `left_micro` is the least left among them."""
        now = now or dt.datetime.now(dt.UTC)
        lefts, cost = [], 0
        with self._engine.begin() as conn:
            for dataset, policy in sorted(policies.items()):
                period, renews = period_of(policy.period, now)
                cost, budget = to_micro(policy.epsilon), to_micro(policy.budget)
                mine = (spent.c.agency == agency) & (spent.c.dataset == dataset) & (spent.c.period == period)
                insert = (sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert)(spent)
                conn.execute(insert.values(agency=agency, dataset=dataset, period=period, spent_micro=0,
                                           budget_micro=budget)
                             .on_conflict_do_nothing())
                charged = conn.execute(spent.update().where(mine, spent.c.spent_micro + cost <= budget)
                                       .values(spent_micro=spent.c.spent_micro + cost, budget_micro=budget))
                if charged.rowcount != 1:
                    # Raised inside the transaction: the charges made to the other datasets roll back.
                    raise BudgetExhausted(f"privacy budget for dataset {dataset} used up until {renews.isoformat()} "
                                        f"(ε {policy.budget:g} per {policy.period} for each agency; each answer "
                                        f"spends ε {policy.epsilon:g}; levels.toml dp_budget)")
                used = int(conn.execute(sa.select(spent.c.spent_micro).where(mine)).scalar_one())
                lefts.append(max(budget - used, 0))
        return Charge(cost, min(lefts))

    def uses(self, agency: str | None = None) -> list[BudgetUse]:
        """The ledger's rows, newest period first (one agency's, or all of them when None)."""
        query = sa.select(spent).order_by(spent.c.period.desc(), spent.c.agency, spent.c.dataset)
        if agency is not None:
            query = query.where(spent.c.agency == agency)
        with self._engine.connect() as conn:
            return [BudgetUse(r.agency, r.dataset, r.period, int(r.spent_micro), int(r.budget_micro))
                    for r in conn.execute(query)]


@dataclass(frozen=True)
class Privacy:
    """What decides and pays for noisy answers: the levels' (and datasets') DP policies and the ledger."""

    levels: Levels
    book: BudgetBook

    def noisy_policies(self, datasets: list[str], aggregate_levels: tuple[str, ...]) -> dict[str, DpPolicy]:
        """The datasets among `datasets` whose policy makes an aggregate touching these levels noisy."""
        touched = self.levels.highest(list(aggregate_levels))
        level = touched.name if touched else None
        return {d: p for d in dict.fromkeys(datasets) if (p := self.levels.dp_for(d, level)).noisy}

    def epsilon(self, datasets: list[str], aggregate_levels: tuple[str, ...]) -> float | None:
        """The ε an aggregate over `datasets` would be answered with, charging nothing (None: exactly)."""
        noisy = self.noisy_policies(datasets, aggregate_levels)
        return min(p.epsilon for p in noisy.values()) if noisy else None

    def charge(self, agency: str, datasets: list[str], aggregate_levels: tuple[str, ...]) -> Charge | None:
        """Charge an aggregate over `datasets` touching `aggregate_levels`; None when every dataset's policy
        answers it exactly. Noisy for one is noisy for all: the answer takes the smallest ε among the noisy
        datasets' policies (the most noise) and spends that ε on each of them."""
        noisy = self.noisy_policies(datasets, aggregate_levels)
        if not noisy:
            return None
        epsilon = min(p.epsilon for p in noisy.values())
        return self.book.charge_all(agency, {d: dataclasses.replace(p, epsilon=epsilon) for d, p in noisy.items()})
