"""Calibrated noise for aggregates, drawn by OpenDP (a maintained, proven library; no sampler is written here).

A count has sensitivity 1 (one person more or less changes it by at most 1),
so the discrete Laplace mechanism with scale 1/ε makes it ε-differentially
private. A sum of a field declared within [min, max] has sensitivity
max(|min|, |max|) once every value is clamped into the range, and takes scale
sensitivity/ε. ε is carried as an integer number of micro-ε everywhere it is
stored (the budget ledger, the audit entry), so spending is exact arithmetic.
How far a noisy answer may be from the truth comes from OpenDP's accuracy
function for the same distribution.
"""

from __future__ import annotations

from functools import lru_cache

import opendp.prelude as dp
from opendp.accuracy import discrete_laplacian_scale_to_accuracy

COUNT_SENSITIVITY = 1
MICRO = 1_000_000  # micro-ε per ε

# OpenDP's "contrib" features hold mechanisms proven but not yet vetted by its own review; the discrete
# Laplace is among them in 0.16.
dp.enable_features("contrib")


def to_micro(epsilon: float) -> int:
    """ε as whole micro-ε (rounded; the ledger and the log hold integers)."""
    return round(epsilon * MICRO)


def from_micro(micro: int) -> float:
    return micro / MICRO


def count_scale(epsilon: float) -> float:
    """The discrete Laplace scale that makes a count (sensitivity 1) ε-differentially private."""
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    return COUNT_SENSITIVITY / epsilon


@lru_cache(maxsize=32)
def _count_mechanism(epsilon: float) -> dp.Measurement:
    """The OpenDP measurement for one ε; its privacy map is checked to give no more than ε for sensitivity 1."""
    measurement = dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=count_scale(epsilon))
    spent = float(measurement.map(COUNT_SENSITIVITY))  # type: ignore[no-untyped-call]
    if spent > epsilon * (1 + 1e-9):
        raise AssertionError("the count mechanism would spend more than its epsilon")
    return measurement


def noisy_count(true: int, epsilon: float) -> int:
    """The count with discrete Laplace noise of scale 1/ε, clamped at 0 (post-processing: no extra cost)."""
    return max(int(_count_mechanism(epsilon)(true)), 0)


def sum_scale(sensitivity: int, epsilon: float) -> float:
    """The discrete Laplace scale that makes a sum whose rows add at most `sensitivity` each ε-DP."""
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    if sensitivity < 0:
        raise ValueError("sensitivity must not be negative")
    return sensitivity / epsilon


@lru_cache(maxsize=64)
def _sum_mechanism(sensitivity: int, epsilon: float) -> dp.Measurement:
    """The OpenDP measurement for a sum of this sensitivity on 64-bit integers, its privacy map checked."""
    measurement = dp.m.make_laplace(dp.atom_domain(T="i64"), dp.absolute_distance(T="i64"),
                                    scale=sum_scale(sensitivity, epsilon))
    spent = float(measurement.map(sensitivity))  # type: ignore[no-untyped-call]
    if spent > epsilon * (1 + 1e-9):
        raise AssertionError("the sum mechanism would spend more than its epsilon")
    return measurement


def sum_noise(sensitivity: int, epsilon: float) -> int:
    """Noise that makes a sum of this sensitivity ε-DP once added to it (the mechanism applied to 0: the
    department adds it to its encrypted total, which it never sees)."""
    if sensitivity == 0:
        return 0  # every value is clamped to 0: the sum is 0 and says nothing
    return int(_sum_mechanism(sensitivity, epsilon)(0))


def accuracy(scale: float, confidence: float = 0.95) -> int:
    """The error a discrete Laplace answer of this scale stays within, |noisy − true| ≤ result, with at least
    this probability (OpenDP's accuracy; its floor keeps the coverage)."""
    if scale == 0:
        return 0
    return int(discrete_laplacian_scale_to_accuracy(scale, 1.0 - confidence))
