"""What a query has learnt of its sets' sizes: the input of the safeguards that run once sizes are known."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fedgate.core.errors import FailedPrecondition


@dataclass(frozen=True)
class Sizes:
    """Set sizes as the sizes-phase safeguards see them.

    ``set_rows`` holds each side's rows after its filter ("left"/"right" in a
    match, sum or comparison; empty where no set size is checked), and
    ``aggregated_rows`` the rows an aggregate covers (a count's rows, a sum's
    or match's matched rows; None where no aggregate is answered).
    ``total_rows`` holds, for each FILTERED set (a side's name, or "filtered"
    for a one-dataset query), its dataset's live rows as the department
    reported them, so the rows the filter leaves out are checked too; an
    unfiltered set is its whole dataset, whose size is public, and is absent.
    ``pairs`` is a comparison's matched pairs (None elsewhere).
    """

    set_rows: Mapping[str, int] = field(default_factory=dict)
    aggregated_rows: int | None = None
    total_rows: Mapping[str, int] = field(default_factory=dict)
    pairs: int | None = None


class Suppressed(FailedPrecondition):
    """An aggregate below its threshold: answered as "fewer than `below`", never as its exact value (0 included)."""

    def __init__(self, below: int, message: str) -> None:
        super().__init__(message)
        self.below = below


# Raises a domain error (FailedPrecondition; Suppressed for an aggregate answered as "fewer than k") when a
# safeguard refuses the sizes.
SizeCheck = Callable[[Sizes], None]
