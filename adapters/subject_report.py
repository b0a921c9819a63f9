"""A subject report: which cases received or used one resident's or company's records, in what form, when, for whom.

Made by the department's data office from its adapter's own store
(`adapters.subject_uses`), never from the gateway: the identifier asked about
is hashed with the department's subject-reference key and looked up among the
keyed hashes each served answer recorded. Covert-case rules
(`[subject_reports]` in adapter.toml) hold entries back; the report itself is
recorded in the same store, with a keyed hash of its subject, never the
identifier, and how many entries each rule held back.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fedgate.adapters.config import AdapterConfig
from fedgate.adapters.subject_refs import refs_of_id
from fedgate.adapters.subject_uses import FoundUse, SubjectUses
from fedgate.core.errors import NotFound
from fedgate.core.identity import who

# The form a record was used in when it did not leave as rows, by action.
USED_AS = {
    "query.count": "counted (aggregate)",
    "query.disclose": "counted (in the filtered set; not among the rows disclosed)",
    "query.match": "match input (a token; the department never learns if it matched)",
    "query.sum": "sum input (encrypted)",
    "query.compare": "comparison input (encrypted)",
}


@dataclass(frozen=True)
class ReportEntry:
    """One answer that received or used the subject's record."""

    time: str
    query_id: str
    agency: str
    supervisor: str
    purpose: str
    case_number: str
    kind: str
    dataset: str
    side: str
    form: str
    disclosed: bool

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "query_id": self.query_id, "agency": self.agency, "supervisor": self.supervisor,
                "purpose": self.purpose, "case_number": self.case_number, "kind": self.kind, "dataset": self.dataset,
                "side": self.side, "form": self.form, "disclosed": self.disclosed}


@dataclass(frozen=True)
class SubjectReport:
    department: str
    entries: list[ReportEntry]
    withheld: int
    tell_withheld: bool  # whether the report may say that entries were held back, and how many

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"department": self.department, "entries": [e.to_json() for e in self.entries]}
        if self.tell_withheld:
            out["withheld"] = self.withheld
        return out


def _entry(use: FoundUse) -> ReportEntry:
    agency, supervisor = who(use.subject)
    form = ", ".join(use.fields) if use.disclosed and use.fields else USED_AS.get(use.action, "used")
    return ReportEntry(use.time, use.query_id, agency, supervisor, use.purpose, use.case_number,
                       use.action.removeprefix("query."), use.dataset, use.role, form, use.disclosed)


def make_report(config: AdapterConfig, identifier: str, dataset: str = "", now: float | None = None) -> SubjectReport:
    """The subject report for `identifier` (a resident ID or USCC), recorded in the department's store.

    `dataset`: one of the department's datasets ("subsidies" or "hrss.subsidies"), or "" for all. `now`
    (epoch seconds) decides which covert-case delays have passed. The identifier is only ever hashed.
    """
    now = time.time() if now is None else now
    qualified = dataset if not dataset or "." in dataset else f"{config.department}.{dataset}"
    if qualified and qualified not in {f"{config.department}.{d.decl.name}" for d in config.datasets}:
        raise NotFound(f"department '{config.department}' declares no dataset '{qualified}'")
    store = SubjectUses.open(config.data_dir, create_key=False)
    try:
        refs = refs_of_id(store.secret, identifier)
        settings = config.subject_reports
        shown, held = [], Counter[str]()
        for use in store.find([ref for _, ref in refs], qualified):
            rule = settings.rule_for(use.case_number, who(use.subject)[0], use.at, now)
            if rule is not None:
                held[rule.name] += 1
            else:
                shown.append(_entry(use))
        store.record_report(",".join(f"{kind}:{ref:016x}" for kind, ref in refs), qualified, len(shown), dict(held))
    finally:
        store.close()
    return SubjectReport(config.department, shown, sum(held.values()), settings.tell_withheld)
