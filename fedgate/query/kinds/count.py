"""Count: the live rows of one dataset, optionally filtered; suppressed below the minimum aggregate."""

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
from fedgate.query.safeguards import Request
from fedgate.query.sizes import SizeCheck, Sizes

ACTION = "query.count"


@dataclass(frozen=True)
class CountPlan:
    target: Target
    filter: FilterPlan


class CountMachine(Machine[CountPlan, int]):
    """A count: ask, then check the aggregate (min_aggregate) before the number leaves."""

    def _ask(self) -> DepartmentAsk:
        return DepartmentAsk(AdapterCall.COUNT_ROWS, self.plan.target, self.plan.filter)

    def receive(self, answer: Answer) -> int:
        """The count the caller may learn, or the safeguard's refusal."""
        rows = self._expect(answer, Counted).rows
        self._sizes(Sizes(aggregated_rows=rows))
        return rows


@dataclass(frozen=True)
class CountQuery(Query[CountPlan, int]):
    dataset: str
    filter: str = ""

    async def plan(self, steps: PlanningSteps) -> tuple[CountPlan, Request]:
        target, decl = await steps.locate(ACTION, "count", self.dataset)
        where, plan = steps.filter(decl, self.filter)
        # A count reveals about the fields it filters on: suppress small counts by their highest level.
        levels = tuple(f.level for f in decl.fields if where and f.name in fields_of(where))
        return CountPlan(target, plan), steps.admit("count", aggregate_levels=levels)

    def machine(self, plan: CountPlan, check: SizeCheck) -> CountMachine:
        return CountMachine(plan, check)
