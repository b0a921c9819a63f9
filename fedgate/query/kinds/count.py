"""Count: the live rows of one dataset, optionally filtered; "fewer than k" below the minimum aggregate (zero
included), refused when the filter leaves out fewer than k rows."""

from __future__ import annotations

from dataclasses import dataclass

from fedgate.core.filters import fields_of
from fedgate.query.kinds.base import (
    AdapterCall,
    Answer,
    Counted,
    DepartmentAsk,
    FilterPlan,
    Machine,
    PlanningSteps,
    Query,
    Target,
)
from fedgate.query.noise import noisy_count
from fedgate.query.safeguards import Request
from fedgate.query.sizes import SizeCheck, Sizes

ACTION = "query.count"


@dataclass(frozen=True)
class CountPlan:
    target: Target
    filter: FilterPlan
    epsilon: float = 0.0  # > 0: the count is answered with noise of this ε (levels.toml dp); 0.0: exactly


@dataclass(frozen=True)
class CountResult:
    """What the caller learns: the count, or only that it is below `fewer_than` (then `rows` is 0)."""

    rows: int
    fewer_than: int = 0
    epsilon: float = 0.0  # > 0: `rows` is noisy, ε-differentially private; 0.0: exact


class CountMachine(Machine[CountPlan, CountResult]):
    """A count: ask, then check the aggregate (min_aggregate, both ways) before the number leaves."""

    def _ask(self) -> DepartmentAsk:
        return DepartmentAsk(AdapterCall.COUNT_ROWS, self.plan.target, self.plan.filter)

    def receive(self, answer: Answer) -> CountResult:
        """The count the caller may learn, "fewer than k", or the safeguard's refusal."""
        got = self._expect(answer, Counted)
        # An unfiltered count is the whole dataset, whose size is public: no complement to check.
        totals = {"filtered": got.total_rows} if self.plan.filter.canonical else {}
        suppressed = self._sizes(Sizes(aggregated_rows=got.rows, total_rows=totals))
        if suppressed:
            return CountResult(0, suppressed.below)
        # The noise is drawn here, at the gateway, after the safeguards saw the exact count: only the
        # gateway (which holds the exact count anyway) ever sees it un-noised.
        eps = self.plan.epsilon
        return CountResult(noisy_count(got.rows, eps), epsilon=eps) if eps > 0 else CountResult(got.rows)


@dataclass(frozen=True)
class CountQuery(Query[CountPlan, CountResult]):
    dataset: str
    filter: str = ""

    async def plan(self, steps: PlanningSteps) -> tuple[CountPlan, Request]:
        target, decl = await steps.locate(ACTION, "count", self.dataset)
        where, plan = steps.filter(decl, self.filter)
        # A count reveals about the fields it filters on: suppress small counts by their highest level.
        levels = tuple(f.level for f in decl.fields if where and f.name in fields_of(where))
        admitted = steps.admit("count", aggregate_levels=levels)
        return CountPlan(target, plan, steps.noise(decl, levels)), admitted

    def machine(self, plan: CountPlan, check: SizeCheck) -> CountMachine:
        return CountMachine(plan, check)
