"""A noisy sum at its value department: the logged bounds and ε it must use, checked against its own declaration.

The department draws the noise for each total (``fedgate.query.noise``) and
sends it encrypted under the supervisor's key; the gateway multiplies it into
the total without learning it. Every value is clamped into its field's bounds
first, so one row adds at most the bounds' largest magnitude: the sensitivity
the noise is calibrated to. Both numbers come from the audit entry the
department verified, never from the gateway's request message, and the bounds
must equal the department's own declaration, so the supervisor's view of how
noisy a total is (from the logged numbers) is the noise actually drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedgate.core.datasets import DatasetDecl
from fedgate.crypto.ticket import TicketRefused
from fedgate.query.audit_params import QueryParams
from fedgate.query.noise import from_micro, sum_noise

SUM_ACTION = "query.sum"


@dataclass(frozen=True)
class SumNoise:
    """Each value field's (min, max), in the order the fields are encrypted, and the ε each total gets."""

    bounds: tuple[tuple[int, int], ...]
    epsilon: float

    def clamp(self, values: list[int]) -> list[int]:
        """One row's values, each clamped into its field's bounds."""
        return [min(max(v, low), high) for v, (low, high) in zip(values, self.bounds, strict=True)]

    def draw(self) -> list[int]:
        """Fresh noise for each field's total (OpenDP), scaled to the field's sensitivity."""
        return [sum_noise(max(abs(low), abs(high)), self.epsilon) for low, high in self.bounds]


def sum_noise_for(params: QueryParams, action: str, decl: DatasetDecl, role: str,
                  value_fields: tuple[str, ...]) -> SumNoise | None:
    """The noise a value side of a logged sum must add (None: the sum is exact); TicketRefused when the
    logged bounds are not this department's declaration (the gateway's copy is stale or was altered)."""
    if action != SUM_ACTION or not value_fields or not params.noise_epsilon_micro:
        return None
    logged = params.logged_side(decl.qualified_name, role).bounds
    bounds = []
    for name in value_fields:
        field = decl.field(name)
        declared = field.bounds if field is not None else None
        if declared is None or logged.get(name) != declared:
            raise TicketRefused(f"the logged bounds of field '{name}' are not the ones this department declares "
                                f"({_text(logged.get(name))} logged, {_text(declared)} declared): the gateway "
                                "holds an outdated declaration; restart this adapter to register it again")
        bounds.append(declared)
    return SumNoise(tuple(bounds), from_micro(params.noise_epsilon_micro))


def _text(bounds: tuple[int, int] | None) -> str:
    return "none" if bounds is None else f"{bounds[0]}..{bounds[1]}"
