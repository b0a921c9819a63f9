"""Count and disclosure as plans and state machines, driven without any server.

The planner runs with the shipped policy and levels, an in-memory registry and
quota ledger; the machines get the department's answers by hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fedgate.core.classification import default_levels, policies_dir
from fedgate.core.datasets import DatasetDecl, FieldDecl, FieldGrant
from fedgate.core.errors import FailedPrecondition, InvalidInput, LocalProtocolError, QuotaExceeded, RemoteProtocolError
from fedgate.gateway.planning import Decisions, Planner, Purpose, logged_params
from fedgate.core.errors import PolicyDenied
from fedgate.gateway.policy import Policy
from fedgate.gateway.registry_store import Department
from fedgate.core.identity import Identity, Role
from fedgate.server.interceptors import RequestRecord
from fedgate.query.audit_params import decode
from fedgate.query.kinds.base import Counted, FilterPlan, RowsDisclosed, State, Target
from fedgate.query.kinds.count import CountMachine, CountPlan, CountQuery, CountResult
from fedgate.query.kinds.disclose import DiscloseMachine, DisclosePlan, DiscloseQuery
from fedgate.query.safeguards import Quota, Release, SafeguardConfig, Safeguards
from fedgate.query.sizes import Sizes

ALICE = Identity(Role.SUPERVISOR, "dcb", "alice")
WHY = Purpose("核查", "DC-2026-001")
PENSIONS = DatasetDecl("hrss", "pensions", (FieldDecl.build("resident_id", "string", "L4", "resident_id"),
                                            FieldDecl.build("name", "string", "L3"),
                                            FieldDecl.build("district", "string", "L2")))
TARGET = Target("hrss", "127.0.0.1:1", "pensions")


class Registry:
    async def locate(self, dataset: str) -> tuple[Department, DatasetDecl]:
        assert dataset == "hrss.pensions"
        return Department("hrss", "人社局", TARGET.endpoint), PENSIONS


class Ledger:
    def __init__(self, queries: int = 10, rows: int = 1000, used_rows: int = 0) -> None:
        self.quota, self.queries, self.rows = Quota(queries, rows), 0, used_rows

    def charge_query(self, who: Identity) -> int | None:
        if self.queries >= self.quota.queries_per_day:
            raise QuotaExceeded("daily query quota used up (rule: quotas.supervisor.queries_per_day)")
        self.queries += 1
        return max(self.quota.disclosed_rows_per_day - self.rows, 0)

    def charge_rows(self, who: Identity, count: int) -> None:
        self.rows += count


def _decisions(ledger: Ledger) -> Decisions:
    levels = default_levels()
    safeguards = Safeguards.for_gateway(SafeguardConfig(min_set_size=10), levels, ledger)
    return Decisions(Policy.from_dir(policies_dir(), levels), safeguards, ledger)


def _plan(kind: str, ledger: Ledger | None = None, **kw: Any) -> tuple[Any, Any, RequestRecord, Decisions]:
    """Plan a count or disclosure as the engine does; the record gets the params even on a refusal."""
    decisions = _decisions(ledger or Ledger())
    planner = Planner(decisions, Registry())  # type: ignore[arg-type]
    record = RequestRecord("/fedgate.v1.QueryService/X", ALICE)

    async def plan() -> Any:
        with logged_params(record) as params:
            steps = planner.steps(ALICE, record, params, WHY)
            if kind == "count":
                return await CountQuery("hrss.pensions", kw.get("filter", "")).plan(steps)
            return await DiscloseQuery("hrss.pensions", kw.get("fields", ["district"]), kw.get("filter", ""),
                                       kw.get("limit", 100)).plan(steps)

    plan, admitted = asyncio.run(plan())
    return plan, admitted, record, decisions


# --- count ---

def test_count_happy_path() -> None:
    plan, admitted, record, decisions = _plan("count", filter="district = '西湖区'")
    assert isinstance(plan, CountPlan) and plan.target == TARGET and plan.filter.canonical
    assert "'西湖区'" not in str(record.params)  # logged with its value blanked
    assert decode(record.params).min_aggregate == 3  # the filter touches an L2 field
    machine = CountMachine(plan, decisions.safeguards.size_check(admitted))
    ask = machine.ask()
    assert (ask.target, ask.filter, machine.state) == (TARGET, plan.filter, State.ASKING)
    assert machine.receive(Counted(42, total_rows=500)) == CountResult(42) and machine.state is State.DONE


@pytest.mark.parametrize("rows", [2, 1, 0])
def test_a_small_or_zero_count_is_answered_only_as_fewer_than_k(rows: int) -> None:
    plan, admitted, _, decisions = _plan("count", filter="district = '西湖区'")
    machine = CountMachine(plan, decisions.safeguards.size_check(admitted))
    machine.ask()
    # The same answer for 0 as for 2: a name's absence is not told apart from its presence.
    assert machine.receive(Counted(rows, total_rows=500)) == CountResult(0, fewer_than=3)
    assert machine.state is State.DONE
    with pytest.raises(LocalProtocolError):
        machine.receive(Counted(200, total_rows=500))


def test_a_count_whose_filter_leaves_out_fewer_than_k_rows_is_refused() -> None:
    plan, admitted, _, decisions = _plan("count", filter="district = '西湖区'")
    machine = CountMachine(plan, decisions.safeguards.size_check(admitted))
    machine.ask()
    with pytest.raises(FailedPrecondition, match="leaves out fewer than 3 rows"):
        machine.receive(Counted(499, total_rows=500))
    assert machine.state is State.REFUSED


def test_events_out_of_turn_are_refused_and_leave_the_state() -> None:
    machine = CountMachine(CountPlan(TARGET, FilterPlan()), lambda sizes: None)
    with pytest.raises(LocalProtocolError, match="cannot receive in state planned"):
        machine.receive(Counted(1))
    assert machine.state is State.PLANNED
    machine.ask()
    with pytest.raises(LocalProtocolError, match="cannot ask in state asking"):
        machine.ask()
    assert machine.state is State.ASKING


def test_a_count_filtering_on_an_l4_field_is_refused_at_planning() -> None:
    with pytest.raises(PolicyDenied):
        _plan("count", filter="resident_id = '1'")


def test_a_count_over_the_query_quota_is_refused() -> None:
    with pytest.raises(QuotaExceeded, match="queries_per_day"):
        _plan("count", Ledger(queries=0))


# --- disclose ---

def test_disclose_happy_path() -> None:
    plan, admitted, record, decisions = _plan("disclose", fields=["name", "district"], limit=5)
    assert isinstance(plan, DisclosePlan)
    assert [(g.name, g.form) for g in plan.grants] == [("name", "masked"), ("district", "plaintext")]
    assert (plan.min_set_size, plan.limit, plan.limit_requested) == (10, 5, 5)
    assert record.fields == ["hrss.pensions.name", "hrss.pensions.district"]
    machine = DiscloseMachine(plan, decisions.safeguards.size_check(admitted))
    ask = machine.ask()
    assert (ask.grants, ask.min_set_size, ask.limit) == (plan.grants, 10, 5)
    rows = [(["张*", "西湖区"], [False, False])] * 5
    result = machine.receive(RowsDisclosed(120, rows))
    assert result.rows == rows and result.matched == 120
    assert (result.row_limit.limited_by, result.row_limit.available) == ("limit", 120)


def test_the_row_quota_lowers_the_limit_and_is_named_when_it_cuts() -> None:
    ledger = Ledger(rows=30, used_rows=27)
    plan, admitted, record, decisions = _plan("disclose", ledger, limit=10)
    assert (plan.limit, plan.limit_requested) == (3, 10)
    assert (record.params["limit"], record.params["limit_requested"]) == ("3", "10")
    machine = DiscloseMachine(plan, decisions.safeguards.size_check(admitted))
    machine.ask()
    result = machine.receive(RowsDisclosed(50, [(["西湖区"], [False])] * 3))
    assert result.row_limit.limited_by == "quotas.supervisor.disclosed_rows_per_day"
    decisions.safeguards.release(Release(admitted.params, rows=3, caller=ALICE))
    assert ledger.rows == 30


def test_a_disclosure_with_the_row_quota_exhausted_is_refused() -> None:
    with pytest.raises(QuotaExceeded, match="disclosed-row quota used up"):
        _plan("disclose", Ledger(rows=30, used_rows=30))


@pytest.mark.parametrize("limit", [0, -3, 10_001])
def test_a_disclosure_with_a_bad_limit_is_refused(limit: int) -> None:
    ledger = Ledger()
    with pytest.raises(InvalidInput, match="limit must be between 1 and 10000"):
        _plan("disclose", ledger, limit=limit)
    assert ledger.queries == 0  # refused before the quota is charged


@pytest.mark.parametrize("fields, error, words", [
    ([], InvalidInput, "name at least one field"),
    (["district", "district"], InvalidInput, "name each field to disclose once"),
    (["salary"], InvalidInput, "has no field 'salary'"),
    (["resident_id"], PolicyDenied, "only inside a count, sum or flag"),
], ids=["no-fields", "twice", "unknown", "l4"])
def test_a_disclosure_of_fields_that_may_not_leave_is_refused(fields: list[str], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        _plan("disclose", fields=fields)


def test_a_refused_plan_still_logs_what_it_had_decided() -> None:
    decisions = _decisions(Ledger(rows=30, used_rows=30))
    record = RequestRecord("/m", ALICE)

    async def plan() -> None:
        with logged_params(record) as params:
            steps = Planner(decisions, Registry()).steps(ALICE, record, params, WHY)  # type: ignore[arg-type]
            await DiscloseQuery("hrss.pensions", ["name"], "district = '上城区'", 10).plan(steps)

    with pytest.raises(QuotaExceeded):
        asyncio.run(plan())
    assert record.params["filter.hrss.pensions"] == "district = ?"
    assert record.params["form.hrss.pensions.name"] == "masked"


def test_a_small_filtered_set_answered_with_rows_is_refused_at_the_gateway() -> None:
    plan, admitted, _, decisions = _plan("disclose")
    machine = DiscloseMachine(plan, decisions.safeguards.size_check(admitted))
    machine.ask()
    with pytest.raises(FailedPrecondition, match="fewer than 10 rows after its filter"):
        machine.receive(RowsDisclosed(3, [(["西湖区"], [False])]))
    assert machine.state is State.REFUSED


def test_more_rows_than_asked_for_is_a_protocol_error() -> None:
    plan = DisclosePlan(TARGET, (FieldGrant("district", "L2", "plaintext"),), FilterPlan(), 10, 2, 2, "q")
    machine = DiscloseMachine(plan, lambda sizes: None)
    machine.ask()
    with pytest.raises(RemoteProtocolError, match="more rows than asked for"):
        machine.receive(RowsDisclosed(100, [(["a"], [False])] * 3))
    assert machine.state is State.REFUSED


def test_the_sizes_check_gets_the_answers_sizes() -> None:
    seen: list[Sizes] = []
    machine = CountMachine(CountPlan(TARGET, FilterPlan()), seen.append)
    machine.ask()
    machine.receive(Counted(7))
    plan = DisclosePlan(TARGET, (), FilterPlan(), 10, 5, 5, "q")
    disclose = DiscloseMachine(plan, seen.append)
    disclose.ask()
    disclose.receive(RowsDisclosed(40, []))
    assert seen == [Sizes(aggregated_rows=7), Sizes(set_rows={"filtered": 40})]
