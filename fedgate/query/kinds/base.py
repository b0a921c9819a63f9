"""What every one-dataset query kind shares: the department asked, the call it is asked through, the answers,
the planning steps a kind's recipe takes, and the state machine every kind runs.

A machine never touches the network: `ask()` gives the request for the
department, the caller (the gateway's engine, the pump) obtains the answer
with a ticket through the call the request names and feeds it to
`receive(...)`, which runs the SIZES safeguards and gives the result. The
transitions are the table below; an event out of turn raises
LocalProtocolError and leaves the state as it was, and a refused answer leaves
the machine REFUSED for good.

    PLANNED --ask--> ASKING --receive--> DONE
                            \\--refused--> REFUSED
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from fedgate.core.datasets import DatasetDecl, FieldGrant
from fedgate.core.errors import LocalProtocolError
from fedgate.core.filters import Filter
from fedgate.core.identity import Identity
from fedgate.query.audit_params import QueryParams
from fedgate.query.safeguards import Request
from fedgate.query.sizes import SizeCheck, Sizes, Suppressed

R = TypeVar("R")
P = TypeVar("P")


class State(enum.Enum):
    PLANNED = "planned"
    ASKING = "asking"
    DONE = "done"
    REFUSED = "refused"


_TRANSITIONS = {(State.PLANNED, "ask"): State.ASKING, (State.ASKING, "receive"): State.DONE}


class AdapterCall(enum.Enum):
    """The department call a one-dataset plan is asked through (the engine dispatches on it in one place)."""

    COUNT_ROWS = "CountRows"
    DISCLOSE = "Disclose"


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
class DepartmentAsk:
    """One request to a department: the call and what it carries (the pump adds the ticket)."""

    call: AdapterCall
    target: Target
    filter: FilterPlan
    grants: tuple[FieldGrant, ...] = ()
    min_set_size: int = 0
    limit: int = 0


@dataclass(frozen=True)
class Counted:
    """The department's answer to CountRows: the rows its filter selects and its dataset's live rows."""

    rows: int
    total_rows: int = 0

    def sizes(self) -> Mapping[str, int]:
        """The sizes the request's record keeps (logged even if a safeguard then refuses)."""
        return {"rows": self.rows}  # N is the department's public size: not logged again


@dataclass(frozen=True)
class RowsDisclosed:
    """The department's answer to Disclose: the rows its filter selects and those it returned."""

    matched: int
    rows: list[tuple[list[str], list[bool]]]

    def sizes(self) -> Mapping[str, int]:
        """The sizes the request's record keeps (logged even if a safeguard then refuses)."""
        return {"matched_rows": self.matched, "disclosed_rows": len(self.rows)}


Answer = Counted | RowsDisclosed
A = TypeVar("A", Counted, RowsDisclosed)


class PlanningSteps(Protocol):
    """The planning steps a kind's recipe takes, for one request (the gateway's Planner implements them).

    Each step refuses (raises the domain error) or adds to the request's record
    and its logged parameters, which go into the pre-access audit entry.
    """

    @property
    def caller(self) -> Identity: ...

    @property
    def params(self) -> QueryParams: ...

    async def locate(self, action: str, policy_action: str, dataset: str) -> tuple[Target, DatasetDecl]:
        """Name the request, find its dataset and decide the policy action on it."""

    def filter(self, decl: DatasetDecl, text: str) -> tuple[Filter | None, FilterPlan]:
        """Parse, type-check and authorise the filter; log it without its values."""

    def grants(self, decl: DatasetDecl, fields: list[str]) -> tuple[FieldGrant, ...]:
        """The form each field may leave in (the record names them), or the refusal."""

    def admit(self, kind: str, limit: int | None = None, grants: tuple[FieldGrant, ...] = (),
              aggregate_levels: tuple[str, ...] = (), on_sets: bool | None = None) -> Request:
        """The ADMIT safeguards (last of planning): row limit, quotas, the values the entry binds
        (`on_sets`: the answer rests on a set of rows, so min_set_size is bound; None: by the kind's name)."""

    def noise(self, decl: DatasetDecl, aggregate_levels: tuple[str, ...]) -> float:
        """After admit: the ε of differential-privacy noise the aggregate gets (0.0: exact), budget charged."""


class Machine(ABC, Generic[P, R]):
    """A one-dataset query's state machine: ask once, receive one answer, give the result or refuse."""

    def __init__(self, plan: P, check: SizeCheck) -> None:
        self.state = State.PLANNED
        self.plan = plan
        self._check = check
        self.released_rows: int | None = None  # rows the result discloses (charged to the daily quota)
        self.suppressed = False  # the answer was below its threshold: the caller learns only "fewer than k"

    def ask(self) -> DepartmentAsk:
        """What to ask the department (the pump adds the ticket)."""
        self._move("ask")
        return self._ask()

    @abstractmethod
    def _ask(self) -> DepartmentAsk: ...

    @abstractmethod
    def receive(self, answer: Answer) -> R:
        """The result the caller may learn, or the safeguard's refusal."""

    def _expect(self, answer: Answer, kind: type[A]) -> A:
        """The answer, if it is the one this machine's call gives."""
        if not isinstance(answer, kind):
            raise LocalProtocolError(f"a {type(answer).__name__} answer was fed to a {type(self).__name__}")
        return answer

    def _move(self, event: str) -> None:
        after = _TRANSITIONS.get((self.state, event))
        if after is None:
            raise LocalProtocolError(f"cannot {event} in state {self.state.value}")
        self.state = after

    def _sizes(self, sizes: Sizes) -> Suppressed | None:
        """The SIZES safeguards on the answer; a refusal is final. An aggregate below its threshold is not a
        refusal: the suppression is returned, for the kind to answer "fewer than k"."""
        self._move("receive")
        try:
            self._check(sizes)
        except Suppressed as suppressed:
            self.suppressed = True
            return suppressed
        except BaseException:
            self.state = State.REFUSED
            raise
        return None


class Query(ABC, Generic[P, R]):
    """A one-dataset query kind's typed query: its recipe gives the plan, the plan runs in its machine."""

    @abstractmethod
    async def plan(self, steps: PlanningSteps) -> tuple[P, Request]:
        """Plan through the steps: the plan and the admitted request (whose SIZES check the machine runs)."""

    @abstractmethod
    def machine(self, plan: P, check: SizeCheck) -> Machine[P, R]:
        """The machine that runs the plan."""
