"""Count and disclosure of one dataset: typed plans and the small state machines that run them.

A machine never touches the network: `ask()` gives the request for the
department, the caller (the gateway's engine, the pump) obtains the answer
with a ticket and feeds it to `receive(...)`, which runs the SIZES safeguards
and gives the result. The transitions are the table below; an event out of
turn raises LocalProtocolError and leaves the state as it was, and a refused
answer leaves the machine REFUSED for good.

    PLANNED --ask--> ASKING --receive--> DONE
                            \\--refused--> REFUSED
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fedgate.datasets import FieldGrant
from fedgate.errors import LocalProtocolError, RemoteProtocolError
from fedgate.query.sizes import SizeCheck, Sizes
from fedgate.row_limit import RowLimit


class State(enum.Enum):
    PLANNED = "planned"
    ASKING = "asking"
    DONE = "done"
    REFUSED = "refused"


_TRANSITIONS = {(State.PLANNED, "ask"): State.ASKING, (State.ASKING, "receive"): State.DONE}


@dataclass(frozen=True)
class Target:
    """The department asked and its dataset (its own, unqualified name)."""

    department: str
    endpoint: str
    dataset: str


@dataclass(frozen=True)
class FilterPlan:
    """The exact filter the department runs and the nonce its logged digest is salted with ("" : none)."""

    canonical: str = ""
    nonce: bytes = b""


@dataclass(frozen=True)
class CountPlan:
    target: Target
    filter: FilterPlan


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
class Counted:
    """The department's answer to a count."""

    rows: int


@dataclass(frozen=True)
class RowsDisclosed:
    """The department's answer to a disclosure: the rows its filter selects and those it returned."""

    matched: int
    rows: list[tuple[list[str], list[bool]]]


@dataclass(frozen=True)
class Disclosure:
    grants: tuple[FieldGrant, ...]
    rows: list[tuple[list[str], list[bool]]]
    matched: int
    row_limit: RowLimit


class _Machine:
    def __init__(self, check: SizeCheck) -> None:
        self.state = State.PLANNED
        self._check = check

    def _move(self, event: str) -> None:
        after = _TRANSITIONS.get((self.state, event))
        if after is None:
            raise LocalProtocolError(f"cannot {event} in state {self.state.value}")
        self.state = after

    def _sizes(self, sizes: Sizes) -> None:
        """The SIZES safeguards on the answer; a refusal is final."""
        self._move("receive")
        try:
            self._check(sizes)
        except BaseException:
            self.state = State.REFUSED
            raise


class CountMachine(_Machine):
    """A count: ask, then check the aggregate (min_aggregate) before the number leaves."""

    def __init__(self, plan: CountPlan, check: SizeCheck) -> None:
        super().__init__(check)
        self.plan = plan

    def ask(self) -> CountPlan:
        """What to ask the department (the pump adds the ticket)."""
        self._move("ask")
        return self.plan

    def receive(self, answer: Counted) -> int:
        """The count the caller may learn, or the safeguard's refusal."""
        self._sizes(Sizes(aggregated_rows=answer.rows))
        return answer.rows


class DiscloseMachine(_Machine):
    """A disclosure: ask, then check the filtered set's size before the rows leave."""

    def __init__(self, plan: DisclosePlan, check: SizeCheck) -> None:
        super().__init__(check)
        self.plan = plan

    def ask(self) -> DisclosePlan:
        """What to ask the department (the pump adds the ticket)."""
        self._move("ask")
        return self.plan

    def receive(self, answer: RowsDisclosed) -> Disclosure:
        """The rows and what cut them short, or the safeguard's refusal."""
        p = self.plan
        if len(answer.rows) > p.limit or len(answer.rows) > answer.matched:
            self.state = State.REFUSED
            raise RemoteProtocolError(f"department '{p.target.department}' returned more rows than asked for "
                                      "or matched")
        self._sizes(Sizes(set_rows={"filtered": answer.matched}))
        return Disclosure(p.grants, answer.rows, answer.matched,
                          RowLimit.of(answer.matched, len(answer.rows), p.limit_requested, p.limit, p.quota_rule))
