"""The one-dataset kinds' planning recipes, against a recording stand-in for the gateway's planning steps.

Shows which steps each kind takes, in which order and with which ADMIT fields,
without a Planner, a policy or a registry.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fedgate.core.datasets import DatasetDecl, FieldDecl, FieldGrant
from fedgate.core.errors import InvalidInput
from fedgate.core.filters import Filter, parse_checked
from fedgate.core.identity import Identity, Role
from fedgate.query.audit_params import QueryParams
from fedgate.query.kinds.base import AdapterCall, Counted, FilterPlan, RowsDisclosed, Target
from fedgate.query.kinds.count import CountQuery, CountResult
from fedgate.query.kinds.disclose import DiscloseQuery
from fedgate.query.safeguards import Request

ALICE = Identity(Role.SUPERVISOR, "dcb", "alice")
PENSIONS = DatasetDecl("hrss", "pensions", (FieldDecl.build("resident_id", "string", "L4", "resident_id"),
                                            FieldDecl.build("name", "string", "L3"),
                                            FieldDecl.build("district", "string", "L2")))
TARGET = Target("hrss", "127.0.0.1:1", "pensions")


class RecordingSteps:
    """PlanningSteps that allow everything and record each step taken."""

    def __init__(self) -> None:
        self.taken: list[tuple[Any, ...]] = []
        self.caller = ALICE
        self.params = QueryParams()

    async def locate(self, action: str, policy_action: str, dataset: str) -> tuple[Target, DatasetDecl]:
        self.taken.append(("locate", action, policy_action, dataset))
        return TARGET, PENSIONS

    def filter(self, decl: DatasetDecl, text: str) -> tuple[Filter | None, FilterPlan]:
        self.taken.append(("filter", text))
        where = parse_checked(text, decl.field_types)
        return where, FilterPlan(text, b"n" if text else b"")

    def grants(self, decl: DatasetDecl, fields: list[str]) -> tuple[FieldGrant, ...]:
        self.taken.append(("grants", tuple(fields)))
        return tuple(FieldGrant(f, "L2", "plaintext") for f in fields)

    def admit(self, kind: str, limit: int | None = None, grants: tuple[FieldGrant, ...] = (),
              aggregate_levels: tuple[str, ...] = (), on_sets: bool | None = None) -> Request:
        self.taken.append(("admit", kind, limit, len(grants), aggregate_levels))
        self.params.min_set_size = 10
        return Request(ALICE, kind, self.params, limit, bool(grants), aggregate_levels, limit)

    def noise(self, decl: DatasetDecl, aggregate_levels: tuple[str, ...]) -> float:
        return 0.0  # exact answers: the recipes' steps are what is recorded


def test_a_count_aggregates_over_the_levels_of_the_fields_it_filters_on() -> None:
    steps = RecordingSteps()
    plan, _ = asyncio.run(CountQuery("hrss.pensions", "district = 'x'").plan(steps))
    assert steps.taken == [("locate", "query.count", "count", "hrss.pensions"), ("filter", "district = 'x'"),
                           ("admit", "count", None, 0, ("L2",))]
    ask = CountQuery("hrss.pensions").machine(plan, lambda sizes: None).ask()
    assert (ask.call, ask.target, ask.filter.canonical) == (AdapterCall.COUNT_ROWS, TARGET, "district = 'x'")


def test_an_unfiltered_count_touches_no_level() -> None:
    steps = RecordingSteps()
    asyncio.run(CountQuery("hrss.pensions").plan(steps))
    assert steps.taken[-1] == ("admit", "count", None, 0, ())


def test_a_disclosure_takes_grants_before_the_filter_and_admits_its_limit() -> None:
    steps = RecordingSteps()
    query = DiscloseQuery("hrss.pensions", ["name"], "district = 'x'", 7)
    plan, _ = asyncio.run(query.plan(steps))
    assert [s[0] for s in steps.taken] == ["locate", "grants", "filter", "admit"]
    assert steps.taken[0] == ("locate", "query.disclose", "count", "hrss.pensions")
    assert steps.taken[-1] == ("admit", "disclose", 7, 1, ())
    machine = query.machine(plan, lambda sizes: None)
    ask = machine.ask()
    assert (ask.call, ask.min_set_size, ask.limit) == (AdapterCall.DISCLOSE, 10, 7)
    machine.receive(RowsDisclosed(20, [(["a"], [False])] * 2))
    assert machine.released_rows == 2  # what the pump charges to the row quota


def test_a_disclosure_naming_no_field_is_refused_after_the_dataset_is_decided() -> None:
    steps = RecordingSteps()
    with pytest.raises(InvalidInput, match="name at least one field"):
        asyncio.run(DiscloseQuery("hrss.pensions", []).plan(steps))
    assert [s[0] for s in steps.taken] == ["locate"]


def test_a_machine_refuses_the_answer_of_another_call() -> None:
    steps = RecordingSteps()
    plan, _ = asyncio.run(CountQuery("hrss.pensions").plan(steps))
    machine = CountQuery("hrss.pensions").machine(plan, lambda sizes: None)
    machine.ask()
    with pytest.raises(Exception, match="RowsDisclosed answer was fed to a CountMachine"):
        machine.receive(RowsDisclosed(1, []))
    assert machine.receive(Counted(5)) == CountResult(5) and machine.released_rows is None
