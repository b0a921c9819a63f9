"""Noise for sums: OpenDP's discrete Laplace scaled to a field's declared bounds, drawn at the value department."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedgate.core.datasets import DatasetDecl, FieldDecl
from fedgate.core.errors import InvalidInput
from fedgate.crypto.ticket import TicketRefused
from fedgate.query.audit_params import QueryParams
from fedgate.query.noise import accuracy, count_scale, sum_noise, sum_scale
from fedgate.query.sum_noise import SumNoise, sum_noise_for

DECL = DatasetDecl("hrss", "subsidies", (
    FieldDecl.build("uscc", "string", "L3", "uscc"),
    FieldDecl.build("amount_fen", "int", "L3", bounds=(0, 50_000)),
    FieldDecl.build("employees", "int", "L3", bounds=(-10, 300)),
    FieldDecl.build("other", "int", "L3")))


def test_the_noise_of_a_sum_has_the_scale_of_its_sensitivity_over_epsilon() -> None:
    assert sum_scale(50_000, 0.5) == 100_000
    draws = [sum_noise(1000, 0.5) for _ in range(4000)]
    assert abs(statistics.mean(draws)) < 150                        # centred (σ of the mean ≈ 45)
    assert 6e6 < statistics.pvariance(draws) < 10e6                 # 2·scale² = 8e6
    assert sum_noise(0, 0.5) == 0                                   # every value clamped to 0: nothing to hide


def test_accuracy_covers_the_draws_it_promises() -> None:
    bound = accuracy(count_scale(0.25))                            # 95 %
    draws = [sum_noise(1, 0.25) for _ in range(4000)]
    assert 0.93 < sum(abs(d) <= bound for d in draws) / len(draws)
    assert accuracy(0.0) == 0 and accuracy(4.0, 1 - 1e-9) > accuracy(4.0)


@given(st.lists(st.integers(-10**9, 10**9), min_size=2, max_size=2))
def test_clamping_keeps_each_value_within_its_fields_bounds(values: list[int]) -> None:
    bounds = ((0, 50_000), (-10, 300))
    clamped = SumNoise(bounds, 0.1).clamp(values)
    for v, c, (low, high) in zip(values, clamped, bounds):
        assert low <= c <= high
        assert c == v or (v < low and c == low) or (v > high and c == high)  # only an outlier moves, to its edge


def _logged(bounds: dict[str, tuple[int, int]], epsilon_micro: int | None = 125_000) -> QueryParams:
    params = QueryParams(noise_epsilon_micro=epsilon_micro)
    params.side("hrss.subsidies", "left").bounds = bounds
    return params


def test_the_department_takes_the_logged_bounds_when_they_are_its_own() -> None:
    noise = sum_noise_for(_logged({"amount_fen": (0, 50_000), "employees": (-10, 300)}), "query.sum", DECL, "left",
                          ("employees", "amount_fen"))
    assert noise == SumNoise(((-10, 300), (0, 50_000)), 0.125)
    assert sum_noise_for(_logged({}, None), "query.sum", DECL, "left", ("amount_fen",)) is None  # exact
    assert sum_noise_for(_logged({}), "query.compare", DECL, "left", ("amount_fen",)) is None


@pytest.mark.parametrize("logged,fields", [
    ({"amount_fen": (0, 5_000_000)}, ("amount_fen",)),     # wider than declared: less noise than logged
    ({}, ("amount_fen",)),                                  # none logged
    ({"other": (0, 1)}, ("other",)),                        # the department declares none
], ids=["other-bounds", "none-logged", "none-declared"])
def test_bounds_that_are_not_the_departments_declaration_are_refused(logged: dict[str, tuple[int, int]],
                                                                    fields: tuple[str, ...]) -> None:
    with pytest.raises(TicketRefused, match="logged bounds of field"):
        sum_noise_for(_logged(logged), "query.sum", DECL, "left", fields)


@pytest.mark.parametrize("kwargs,message", [
    ({"type": "string", "bounds": (0, 1)}, "only an integer field"),
    ({"type": "int", "key": "plain", "bounds": (0, 1)}, "only an integer field"),
    ({"type": "int", "bounds": (5, 1)}, "min <= max"),
    ({"type": "int", "bounds": (0, 10**16)}, "min <= max"),
])
def test_declared_bounds_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        FieldDecl.build("f", level="L3", **kwargs)  # type: ignore[arg-type]
