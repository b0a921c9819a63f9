"""Issue 14 (1): set sizes both ways, 0 answered like 1, comparison pairs, weights from policy."""

from __future__ import annotations

from pathlib import Path
import shutil

import pytest

from fedgate.core.classification import default_levels, policies_dir
from fedgate.core.errors import ConfigError, FailedPrecondition
from fedgate.core.identity import Identity, Role
from fedgate.core.errors import PolicyDenied
from fedgate.gateway.policy import Policy
from fedgate.query.audit_params import QueryParams
from fedgate.query.safeguards import MinAggregate, MinSetSize, Release, Request
from fedgate.query.sizes import Sizes, Suppressed

ALICE = Identity(Role.SUPERVISOR, "dcb", "alice")


def _admitted(check: MinSetSize | MinAggregate, kind: str, levels: tuple[str, ...] = ()) -> Request:
    request = Request(ALICE, kind, QueryParams(), aggregate_levels=levels)
    check.admit(request)
    return request


# --- min_set_size both ways ---

@pytest.mark.parametrize("left_out", [0, 1, 99])
def test_a_filter_leaving_out_fewer_than_the_minimum_is_refused(left_out: int) -> None:
    check = MinSetSize(100)
    request = _admitted(check, "match")
    with pytest.raises(FailedPrecondition, match="left filter leaves out fewer than 100 rows"):
        check.sizes(request, Sizes(set_rows={"left": 1000 - left_out, "right": 500}, total_rows={"left": 1000}))


def test_a_filter_leaving_out_enough_rows_and_an_unfiltered_side_pass() -> None:
    check = MinSetSize(100)
    request = _admitted(check, "sum")
    # right is unfiltered (no total given): its set is the whole dataset, whose size is public.
    check.sizes(request, Sizes(set_rows={"left": 900, "right": 500}, total_rows={"left": 1000}))


@pytest.mark.parametrize("rows", [0, 1])
def test_an_empty_side_is_refused_exactly_like_a_side_of_one(rows: int) -> None:
    check = MinSetSize(100)
    request = _admitted(check, "match")
    with pytest.raises(FailedPrecondition) as err:
        check.sizes(request, Sizes(set_rows={"left": rows, "right": 500}))
    assert str(err.value) == "the left set has fewer than 100 rows after its filter (safeguard min_set_size): no result"


def test_a_department_refuses_at_release_a_filter_leaving_out_too_few_rows() -> None:
    params = QueryParams(min_set_size=100)
    MinSetSize().release(Release(params, set_rows=500, total_rows=1000))
    MinSetSize().release(Release(params, set_rows=1000))  # unfiltered: no total, nothing left out to protect
    with pytest.raises(FailedPrecondition, match="leaves out fewer than 100 rows"):
        MinSetSize().release(Release(params, set_rows=999, total_rows=1000))


# --- min_aggregate: counts both ways, 0 like 1, matches, pairs ---

def test_a_count_below_k_is_suppressed_the_same_for_zero_and_k_minus_one() -> None:
    check = MinAggregate(default_levels())
    request = _admitted(check, "count", ("L3",))
    answers = []
    for rows in (0, 1, 4):
        with pytest.raises(Suppressed) as err:
            check.sizes(request, Sizes(aggregated_rows=rows, total_rows={"filtered": 1000}))
        answers.append((err.value.below, str(err.value)))
    assert len(set(answers)) == 1 and answers[0][0] == 5


@pytest.mark.parametrize("rows", [1000, 999, 996])
def test_a_complement_count_below_k_is_refused(rows: int) -> None:
    check = MinAggregate(default_levels())
    request = _admitted(check, "count", ("L3",))
    with pytest.raises(FailedPrecondition, match="leaves out fewer than 5 rows") as err:
        check.sizes(request, Sizes(aggregated_rows=rows, total_rows={"filtered": 1000}))
    assert not isinstance(err.value, Suppressed)
    check.sizes(request, Sizes(aggregated_rows=995, total_rows={"filtered": 1000}))


def test_a_match_cardinality_below_k_is_suppressed() -> None:
    check = MinAggregate(default_levels())
    request = _admitted(check, "match", ("L4", "L3"))
    assert request.params.min_aggregate == 10
    with pytest.raises(Suppressed, match="match suppressed: fewer than 10 matched rows"):
        check.sizes(request, Sizes(set_rows={"left": 500, "right": 500}, aggregated_rows=0))
    check.sizes(request, Sizes(aggregated_rows=10))


@pytest.mark.parametrize("pairs", [0, 1, 4])
def test_a_comparison_over_too_few_pairs_is_refused(pairs: int) -> None:
    check = MinAggregate(default_levels())
    request = _admitted(check, "compare", ("L3", "L3"))
    with pytest.raises(FailedPrecondition, match="comparison refused: fewer than 5 matched pairs") as err:
        check.sizes(request, Sizes(pairs=pairs))
    assert not isinstance(err.value, Suppressed)  # refused, not answered "fewer than": nothing is compared
    check.sizes(request, Sizes(pairs=5))


# --- weights from policy ---

def _policy(tmp_path: Path, rules: str) -> Policy:
    directory = tmp_path / "p"
    shutil.copytree(policies_dir(), directory, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    with (directory / "policy.csv").open("a", encoding="utf-8") as f:
        f.write(rules)
    return Policy.from_dir(directory, default_levels())


PAIR = "hrss.subsidies.claimed_insured>tax.insured_employees.insured_employees"


def test_only_listed_weights_for_the_named_field_pair_are_allowed(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "")
    assert policy.decide_for(ALICE, PAIR, "compare.weights", "1:1").allowed
    assert policy.decide_for(ALICE, PAIR, "compare.weights", "1:2").allowed
    for weights in ("5:6", "3:2", "1:3"):
        decision = policy.decide_for(ALICE, PAIR, "compare.weights", weights)
        assert not decision.allowed
        with pytest.raises(PolicyDenied):
            decision.require()
    # Another pair has no rule: no weights at all.
    assert not policy.decide_for(ALICE, "hrss.pensions.monthly_amount_fen>civil.allowances.monthly_amount_fen",
                                 "compare.weights", "1:1").allowed


@pytest.mark.parametrize("cell", ["*", "2:4", "0:1", "1:x", ""])
def test_a_weights_rule_must_list_weights_in_lowest_terms(tmp_path: Path, cell: str) -> None:
    with pytest.raises(ConfigError, match="compare.weights|weights"):
        _policy(tmp_path, f"p, supervisor, *, {PAIR}, compare.weights, {cell}\n")


def test_a_weights_rule_names_a_field_pair(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="field pair"):
        _policy(tmp_path, "p, supervisor, *, hrss.subsidies.claimed_insured, compare.weights, 1:1\n")
