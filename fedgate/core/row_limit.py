"""How many of the available rows an answer holds, and which limit or safeguard cut it short.

The gateway fills one in for every answer that discloses rows; the client and the
CLI show it, so a shortened answer never looks complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# limited_by when the caller's own --limit cut the answer (a safeguard is named by its rule).
OWN_LIMIT = "limit"


def quota_rule(role: str) -> str:
    """The safeguard rule of a role's daily disclosed-row quota (policies/safeguards.toml)."""
    return f"quotas.{role}.disclosed_rows_per_day"


@dataclass(frozen=True)
class RowLimit:
    """Rows returned of rows available; `limited_by` is "", OWN_LIMIT or a safeguard's rule."""

    available: int
    returned: int
    requested: int
    applied: int
    limited_by: str = ""

    @classmethod
    def of(cls, available: int, returned: int, requested: int, applied: int, safeguard: str) -> RowLimit:
        """Say what cut an answer: the safeguard when it lowered the limit that was reached, else the limit."""
        if returned >= available:
            cause = ""
        elif applied < requested and returned >= applied:
            cause = safeguard
        else:
            cause = OWN_LIMIT
        return cls(available, returned, requested, applied, cause)

    @property
    def shortened(self) -> bool:
        return bool(self.limited_by)

    def note(self, noun: str = "rows") -> str:
        """One sentence for people, e.g. "20 of 2,512 matching rows: the limit (--limit 20)"."""
        shown = f"{self.returned:,} of {self.available:,} {noun}"
        if not self.limited_by:
            return f"all {self.available:,} {noun}"
        if self.limited_by == OWN_LIMIT:
            return f"{shown}, cut by the limit (--limit {self.requested:,})"
        if self.limited_by.endswith(".disclosed_rows_per_day"):
            return (f"{shown}, cut by the daily disclosed-row quota (safeguard {self.limited_by}): "
                    f"{self.requested:,} asked for, {self.applied:,} left today")
        return f"{shown}, cut by safeguard {self.limited_by} (limit {self.applied:,} of {self.requested:,} asked for)"

    def to_json(self) -> dict[str, Any]:
        return {"rows_returned": self.returned, "rows_available": self.available,
                "limit_requested": self.requested, "limit_applied": self.applied,
                "limited_by": self.limited_by or None}


def row_limit_json(limit: RowLimit | None) -> dict[str, Any]:
    """The JSON keys of a row limit; all null when no rows were asked for."""
    if limit is None:
        return {"rows_returned": None, "rows_available": None, "limit_requested": None, "limit_applied": None,
                "limited_by": None}
    return limit.to_json()
