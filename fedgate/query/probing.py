"""Probing detectors over the recent query outcomes of each agency: sans-I/O, no refusals, only alerts.

Three detectors (thresholds in `policies/safeguards.toml` `[alerts]`, read as `AlertConfig`):

- ``refusals``: many refused or suppressed answers (FAILED_PRECONDITION, PERMISSION_DENIED, or a
  ``suppressed`` result size) in the window: a caller feeling for the edges of the safeguards.
- ``same_filter``: many queries on one dataset with one redacted filter shape (``amount >= ?``), each
  with its own digest, in the window: the same question asked with different literals.
- ``bisection``: a run of such queries whose shape holds a range comparison within a few minutes:
  the log cannot show the literals, but a search for one value looks exactly like this.

Windows are kept per agency (the organisation of a supervisor's SPIFFE ID), so several supervisors of
one agency are counted together as the one adversary they may be; an alert names every subject whose
entries it counts. An entry counts towards at most one alert per detector and shape, so an alert is not
repeated for the same entries, and a watch rebuilt from the log (``remember``), or fed another
replica's entries (``observe``), knows which entries the logged alerts already named.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from fedgate.core.audit_entry import AuditEntry
from fedgate.core.identity import Identity, Role
from fedgate.query.safeguards import AlertConfig

ALERT_ACTION = "audit.alert"
ALERT_DECISION = "alert"
ALERT_STATUS = "ALERT"
ALERT_METHOD = "(probing alert)"
DETECTORS = ("refusals", "same_filter", "bisection")
# Outcomes that tell the caller "not answered here": a safeguard's suppression or a policy refusal.
REFUSED_STATUSES = frozenset({"FAILED_PRECONDITION", "PERMISSION_DENIED"})
SUPPRESSED_SIZE = "suppressed"
_RANGE = re.compile(r"(<=?|>=?)\s*\?")
# Agencies whose windows are kept at once; the least recently active is dropped beyond it.
MAX_AGENCIES = 10_000
_FILTER_KEY = "filter."
_DIGEST_KEY = "filter_digest."
# Alert parameters (an alert entry's `params`), read back by `remember`.
P_DETECTOR, P_AGENCY, P_SUBJECTS, P_ENTRIES, P_DATASET, P_SHAPE = (
    "alert.detector", "alert.agency", "alert.subjects", "alert.entries", "alert.dataset", "alert.shape")


class Shape(NamedTuple):
    """A filtered side of a query as the log keeps it: its dataset and its filter with the values blanked."""

    dataset: str
    text: str

    @property
    def is_range(self) -> bool:
        return bool(_RANGE.search(self.text))


@dataclass(frozen=True)
class Observed:
    """One query outcome as the detectors see it: who, when, refused or not, and the filter shapes."""

    index: int
    when: dt.datetime
    subject: str
    agency: str
    refused: bool
    shapes: tuple[Shape, ...]
    digests: tuple[str, ...]
    query_id: str = ""


def observed(index: int, entry: AuditEntry) -> Observed | None:
    """The entry as a detector input; None unless it is a supervisor's query outcome."""
    if not entry.action.startswith("query.") or entry.status == "STARTED":
        return None
    try:
        who = Identity.parse(entry.subject)
    except ValueError:
        return None
    if who.role is not Role.SUPERVISOR:
        return None
    params = dict(entry.params)
    shapes, digests = [], []
    for key, text in sorted(params.items()):
        if key.startswith(_FILTER_KEY) and text:
            rest = key[len(_FILTER_KEY):]
            dataset = rest.split(".", 1)[1] if rest.startswith(("left.", "right.")) else rest
            shapes.append(Shape(dataset, text))
            digests.append(params.get(_DIGEST_KEY + rest, ""))
    try:
        when = _time(entry.time)
    except ValueError:
        return None
    refused = entry.status in REFUSED_STATUSES or dict(entry.result_sizes).get(SUPPRESSED_SIZE, 0) > 0
    return Observed(index, when, entry.subject, who.org, refused, tuple(shapes), tuple(digests),
                    entry.query_id)


@dataclass(frozen=True)
class Alert:
    """A detector that fired: for whom, on what, how many entries against which threshold, and which."""

    detector: str
    agency: str
    subject: str                  # whose query completed the pattern
    subjects: tuple[str, ...]     # every subject whose entries were counted
    count: int
    threshold: int
    window_s: int
    indexes: tuple[int, ...]
    shape: Shape | None = None

    @property
    def scope(self) -> str:
        return "caller" if len(self.subjects) == 1 else "agency"

    def reason(self) -> str:
        who = (f"by {self.subjects[0].removeprefix('spiffe://fedgate/')}" if self.scope == "caller" else
               f"by {len(self.subjects)} supervisors of agency {self.agency} together")
        what = {
            "refusals": "refused or suppressed answers",
            "same_filter": f"queries on {self.shape and self.shape.dataset} with filter shape "
                           f"'{self.shape and self.shape.text}'",
            "bisection": f"range queries on {self.shape and self.shape.dataset} with filter shape "
                         f"'{self.shape and self.shape.text}' (bisection-like)",
        }[self.detector]
        return (f"probing pattern '{self.detector}': {self.count} {what} within {self.window_s // 60} minutes "
                f"{who} (threshold {self.threshold}); entries {', '.join(map(str, self.indexes))}. "
                "Nothing was refused because of this alert")

    def entry(self, time: str, trace_id: str = "") -> AuditEntry:
        """The `audit.alert` entry: no value, only who, which detector, counts and the entries' indexes."""
        params = {P_DETECTOR: self.detector, P_AGENCY: self.agency, P_SUBJECTS: ",".join(self.subjects),
                  P_ENTRIES: ",".join(map(str, self.indexes))}
        if self.shape is not None:
            params |= {P_DATASET: self.shape.dataset, P_SHAPE: self.shape.text}
        return AuditEntry(
            time=time, subject=self.subject, role=Role.SUPERVISOR.value, action=ALERT_ACTION, method=ALERT_METHOD,
            decision=ALERT_DECISION, status=ALERT_STATUS,
            datasets=(self.shape.dataset,) if self.shape is not None else (),
            rule=f"safeguards.toml [alerts] {self.detector}", reason=self.reason(),
            result_sizes=tuple(sorted({"count": self.count, "threshold": self.threshold, "window_s": self.window_s,
                                       "subjects": len(self.subjects)}.items())),
            trace_id=trace_id, params=tuple(sorted(params.items())))


@dataclass
class _Seen:
    item: Observed
    counted: set[str] = field(default_factory=set)  # detector keys an alert already counted this entry under


class _Agency:
    def __init__(self, bound: int) -> None:
        self.items: deque[_Seen] = deque(maxlen=bound)
        self.query_ids: set[str] = set()

    def add(self, item: Observed) -> bool:
        """Keep `item`; False if its query is already here (a comparison logs two outcomes)."""
        if item.query_id and item.query_id in self.query_ids:
            return False
        if len(self.items) == self.items.maxlen:
            self.query_ids.discard(self.items[0].item.query_id)
        self.items.append(_Seen(item))
        if item.query_id:
            self.query_ids.add(item.query_id)
        return True

    def since(self, start: dt.datetime) -> list[_Seen]:
        return [s for s in self.items if s.item.when >= start]


class ProbeWatch:
    """Sliding windows per agency and the three detectors over them; bounded in memory, no I/O."""

    def __init__(self, config: AlertConfig) -> None:
        self.config = config
        self._agencies: OrderedDict[str, _Agency] = OrderedDict()

    def observe(self, index: int, entry: AuditEntry) -> list[Alert]:
        """Take one logged entry: the alerts a query outcome completes; a logged alert marks its entries."""
        if entry.action == ALERT_ACTION:
            self._mark(entry)
            return []
        item = self._keep(index, entry)
        if item is None or not self.config.enabled:
            return []
        return self._detect(self._agencies[item.agency], item)

    def remember(self, entries: Iterable[tuple[int, AuditEntry]]) -> None:
        """Rebuild from the log's recent entries (oldest first) without alerting: logged alerts mark theirs."""
        for index, entry in entries:
            if entry.action == ALERT_ACTION:
                self._mark(entry)
            else:
                self._keep(index, entry)

    def _keep(self, index: int, entry: AuditEntry) -> Observed | None:
        item = observed(index, entry)
        if item is None:
            return None
        agency = self._agencies.pop(item.agency, None) or _Agency(self.config.max_entries)
        self._agencies[item.agency] = agency  # most recently active last
        while len(self._agencies) > MAX_AGENCIES:
            self._agencies.popitem(last=False)
        return item if agency.add(item) else None

    def _mark(self, alert: AuditEntry) -> None:
        params = dict(alert.params)
        agency = self._agencies.get(params.get(P_AGENCY, ""))
        if agency is None:
            return
        shape = Shape(params[P_DATASET], params[P_SHAPE]) if P_DATASET in params and P_SHAPE in params else None
        key = _key(params.get(P_DETECTOR, ""), shape)
        named = {int(i) for i in params.get(P_ENTRIES, "").split(",") if i.isdigit()}
        for seen in agency.items:
            if seen.item.index in named:
                seen.counted.add(key)

    def _detect(self, agency: _Agency, item: Observed) -> list[Alert]:
        c = self.config
        window = agency.since(item.when - dt.timedelta(minutes=c.window_minutes))
        alerts = []
        if item.refused:
            alerts += self._fire("refusals", None, [s for s in window if s.item.refused], c.refusals,
                                 c.window_minutes, item)
        for shape in dict.fromkeys(item.shapes):
            same = [s for s in window if shape in s.item.shapes]
            alerts += self._fire("same_filter", shape, same, c.same_filter, c.window_minutes, item, distinct=True)
            if shape.is_range:
                start = item.when - dt.timedelta(minutes=c.bisection_minutes)
                alerts += self._fire("bisection", shape, [s for s in same if s.item.when >= start],
                                     c.bisection_run, c.bisection_minutes, item)
        return alerts

    @staticmethod
    def _fire(detector: str, shape: Shape | None, candidates: list[_Seen], threshold: int, minutes: int,
              item: Observed, distinct: bool = False) -> list[Alert]:
        key = _key(detector, shape)
        fresh = [s for s in candidates if key not in s.counted]
        if distinct and shape is not None:
            # Near-identical: the same shape with its own digest each time (a repeated digest is one question).
            by_digest: dict[str, _Seen] = {}
            for s in fresh:
                by_digest.setdefault(_digest_of(s.item, shape) or str(s.item.index), s)
            fresh = sorted(by_digest.values(), key=lambda s: s.item.index)
        if len(fresh) < threshold:
            return []
        for s in fresh:
            s.counted.add(key)
        subjects = tuple(dict.fromkeys(s.item.subject for s in fresh))
        return [Alert(detector, item.agency, item.subject, subjects, len(fresh), threshold, minutes * 60,
                      tuple(s.item.index for s in fresh), shape)]


def _key(detector: str, shape: Shape | None) -> str:
    return detector if shape is None else f"{detector}\x00{shape.dataset}\x00{shape.text}"


def _digest_of(item: Observed, shape: Shape) -> str:
    return next((d for s, d in zip(item.shapes, item.digests) if s == shape), "")


def _time(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
