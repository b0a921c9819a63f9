"""What a query has learnt of its sets' sizes: the input of the safeguards that run once sizes are known."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sizes:
    """Set sizes as the sizes-phase safeguards see them.

    ``set_rows`` holds each side's rows after its filter ("left"/"right" in a
    match, sum or comparison; empty where no set size is checked), and
    ``aggregated_rows`` the rows an aggregate covers (a count's rows, a sum's
    matched rows; None where no aggregate is answered).
    """

    set_rows: Mapping[str, int] = field(default_factory=dict)
    aggregated_rows: int | None = None


# Raises a domain error (FailedPrecondition) when a safeguard refuses the sizes.
SizeCheck = Callable[[Sizes], None]
