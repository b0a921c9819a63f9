"""The safeguard pipeline: ordered checks called at fixed phases of every query.

- ADMIT, before the pre-access audit entry: the row limit, the daily quotas, and
  the safeguard values the entry binds (minimum set size, token bound, minimum
  aggregate), so a department later enforces the very numbers the gateway did.
- SIZES, once set sizes are known (`fedgate.query.sizes.Sizes`): minimum set
  size per side, both ways (the rows a filter selects and those it leaves out
  of its dataset), minimum aggregate (a count both ways; a match's or sum's
  matched rows; a comparison's pairs). Below a threshold, zero included, an
  aggregate is answered "fewer than k" (`Suppressed`), never exactly.
- RELEASE, before anything leaves a department (or the gateway): disclosure
  forms within the level ceilings, the row limit, the minimum set size before
  rows leave, the match token bound; and the disclosed-row quota is charged.
  At a department, also the difference check: an answer whose row set differs
  from one its agency had answered before by fewer than k rows is refused
  (`DifferenceCheck`; the history is the department's, behind `RowSetHistory`).

Configured in one place: `policies/safeguards.toml` (read by `SafeguardConfig`)
and, per level, `min_aggregate` in `levels.toml`. The gateway runs every phase
(`Safeguards.for_gateway`); an adapter runs RELEASE (`Safeguards.for_department`)
with the numbers taken from the audit entry it verified, never from its own
configuration. Adding a safeguard is one class here, its config entry and its
place in `_gateway_checks`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from fedgate.core.classification import Levels, form_rank
from fedgate.crypto.ticket import TicketRefused
from fedgate.core.errors import InvalidInput, ProbeRefused, QuotaExceeded, RemoteProtocolError
from fedgate.core.identity import Identity
from fedgate.query.audit_params import QueryParams
from fedgate.query.sizes import SizeCheck, Sizes, Suppressed
from fedgate.core.row_limit import quota_rule
from fedgate.core.tomlconfig import Table

DEFAULT_MIN_SET_SIZE = 100
# Rows per side of a match; also the bound on entries logged before the bound was (params_version 1 without it).
DEFAULT_MAX_MATCH_ROWS = 5_000_000
MAX_DISCLOSE_ROWS = 10_000
# Query kinds whose sides are sets of rows (a set size is checked); and those matching two sets.
SET_KINDS = frozenset({"disclose", "match", "sum", "compare"})
MATCH_KINDS = frozenset({"match", "sum", "compare"})


class Phase(enum.Enum):
    ADMIT = "admit"
    SIZES = "sizes"
    RELEASE = "release"


@dataclass(frozen=True)
class Quota:
    queries_per_day: int
    disclosed_rows_per_day: int


@dataclass(frozen=True)
class AlertConfig:
    """`[alerts]`: when the gateway flags a caller's (or an agency's) queries as probing; it never refuses.

    Counts are over one agency's supervisors together (a lone supervisor is an agency of one), in a sliding
    window of `window_minutes`, except the bisection run, which must fall within `bisection_minutes`.
    """

    enabled: bool = True
    window_minutes: int = 60
    refusals: int = 10          # refused or suppressed answers in the window
    same_filter: int = 20       # queries with one dataset and one redacted filter shape in the window
    bisection_run: int = 8      # of them with a range comparison (<, <=, >, >=) within bisection_minutes
    bisection_minutes: int = 10
    max_entries: int = 1000     # query outcomes kept per agency (memory bound)


@dataclass(frozen=True)
class SafeguardConfig:
    """`policies/safeguards.toml`: the gateway's safeguard values (departments read them from each entry)."""

    min_set_size: int = DEFAULT_MIN_SET_SIZE
    quotas: Mapping[str, Quota] = field(default_factory=dict)
    max_match_rows: int = DEFAULT_MAX_MATCH_ROWS  # per side; a stream beyond its bound is refused
    alerts: AlertConfig = field(default_factory=AlertConfig)  # probing alerts (fedgate.query.probing)

    @classmethod
    def from_file(cls, path: Path) -> SafeguardConfig:
        """Read and check the file; ConfigError names the file and the key."""
        table = Table.load(path)
        min_set = _at_least(table, "min_set_size", DEFAULT_MIN_SET_SIZE, 1)
        max_rows = _at_least(table, "max_match_rows", DEFAULT_MAX_MATCH_ROWS, 1)
        quotas = {}
        if table.has("quotas"):
            qt = table.table("quotas")
            for role in qt.keys():
                rt = qt.table(role)
                quotas[role] = Quota(_at_least(rt, "queries_per_day", None, 0),
                                     _at_least(rt, "disclosed_rows_per_day", None, 0))
                rt.done()
            qt.done()
        alerts = _alerts(table.table("alerts")) if table.has("alerts") else AlertConfig()
        table.done()
        return cls(min_set, quotas, max_rows, alerts)


def _alerts(table: Table) -> AlertConfig:
    """The `[alerts]` table; a key left out keeps its default."""
    defaults = AlertConfig()
    counts = {name: _at_least(table, name, getattr(defaults, name), 1)
              for name in ("window_minutes", "refusals", "same_filter", "bisection_run", "bisection_minutes",
                           "max_entries")}
    enabled = table.boolean("enabled", defaults.enabled)
    table.done()
    return AlertConfig(enabled=enabled, **counts)


def _at_least(table: Table, key: str, default: int | None, least: int) -> int:
    value: int = table.integer(key) if default is None else table.integer(key, default)
    if value < least:
        raise table.error(key, f"must be at least {least}")
    return value


class QuotaLedger(Protocol):
    """Where daily usage is counted (the gateway's registry database): I/O kept out of the pipeline."""

    def charge_query(self, who: Identity) -> int | None:
        """Count one query or raise QuotaExceeded; the rows that may still be disclosed today (None: no quota)."""

    def charge_rows(self, who: Identity, count: int) -> None:
        """Count disclosed rows."""


@dataclass
class Request:
    """A planned query as the ADMIT and SIZES safeguards see it; ADMIT fills `limit` and the safeguard params."""

    caller: Identity
    kind: str                            # count | disclose | match | sum | compare
    params: QueryParams
    limit_requested: int | None = None   # rows asked for (None: the query returns no rows and logs no limit)
    releases_rows: bool = False          # fields of rows are to be disclosed
    aggregate_levels: tuple[str, ...] = ()  # levels of the fields an aggregate reveals about (min_aggregate)
    limit: int | None = None             # the limit after the safeguards (the quota may lower it)
    on_sets: bool | None = None          # answers on sets of rows (min_set_size); None: by kind (SET_KINDS)

    def __post_init__(self) -> None:
        if self.on_sets is None:
            self.on_sets = self.kind in SET_KINDS


@dataclass(frozen=True)
class ReleasedField:
    name: str
    form: str    # asked for: plaintext | masked
    level: str   # declared by the department


@dataclass(frozen=True)
class AnswerRows:
    """The rows an answer covers, as its holder names them: stable row references, never identifiers."""

    agency: str               # the asking supervisor's organisation: its supervisors are one adversary
    dataset: str
    refs: Sized               # keyed 64-bit row references (opaque here: a department's compressed bitmap)
    total_rows: int           # the dataset's rows now (sets too close to empty or to all are refused elsewhere)
    filter_text: str = ""     # the filter that chose them: only a repeat of the same filter may cover the same set
    # A self-join's matched rows: the set of an aggregate (a sum, a cardinality), checked at min_aggregate as a
    # count's set is, where a side's set is checked at the larger k (min_set_size).
    matched: bool = False


class RowSetHistory(Protocol):
    """Where a department keeps the row sets it answered (`fedgate.adapters.row_history`): I/O kept out."""

    def record_unless_near(self, answer: AnswerRows, k: int) -> bool:
        """Record the set unless a kept one of its agency and dataset differs by |S Δ S'| < k (0 only for a repeat
        of the same filter); True if recorded."""


@dataclass(frozen=True)
class Release:
    """What is about to leave, as its holder sees it; a check skips what is not given (None / empty)."""

    params: QueryParams                  # the admitted entry's: the numbers to enforce
    fields: tuple[ReleasedField, ...] = ()
    limit: int | None = None             # the row limit the request carries
    set_rows: int | None = None          # the holder's rows after the filter
    total_rows: int | None = None        # the holder's rows without a filter (None: unfiltered, not checked)
    peer_tokens: int | None = None       # tokens received from the other side so far
    rows: int | None = None              # rows leaving now (the gateway charges them)
    caller: Identity | None = None
    answer: AnswerRows | None = None     # the row set an answer covers (a department's difference check)


class Safeguard:
    """One safeguard: its name (its config key), the phases it runs in, and a check per phase."""

    name: ClassVar[str]
    phases: ClassVar[frozenset[Phase]]

    def admit(self, request: Request) -> None:
        """ADMIT: refuse, or bind the values the entry logs."""

    def sizes(self, request: Request, sizes: Sizes) -> None:
        """SIZES: refuse sizes too small to answer on."""

    def release(self, release: Release) -> None:
        """RELEASE: refuse what may not leave."""


class RowLimit(Safeguard):
    """At most MAX_DISCLOSE_ROWS rows per answer; the limit is logged, and asked for again by the holder."""

    name = "limit"
    phases = frozenset({Phase.ADMIT, Phase.RELEASE})

    def admit(self, request: Request) -> None:
        if request.limit_requested is not None:
            self._check(request.limit_requested)
            request.limit = request.limit_requested

    def release(self, release: Release) -> None:
        if release.limit is not None:
            self._check(release.limit)

    @staticmethod
    def _check(limit: int) -> None:
        if not 0 < limit <= MAX_DISCLOSE_ROWS:
            raise InvalidInput(f"limit must be between 1 and {MAX_DISCLOSE_ROWS}")


class DailyQuota(Safeguard):
    """`[quotas.<role>]`: queries per day (charged at ADMIT) and disclosed rows per day (lowering the limit,
    charged at RELEASE)."""

    name = "quotas"
    phases = frozenset({Phase.ADMIT, Phase.RELEASE})

    def __init__(self, ledger: QuotaLedger) -> None:
        self._ledger = ledger

    def admit(self, request: Request) -> None:
        allowance = self._ledger.charge_query(request.caller)
        if allowance is None or request.limit is None:
            return
        request.limit = min(request.limit, allowance)
        if request.releases_rows and request.limit == 0:
            raise QuotaExceeded(f"daily disclosed-row quota used up (rule: {quota_rule(request.caller.role.value)})")

    def release(self, release: Release) -> None:
        if release.caller is not None and release.rows is not None:
            self._ledger.charge_rows(release.caller, release.rows)


class MinSetSize(Safeguard):
    """`min_set_size`: no answer on a set smaller than this, nor on a filter that leaves out fewer rows of its
    dataset than this (a supervisor cannot test single identifiers, nor their complement: `not name = 'X'`)."""

    name = "min_set_size"
    phases = frozenset({Phase.ADMIT, Phase.SIZES, Phase.RELEASE})

    def __init__(self, minimum: int = DEFAULT_MIN_SET_SIZE) -> None:
        self._minimum = minimum

    def admit(self, request: Request) -> None:
        if request.on_sets:
            request.params.min_set_size = self._minimum

    def sizes(self, request: Request, sizes: Sizes) -> None:
        minimum = request.params.min_set_size or 0
        for side, rows in sizes.set_rows.items():
            # An empty set is refused like a set of one: answering it would tell 0 from 1.
            if rows < minimum:
                raise ProbeRefused(f"the {side} set has fewer than {minimum} rows after its filter "
                                         "(safeguard min_set_size): no result")
            total = sizes.total_rows.get(side)
            if total is not None and total - rows < minimum:
                raise ProbeRefused(f"the {side} filter leaves out fewer than {minimum} rows of its dataset "
                                         "(safeguard min_set_size, both ways): no result")

    def release(self, release: Release) -> None:
        minimum = release.params.min_set_size or 0
        if release.set_rows is None:
            return
        # The exact sizes are not told: that would itself be a probe answer.
        if release.set_rows < max(minimum, 1):
            raise ProbeRefused(f"the filtered set has fewer than {minimum} rows (safeguard min_set_size): "
                                     "nothing disclosed")
        if release.total_rows is not None and release.total_rows - release.set_rows < minimum:
            raise ProbeRefused(f"the filter leaves out fewer than {minimum} rows of its dataset (safeguard "
                                     "min_set_size, both ways): nothing disclosed")


class MaxMatchRows(Safeguard):
    """`max_match_rows`: rows per side of a match; the department bounds the tokens it takes by the logged value."""

    name = "max_match_rows"
    phases = frozenset({Phase.ADMIT, Phase.RELEASE})

    def __init__(self, bound: int = DEFAULT_MAX_MATCH_ROWS) -> None:
        self._bound = bound

    def admit(self, request: Request) -> None:
        if request.kind in MATCH_KINDS:
            request.params.max_match_rows = self._bound

    def release(self, release: Release) -> None:
        bound = peer_token_bound(release.params)
        if release.peer_tokens is not None and release.peer_tokens > bound:
            raise RemoteProtocolError(f"more than {bound} peer tokens")


def peer_token_bound(params: QueryParams) -> int:
    """The tokens a department accepts from the other side of an admitted match: the logged max_match_rows."""
    return params.max_match_rows if params.max_match_rows is not None else DEFAULT_MAX_MATCH_ROWS


class MinAggregate(Safeguard):
    """`min_aggregate` per level (levels.toml), by the highest level of the fields an answer reveals about.

    A count, a match's cardinality or a sum over fewer rows (zero included) is
    answered "fewer than k" (`Suppressed`); a count whose filter leaves out
    fewer than k rows of its dataset is refused (its complement would single
    them out); a comparison over fewer matched pairs is refused.
    """

    name = "min_aggregate"
    phases = frozenset({Phase.ADMIT, Phase.SIZES})
    _NOUNS = {"count": "rows", "sum": "matched rows", "match": "matched rows", "compare": "matched pairs"}

    def __init__(self, levels: Levels) -> None:
        self._levels = levels

    def admit(self, request: Request) -> None:
        if request.kind in self._NOUNS:
            request.params.min_aggregate = self.floor(request)[0]

    def sizes(self, request: Request, sizes: Sizes) -> None:
        k, level = self.floor(request)
        if k == 0 or request.kind not in self._NOUNS:
            return
        why = f"the minimum aggregation size for level {level} (safeguard min_aggregate)"
        if request.kind == "compare":
            if sizes.pairs is not None and sizes.pairs < k:
                raise ProbeRefused(f"comparison refused: fewer than {k} matched pairs, {why}")
            return
        rows = sizes.aggregated_rows
        if rows is None:
            return
        if rows < k:
            raise Suppressed(k, f"{request.kind} suppressed: fewer than {k} {self._NOUNS[request.kind]}, {why}")
        total = sizes.total_rows.get("filtered")
        if request.kind == "count" and total is not None and total - rows < k:
            raise ProbeRefused(f"count refused: its filter leaves out fewer than {k} rows of the dataset, "
                                     f"{why}, both ways")

    def floor(self, request: Request) -> tuple[int, str]:
        """The minimum aggregate and the level it is of (0 and "" when no field touches a level)."""
        touched = self._levels.highest(list(request.aggregate_levels))
        return (touched.min_aggregate, touched.name) if touched else (0, "")


class DisclosureCeiling(Safeguard):
    """A field leaves its department at most in its level's ceiling form (levels.toml), whatever was signed."""

    name = "ceiling"
    phases = frozenset({Phase.RELEASE})

    def __init__(self, levels: Levels) -> None:
        self._levels = levels

    def release(self, release: Release) -> None:
        for f in release.fields:
            level = self._levels.get(f.level)
            ceiling = level.ceiling if level else "aggregate"
            if f.form not in ("plaintext", "masked") or form_rank(f.form) > form_rank(ceiling):
                raise TicketRefused(f"field '{f.name}' ({f.level}) may leave this department at most as "
                                    f"{ceiling}, not {f.form}")


class DifferenceRefused(ProbeRefused):
    """An answer refused by the difference check (FAILED_PRECONDITION, like a min_set_size refusal)."""


def difference_k(params: QueryParams) -> int:
    """The difference check's k for an admitted entry: the larger of its logged min_set_size and min_aggregate
    (at most 1: no check, as no two sets can differ by more than nothing and fewer than k rows)."""
    return max(params.min_set_size or 0, params.min_aggregate or 0)


def matched_k(params: QueryParams) -> int:
    """k for a self-join's matched rows: its logged min_aggregate, the least rows an aggregate may cover (a
    set smaller than min_set_size is still answered when at least min_aggregate rows match)."""
    return params.min_aggregate or 0


class DifferenceCheck(Safeguard):
    """`difference`: a department refuses an answer whose row set differs from one the same agency had
    answered on the same dataset (within the history's window) by fewer than k rows.

    k is the larger of the entry's logged min_set_size and min_aggregate: the
    numbers the gateway bound. Two such answers would differ by the few rows
    between them (a tracker: `district = 'X'` against the same with
    `not name = 'P'`). A repeat of the same filter over the same set passes;
    the same set under another filter does not: were it answered, the answer
    (refused with P in the set, answered without) would itself tell P's
    membership. A set smaller than k, or leaving out fewer than k rows, is
    neither checked nor kept: min_aggregate / min_set_size (both ways) suppress
    or refuse its answer.

    A self-join's matched rows (`AnswerRows.matched`: one department holds
    both sides, so it can tell which rows the answer covers) are checked at
    k = min_aggregate, the bar of the aggregate answered over them.
    """

    name = "difference"
    phases = frozenset({Phase.RELEASE})

    def __init__(self, history: RowSetHistory) -> None:
        self._history = history

    def release(self, release: Release) -> None:
        answer = release.answer
        if answer is None:
            return
        k = matched_k(release.params) if answer.matched else difference_k(release.params)
        if k <= 1 or not k <= len(answer.refs) <= answer.total_rows - k:
            return
        if not self._history.record_unless_near(answer, k):
            # Neither the difference nor the earlier query is told: either would be a probe answer.
            raise DifferenceRefused(f"its rows differ from an earlier answer to this agency on this dataset by "
                                     f"fewer than {k} rows (safeguard difference): no result")


class Safeguards:
    """The ordered pipeline; each phase runs the safeguards that take part in it, in order."""

    def __init__(self, checks: Sequence[Safeguard], config: SafeguardConfig | None = None) -> None:
        self.checks = tuple(checks)
        self.config = config or SafeguardConfig()

    @classmethod
    def for_gateway(cls, config: SafeguardConfig, levels: Levels, ledger: QuotaLedger) -> Safeguards:
        return cls(_gateway_checks(config, levels, ledger), config)

    @classmethod
    def for_department(cls, levels: Levels, history: RowSetHistory | None = None) -> Safeguards:
        """The RELEASE checks a department runs; their numbers come from each admitted entry. With its
        row-set history, the difference check runs last (after the checks that refuse for other reasons)."""
        checks = [c for c in _gateway_checks(SafeguardConfig(), levels, None) if Phase.RELEASE in c.phases]
        if history is not None:
            checks.append(DifferenceCheck(history))
        return cls(checks)

    def in_phase(self, phase: Phase) -> list[Safeguard]:
        return [c for c in self.checks if phase in c.phases]

    def admit(self, request: Request) -> None:
        """ADMIT: every check in order (the first refusal raises); then the applied limit goes into the params."""
        for check in self.in_phase(Phase.ADMIT):
            check.admit(request)
        if request.limit is not None:
            request.params.limit = request.limit
            if request.limit != request.limit_requested:  # a safeguard lowered it: keep what was asked in the log
                request.params.limit_requested = request.limit_requested

    def size_check(self, request: Request) -> SizeCheck:
        """The SIZES phase for one admitted query, as the callable its machine calls once sizes are known."""
        checks = self.in_phase(Phase.SIZES)

        def check(sizes: Sizes) -> None:
            for c in checks:
                c.sizes(request, sizes)
        return check

    def release(self, release: Release) -> None:
        """RELEASE: every check in order; the first refusal raises."""
        for check in self.in_phase(Phase.RELEASE):
            check.release(release)


def _gateway_checks(config: SafeguardConfig, levels: Levels, ledger: QuotaLedger | None) -> list[Safeguard]:
    """The safeguards in the order they run: the row limit before the quota that may lower it."""
    checks: list[Safeguard] = [RowLimit()]
    if ledger is not None:
        checks.append(DailyQuota(ledger))
    checks += [MinSetSize(config.min_set_size), MaxMatchRows(config.max_match_rows), MinAggregate(levels),
               DisclosureCeiling(levels)]
    return checks
