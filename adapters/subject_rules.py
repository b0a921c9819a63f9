"""Which recorded uses a subject report holds back: covert cases, delayed or withheld, as the Data Tracker does.

A rule names cases by a regular expression searched in the case number (and,
optionally, one asking agency). A use it names is left out of a report until
`delay_days` have passed since the use, or for good without a delay. Held-back
entries are omitted, not counted, unless `tell_withheld` says to print how
many: a count would itself tell a subject that a covert case looked at them.
Every report records, in the department's own store, how many entries each
rule held back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DAY_S = 86_400.0


@dataclass(frozen=True)
class CovertRule:
    """Hold back the uses of matching cases: until `delay_days` after each use, or always (None)."""

    name: str
    case: str             # a regular expression, searched in the case number
    agency: str = ""      # only this asking agency's cases ("" any)
    delay_days: int | None = None
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", re.compile(self.case))

    def holds_back(self, case_number: str, agency: str, used_at: float, now: float) -> bool:
        """Whether a use of `case_number` by `agency` at `used_at` (epoch s) stays out of a report made `now`."""
        if self.agency and agency != self.agency:
            return False
        if not self._pattern.search(case_number):
            return False
        return self.delay_days is None or now < used_at + self.delay_days * DAY_S


@dataclass(frozen=True)
class SubjectReportSettings:
    """adapter.toml's [subject_reports]: whether uses are recorded, and the rules reports apply."""

    record: bool = True
    tell_withheld: bool = False
    rules: tuple[CovertRule, ...] = ()

    def rule_for(self, case_number: str, agency: str, used_at: float, now: float) -> CovertRule | None:
        """The first rule holding this use back now, if any."""
        return next((r for r in self.rules if r.holds_back(case_number, agency, used_at, now)), None)
