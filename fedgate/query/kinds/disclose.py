"""Disclosure: fields of one dataset's filtered rows, in the form policy allows; refused below min_set_size."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedgate.core.datasets import FieldGrant
from fedgate.core.errors import InvalidInput, RemoteProtocolError
from fedgate.query.kinds.base import (
    AdapterCall,
    Answer,
    DepartmentAsk,
    FilterPlan,
    Machine,
    PlanningSteps,
    Query,
    RowsDisclosed,
    State,
    Target,
)
from fedgate.query.safeguards import Request
from fedgate.query.sizes import SizeCheck, Sizes
from fedgate.core.row_limit import RowLimit, quota_rule

ACTION = "query.disclose"


@dataclass(frozen=True)
class DisclosePlan:
    target: Target
    grants: tuple[FieldGrant, ...]
    filter: FilterPlan
    min_set_size: int
    limit: int             # after the safeguards
    limit_requested: int
    quota_rule: str        # the safeguard that lowers the limit, named when it cut the answer


@dataclass(frozen=True)
class Disclosure:
    grants: tuple[FieldGrant, ...]
    rows: list[tuple[list[str], list[bool]]]
    matched: int
    row_limit: RowLimit


class DiscloseMachine(Machine[DisclosePlan, Disclosure]):
    """A disclosure: ask, then check the filtered set's size before the rows leave."""

    def _ask(self) -> DepartmentAsk:
        p = self.plan
        return DepartmentAsk(AdapterCall.DISCLOSE, p.target, p.filter, p.grants, p.min_set_size, p.limit)

    def receive(self, answer: Answer) -> Disclosure:
        """The rows and what cut them short, or the safeguard's refusal."""
        got, p = self._expect(answer, RowsDisclosed), self.plan
        if len(got.rows) > p.limit or len(got.rows) > got.matched:
            self.state = State.REFUSED
            raise RemoteProtocolError(f"department '{p.target.department}' returned more rows than asked for "
                                      "or matched")
        # The rows the filter leaves out are checked by the department itself, before any row is read
        # (MinSetSize.release with its dataset's live rows).
        self._sizes(Sizes(set_rows={"filtered": got.matched}))
        self.released_rows = len(got.rows)
        return Disclosure(p.grants, got.rows, got.matched,
                          RowLimit.of(got.matched, len(got.rows), p.limit_requested, p.limit, p.quota_rule))


@dataclass(frozen=True)
class DiscloseQuery(Query[DisclosePlan, Disclosure]):
    dataset: str
    fields: list[str] = field(default_factory=list)
    filter: str = ""
    limit: int = 100

    async def plan(self, steps: PlanningSteps) -> tuple[DisclosePlan, Request]:
        target, decl = await steps.locate(ACTION, "count", self.dataset)
        if not self.fields:
            raise InvalidInput("name at least one field to disclose")
        grants = steps.grants(decl, self.fields)
        _, plan = steps.filter(decl, self.filter)
        admitted = steps.admit("disclose", self.limit, grants)
        assert admitted.limit is not None and steps.params.min_set_size is not None  # set by the ADMIT safeguards
        return DisclosePlan(target, grants, plan, steps.params.min_set_size, admitted.limit, self.limit,
                            quota_rule(steps.caller.role.value)), admitted

    def machine(self, plan: DisclosePlan, check: SizeCheck) -> DiscloseMachine:
        return DiscloseMachine(plan, check)
