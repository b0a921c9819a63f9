"""The gateway's part of a private match, intersection-sum or comparison, as a state machine (no I/O).

The pump (``fedgate.gateway.matching``) opens one stream per department,
turns each message into an event here and carries out the commands it gets
back. The machine decides everything else: how each side is started, which
message may come from which side in which phase, where tokens go (the
intersector, or the other side to be blinded again, as the protocol says),
when sizes are checked, and what follows the intersection::

    START_LEFT --Started--> START_RIGHT --Started--> STREAMING --(every side finished)--> INTERSECTING
    INTERSECTING --Intersected, sizes allowed--> TOTALS (sum) | FLAGS (compare, disclosing) | DISCLOSING | CLOSING
    INTERSECTING --Intersected, aggregate suppressed ("fewer than k")--> CLOSING
    TOTALS --TotalsComputed--> DISCLOSING | CLOSING
    FLAGS --FlagsReceived--> DISCLOSING | CLOSING
    DISCLOSING --Rows (left)--> CLOSING --StreamEnded (both)--> DONE
    any state --a refused event--> ERROR (for good)

A comparison that discloses nothing needs neither department once their
ciphertexts are in: it goes to CLOSING straight from INTERSECTING, and its
results leave only once both streams have ended, i.e. once each department
has recorded its session as served. So the log's OK and every department's
record describe the same event, even when the client hangs up on its results
(the streams were once ended after the results, and a client leaving early
cancelled them: "stopped" in the departments' logs, OK in the gateway's).

A department's message that its state does not allow raises
``RemoteProtocolError``; an event only the pump could have sent wrongly raises
``LocalProtocolError``. Either way the machine stays in ERROR.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar, Literal, NoReturn, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from fedgate.crypto.compare import Packing
from fedgate.crypto.intersect import IntersectionResult, Intersector, TooManyTokens
from fedgate.crypto.psi import TOKEN_BYTES
from fedgate.core.datasets import FieldGrant
from fedgate.core.errors import FailedPrecondition, InvalidInput, LocalProtocolError, RemoteProtocolError
from fedgate.core.matching_keys import MatchingKey
from fedgate.query.ciphertexts import CipherColumns
from fedgate.query.noise import noisy_count
from fedgate.query.protocols import MatchProtocol
from fedgate.query.sizes import Sizes, SizeCheck, Suppressed

Side = Literal["left", "right"]
SIDES: tuple[Side, Side] = ("left", "right")
PROGRESS_EVERY = 50_000


def other(side: Side) -> Side:
    return "right" if side == "left" else "left"


def coarse(tokens: int) -> int:
    """A side's token count as progress shows it: rounded down to the step, since an exact size would
    reach the supervisor before min_set_size is checked."""
    return tokens - tokens % PROGRESS_EVERY


# --- where what arrives is kept ---


class Stores(Protocol):
    """Where a match keeps the tokens and ciphertexts it receives (the gateway may spill them to disk)."""

    def intersector(self, max_tokens: int, width: int) -> Intersector: ...

    def ciphertexts(self, department: str, columns: int, width: int) -> CipherColumns: ...


class InMemory:
    """Everything in memory: the default, and what a small match always uses."""

    def intersector(self, max_tokens: int, width: int) -> Intersector:
        return Intersector(max_tokens_per_side=max_tokens, width=width)

    def ciphertexts(self, department: str, columns: int, width: int) -> CipherColumns:
        return CipherColumns(department, columns, width)


# --- the plan ---


@dataclass(frozen=True)
class SidePlan:
    department: str
    endpoint: str
    dataset: str        # unqualified name in its department
    key_field: str
    filter_text: str
    filter_nonce: bytes
    # Sum, compare: integer fields this side encrypts under the supervisor's key.
    value_fields: tuple[str, ...] = ()
    # The dataset's row count as the supervisor may see it (`fedgate datasets`): progress shows it as the total.
    dataset_rows: int = 0


@dataclass(frozen=True)
class Homomorphic:
    """What a sum or comparison adds to a match: the logged action, the key, whether pairs are needed."""

    action: str
    paillier_key: bytes
    ciphertext_width: int
    pairs: bool = False
    # The supervisor's signature over the key and its certificate, for each value holder to check.
    key_signature: bytes = b""
    supervisor_certificate: str = ""


@dataclass(frozen=True)
class Comparison:
    """A comparison's arithmetic: is left_weight·x > right_weight·y, for values below `bound`, packed so."""

    left_weight: int
    right_weight: int
    bound: int
    packing: Packing


@dataclass(frozen=True)
class MatchPlan:
    """Everything the machine decides from: both sides, the protocol, the safeguards' numbers, what follows."""

    left: SidePlan
    right: SidePlan
    protocol: MatchProtocol
    check_sizes: SizeCheck
    min_set_size: int               # told to each department, which checks it again
    max_tokens: int                 # max_match_rows: tokens per side, and pairs for a comparison
    grants: tuple[FieldGrant, ...] = ()
    limit: int = 0
    # The right department's registered matching key, for a protocol that needs it.
    peer_key: MatchingKey | None = None
    homomorphic: Homomorphic | None = None
    comparison: Comparison | None = None
    # > 0: a noisy answer (levels.toml dp); the ε each noisy number of it gets: the cardinality, drawn here,
    # and for a sum each total, whose noise the value department encrypts and sends with its own_done.
    epsilon: float = 0.0

    def side(self, side: Side) -> SidePlan:
        return self.left if side == "left" else self.right


def self_join(plan: MatchPlan) -> bool:
    """Both sides on one dataset: its department is sent both filters (it checks the matched rows)."""
    return (plan.left.department, plan.left.dataset) == (plan.right.department, plan.right.dataset)


@dataclass(frozen=True)
class SideStats:
    rows: int
    invalid_identifiers: int
    tokens: int
    missing_values: int = 0
    total_rows: int = 0   # the dataset's live rows without a filter (checked only for a filtered side)


@dataclass
class MatchOutcome:
    """What a match learnt, filled in as it goes (the caller reads it once the pump is done)."""

    left: SideStats | None = None
    right: SideStats | None = None
    intersection: IntersectionResult | None = None
    rows: list[tuple[list[str], list[bool]]] = field(default_factory=list)
    audit_index: int = -1
    grants: list[FieldGrant] = field(default_factory=list)
    # Sum, compare: each value-holding side's ciphertexts, in token order.
    values: dict[str, CipherColumns] = field(default_factory=dict)
    # Sum: one encrypted total per value field.
    totals: list[bytes] = field(default_factory=list)
    # Compare: the left rows of the pairs the client flagged (before the limit cut them).
    flagged_rows: int | None = None
    # The sides whose department admitted its ticket: the entry's single use there is spent.
    admitted: list[str] = field(default_factory=list)
    # Match, sum: the matched rows were fewer than this (min_aggregate): no totals or rows, and the caller
    # learns only "fewer than k" (0 when the aggregate was answered).
    fewer_than: int = 0
    # A noisy answer: the ε each noisy number got, and the cardinality the caller gets (the exact one stays
    # in `intersection`, for the log).
    epsilon: float = 0.0
    noisy_cardinality: int | None = None
    # A noisy sum: each total's sensitivity (the most one row adds), for the caller's error bounds.
    total_sensitivity: list[int] = field(default_factory=list)
    # A noisy sum: Enc(noise) for each value field's total, from the value department.
    total_noise: list[bytes] = field(default_factory=list)


# --- events: what a department sent (the pump converts each message), or what the pump did ---


@dataclass(frozen=True)
class Started:
    kind: ClassVar[str] = "started"
    side: Side
    sealed_key: bytes = b""


@dataclass(frozen=True)
class OwnTokens:
    kind: ClassVar[str] = "own_tokens"
    side: Side
    data: bytes


@dataclass(frozen=True)
class OwnValues:
    kind: ClassVar[str] = "own_values"
    side: Side
    data: bytes
    rows: int


@dataclass(frozen=True)
class OwnDone:
    kind: ClassVar[str] = "own_done"
    side: Side
    stats: SideStats
    total_noise: bytes = b""  # a noisy sum's value side: Enc(noise) per value field


@dataclass(frozen=True)
class Reblinded:
    kind: ClassVar[str] = "reblinded"
    side: Side
    data: bytes


@dataclass(frozen=True)
class ReblindDone:
    kind: ClassVar[str] = "reblind_done"
    side: Side
    tokens: int


@dataclass(frozen=True)
class Rows:
    kind: ClassVar[str] = "rows"
    side: Side
    rows: list[tuple[list[str], list[bool]]]


@dataclass(frozen=True)
class Report:
    """The department's own count of rows read and blinded (exact: the gateway coarsens what it shows)."""

    kind: ClassVar[str] = "progress"
    side: Side
    rows_read: int
    rows_blinded: int


@dataclass(frozen=True)
class Unrecognised:
    """A message of no kind the gateway knows."""

    kind: ClassVar[str] = "None"
    side: Side


@dataclass(frozen=True)
class StreamEnded:
    kind: ClassVar[str] = "end"
    side: Side


FromDepartment: TypeAlias = (Started | OwnTokens | OwnValues | OwnDone | Reblinded | ReblindDone | Report | Rows
                             | Unrecognised | StreamEnded)


@dataclass(frozen=True, eq=False)
class Intersected:
    result: IntersectionResult


@dataclass(frozen=True)
class TotalsComputed:
    totals: list[bytes]


@dataclass(frozen=True)
class FlagsReceived:
    """The pair indices the client flagged (its own claim; checked here)."""

    pairs: list[int]


Event: TypeAlias = FromDepartment | Intersected | TotalsComputed | FlagsReceived


# --- commands: what the pump must do, in order ---


@dataclass(frozen=True)
class StartSide:
    """Issue the side's ticket and start it in its department's admission turn; feed back its first reply."""

    side: Side
    peer_department: str
    peer_key: MatchingKey | None = None
    sealed_key: bytes = b""
    grants: tuple[FieldGrant, ...] = ()
    limit: int = 0


@dataclass(frozen=True)
class PeerTokens:
    data: bytes


@dataclass(frozen=True)
class PeerDone:
    stats: SideStats


@dataclass(frozen=True)
class DiscloseMatched:
    positions: list[int]


@dataclass(frozen=True)
class Send:
    """Queue a message to one side (never waiting for it to be written)."""

    to: Side
    message: PeerTokens | PeerDone | DiscloseMatched


@dataclass(frozen=True, eq=False)
class Intersect:
    """Intersect what came (CPU work, timed by the pump); feed back ``Intersected``."""

    intersector: Intersector
    pairs: bool
    max_pairs: int


@dataclass(frozen=True, eq=False)
class ComputeTotals:
    """Multiply the matched rows' ciphertexts per column in the pool, and each column's noise ciphertext if
    the sum is noisy; feed back ``TotalsComputed``."""

    values: CipherColumns
    positions: npt.NDArray[np.int64]
    noise: tuple[bytes, ...] = ()


@dataclass(frozen=True, eq=False)
class SendComparisons:
    """Blind and pack every matched pair's comparison in the pool, handing each batch out as it is ready."""

    left: CipherColumns
    right: CipherColumns
    pair_left: npt.NDArray[np.int64]
    pair_right: npt.NDArray[np.int64]
    comparison: Comparison


@dataclass(frozen=True)
class AskFlags:
    """Wait (within the flags timeout) for the client's flagged pairs; feed back ``FlagsReceived``."""


@dataclass(frozen=True)
class EndWriting:
    """Close both outgoing streams once everything queued is written; each department then ends its own."""


@dataclass(frozen=True)
class Finished:
    """Both departments recorded the session and ended their streams: the match is over."""


# Results the pump hands to its caller as they come.

@dataclass(frozen=True)
class Progress:
    """What the supervisor sees of the work so far; a side's counts are coarse, or 0 where withheld."""

    phase: str
    department: str
    tokens: int
    # A side's progress only ("left", "right"): see the MatchProgress message.
    stage: str = ""
    rows_blinded: int = 0
    tokens_reblinded: int = 0
    dataset_rows: int = 0
    filtered: bool = False
    withheld: bool = False


@dataclass(frozen=True)
class ResultsReady:
    """Comparison results are about to leave: the caller logs them first."""

    pairs: int


@dataclass(frozen=True)
class PackedResults:
    """A batch of packed, blinded comparison ciphertexts, in pair order."""

    data: bytes


@dataclass(frozen=True)
class ComparisonsSent:
    """Every pair's result has been sent; how they are packed."""

    pairs: int
    packing: Packing


@dataclass(frozen=True)
class Flagged:
    """The client flagged this many pairs (audited), covering this many left rows."""

    pairs: int
    rows: int


Command: TypeAlias = (StartSide | Send | Intersect | ComputeTotals | SendComparisons | AskFlags | EndWriting
                      | Finished | Progress | ResultsReady | ComparisonsSent | Flagged)


class MatchState(enum.Enum):
    START_LEFT = "start_left"
    START_RIGHT = "start_right"
    STREAMING = "streaming"
    INTERSECTING = "intersecting"
    TOTALS = "totals"
    FLAGS = "flags"
    DISCLOSING = "disclosing"
    CLOSING = "closing"
    DONE = "done"
    ERROR = "error"


_S = MatchState
# The events each state takes. A department's message not listed is its protocol error; any other
# event not listed is the pump's mistake.
_ACCEPTS: dict[MatchState, tuple[type, ...]] = {
    _S.START_LEFT: (Started,),
    _S.START_RIGHT: (Started,),
    _S.STREAMING: (OwnTokens, OwnValues, OwnDone, Reblinded, ReblindDone, Report),
    _S.INTERSECTING: (Intersected,),
    _S.TOTALS: (TotalsComputed,),
    _S.FLAGS: (FlagsReceived,),
    _S.DISCLOSING: (Rows,),
    _S.CLOSING: (StreamEnded,),
}
_FROM_DEPARTMENT = (Started, OwnTokens, OwnValues, OwnDone, Reblinded, ReblindDone, Report, Rows, Unrecognised,
                    StreamEnded)


@dataclass
class _SideStream:
    own_tokens: int = 0
    rows_blinded: int = 0   # as the department reported it
    reblinded: int = 0      # the other side's tokens this side has blinded again
    own_done: bool = False
    reblind_done: bool = False
    ended: bool = False


class MatchMachine:
    """One match's choreography: ``start()`` once, then ``handle(event)`` for each event; both return commands."""

    def __init__(self, plan: MatchPlan, outcome: MatchOutcome, stores: Stores | None = None) -> None:
        stores = stores or InMemory()
        self.plan = plan
        self.outcome = outcome
        self._state = MatchState.START_LEFT
        self._streams: dict[Side, _SideStream] = {"left": _SideStream(), "right": _SideStream()}
        self._intersector = stores.intersector(plan.max_tokens, TOKEN_BYTES)
        self._disclose_positions: list[int] | None = None
        self._started = False
        # What follows the end of both streams besides Finished: a non-disclosing comparison's results.
        self._after_close: list[Command] = []
        outcome.epsilon = plan.epsilon
        if plan.homomorphic is not None:
            for side in SIDES:
                side_plan = plan.side(side)
                if side_plan.value_fields:
                    outcome.values[side] = stores.ciphertexts(side_plan.department, len(side_plan.value_fields),
                                                              plan.homomorphic.ciphertext_width)

    @property
    def state(self) -> MatchState:
        return self._state

    @property
    def reading(self) -> frozenset[Side]:
        """The sides a message is awaited from now (the pump keeps one read open on each)."""
        if self._state is MatchState.STREAMING:
            return frozenset(s for s in SIDES if not self._finished(s))
        if self._state is MatchState.DISCLOSING:
            return frozenset(("left",))
        if self._state is MatchState.CLOSING:
            return frozenset(s for s in SIDES if not self._streams[s].ended)
        return frozenset()

    @property
    def closing(self) -> bool:
        """Whether the next message awaited from each side is the end of its stream."""
        return self._state is MatchState.CLOSING

    def start(self) -> list[Command]:
        """The first commands: start the left side (it answers before the right can start)."""
        if self._started:
            raise LocalProtocolError("the match has started already")
        self._started = True
        plan = self.plan
        return [StartSide("left", plan.right.department, plan.peer_key if plan.protocol.needs_peer_key else None,
                          grants=plan.grants, limit=plan.limit)]

    def handle(self, event: Event) -> list[Command]:
        """Consume one event; the commands that follow from it, in order."""
        if self._state is MatchState.ERROR:
            raise LocalProtocolError("the match has failed: it takes no more events")
        if not self._started:
            raise LocalProtocolError("start the match before handing it events")
        try:
            if not isinstance(event, _ACCEPTS.get(self._state, ())):
                self._refuse(event)
            return self._dispatch(event)
        except BaseException:
            self._state = MatchState.ERROR
            raise

    # --- per state ---

    def _dispatch(self, event: Event) -> list[Command]:
        if isinstance(event, Started):
            return self._on_started(event)
        if isinstance(event, (OwnTokens, OwnValues, OwnDone, Reblinded, ReblindDone, Report)):
            out = self._on_stream(event)
            if all(self._finished(s) for s in SIDES):
                self._state = MatchState.INTERSECTING
                out += [Progress("intersect", "", 0),
                        Intersect(self._intersector, self._pairs, self.plan.max_tokens)]
            return out
        if isinstance(event, Intersected):
            return self._on_intersected(event.result)
        if isinstance(event, TotalsComputed):
            self.outcome.totals = list(event.totals)
            return self._disclose()
        if isinstance(event, FlagsReceived):
            return self._on_flags(event.pairs)
        if isinstance(event, Rows):
            if event.side != "left":  # only the left side discloses
                self._refuse(event)
            self.outcome.rows = list(event.rows)
            return [Progress("disclose", self.plan.left.department, len(event.rows)), *self._close()]
        assert isinstance(event, StreamEnded)
        self._streams[event.side].ended = True
        if all(self._streams[s].ended for s in SIDES):
            self._state = MatchState.DONE
            after, self._after_close = self._after_close, []
            return [*after, Finished()]
        return []

    def _refuse(self, event: Event) -> None:
        if not isinstance(event, _FROM_DEPARTMENT):
            raise LocalProtocolError(f"{type(event).__name__} cannot happen while the match is "
                                     f"{self._state.value}")
        department = self.plan.side(event.side).department
        if isinstance(event, StreamEnded):
            raise RemoteProtocolError(f"department '{department}' ended the match stream early")
        if self._state is MatchState.CLOSING:
            raise RemoteProtocolError(f"department '{department}' sent {event.kind} after the end of the match")
        raise RemoteProtocolError(f"department '{department}' sent an unexpected {event.kind}")

    def _on_started(self, event: Started) -> list[Command]:
        expected: Side = "left" if self._state is MatchState.START_LEFT else "right"
        if event.side != expected:
            self._refuse(event)
        self.outcome.admitted.append(expected)
        if expected == "left":
            self._state = MatchState.START_RIGHT
            sealed = event.sealed_key if self.plan.protocol.needs_peer_key else b""
            return [StartSide("right", self.plan.left.department, sealed_key=sealed)]
        self._state = MatchState.STREAMING
        return []

    def _on_stream(self, event: OwnTokens | OwnValues | OwnDone | Reblinded | ReblindDone | Report) -> list[Command]:
        side, stream, relays = event.side, self._streams[event.side], self.plan.protocol.relays
        if self._finished(side):
            self._refuse(event)
        if isinstance(event, Report) and not stream.own_done:
            before, stream.rows_blinded = stream.rows_blinded, max(stream.rows_blinded, event.rows_blinded)
            return self._stepped(side, "blinding", before, stream.rows_blinded, self._rows_shown(side))
        if isinstance(event, OwnTokens) and not stream.own_done:
            before = stream.own_tokens
            stream.own_tokens += len(event.data) // self.plan.protocol.own_token_bytes
            if stream.own_tokens > self.plan.max_tokens:
                # Counted before anything is relayed: the peer department never takes more than the bound.
                self._too_many(side)
            out: list[Command] = []
            if relays:
                out.append(Send(other(side), PeerTokens(event.data)))
            else:
                self._add_tokens(side, event.data)
            return out + self._stepped(side, "blinding", before, stream.own_tokens, not self._noisy)
        if isinstance(event, OwnValues) and not stream.own_done and side in self.outcome.values:
            self.outcome.values[side].add(event.data, event.rows)
            return []
        if isinstance(event, OwnDone) and not stream.own_done:
            if side in self.outcome.values:
                self.outcome.values[side].check_complete(event.stats.tokens)
            self._take_noise(side, event.total_noise)
            setattr(self.outcome, side, event.stats)
            stream.own_done = True
            stream.rows_blinded = event.stats.rows  # every row is read and blinded (an older adapter reports none)
            relayed: list[Command] = [Send(other(side), PeerDone(event.stats))] if relays else []
            # A side may finish the peer's tokens before its own: then it is done, not re-blinding.
            stage = "re-blinding" if relays and not stream.reblind_done else "done"
            return [*relayed, self._side_progress(side, stage)]
        if isinstance(event, Reblinded) and relays and not stream.reblind_done:
            # This side finished the other side's tokens: they belong to the other side.
            self._add_tokens(other(side), event.data)
            before = stream.reblinded
            stream.reblinded += len(event.data) // TOKEN_BYTES
            return self._stepped(side, "re-blinding", before, stream.reblinded, not self._noisy)
        if isinstance(event, ReblindDone) and relays and not stream.reblind_done:
            stream.reblind_done = True
            return [self._side_progress(side, "done" if stream.own_done else "blinding")]
        self._refuse(event)
        raise AssertionError("unreachable")

    def _on_intersected(self, result: IntersectionResult) -> list[Command]:
        outcome, plan = self.outcome, self.plan
        outcome.intersection = result
        assert outcome.left is not None and outcome.right is not None
        is_sum = plan.homomorphic is not None and not self._pairs
        stats: dict[Side, SideStats] = {"left": outcome.left, "right": outcome.right}
        try:
            plan.check_sizes(Sizes(
                set_rows={side: s.rows for side, s in stats.items()},
                # An unfiltered side is its whole dataset, whose size is public: no complement to check.
                total_rows={side: s.total_rows for side, s in stats.items() if plan.side(side).filter_text},
                aggregated_rows=None if self._pairs else result.cardinality,
                pairs=len(result.pair_left) if self._pairs else None))
        except Suppressed as suppressed:
            # Nothing follows a suppressed aggregate: no totals, no rows; both sides end as after an empty match.
            outcome.fewer_than = suppressed.below
            return self._close()
        if plan.epsilon > 0:
            # Drawn here, after the sizes were checked on the exact number: the gateway holds that anyway.
            outcome.noisy_cardinality = noisy_count(result.cardinality, plan.epsilon)
        if is_sum:
            self._state = MatchState.TOTALS
            # Progress reaches the supervisor: a noisy answer's exact cardinality must not.
            shown = result.cardinality if outcome.noisy_cardinality is None else outcome.noisy_cardinality
            return [Progress("aggregate", "", shown),
                    ComputeTotals(outcome.values["left"], result.left_positions, tuple(outcome.total_noise))]
        if plan.comparison is not None:
            pairs = len(result.pair_left)
            out: list[Command] = [
                ResultsReady(pairs), Progress("compare", "", pairs),
                SendComparisons(outcome.values["left"], outcome.values["right"], result.pair_left,
                                result.pair_right, plan.comparison),
                ComparisonsSent(pairs, plan.comparison.packing)]
            if not plan.grants:
                # Both departments are done: their streams end (each records `served`) before any result leaves.
                self._after_close = out
                return self._close()
            self._state = MatchState.FLAGS
            return [*out, AskFlags()]
        return self._disclose()

    def _on_flags(self, chosen: list[int]) -> list[Command]:
        result = self.outcome.intersection
        assert result is not None
        pairs = len(result.pair_left)
        if len(set(chosen)) != len(chosen) or any(not 0 <= i < pairs for i in chosen):
            raise InvalidInput(f"flagged pairs must be distinct indices below {pairs}")
        positions = sorted({int(result.pair_left[i]) for i in chosen})
        self._disclose_positions = positions[:self.plan.limit]
        # The rows of pairs the client itself flagged: a count it may learn, and sees whenever none is cut.
        self.outcome.flagged_rows = len(positions)
        return [Flagged(len(chosen), len(positions)), *self._disclose()]

    def _disclose(self) -> list[Command]:
        result = self.outcome.intersection
        assert result is not None
        positions = (self._disclose_positions if self._disclose_positions is not None
                     else result.left_positions[:self.plan.limit].tolist())
        if not (self.plan.grants and positions):
            return self._close()
        self._state = MatchState.DISCLOSING
        return [Send("left", DiscloseMatched(positions))]

    def _close(self) -> list[Command]:
        self._state = MatchState.CLOSING
        return [EndWriting()]

    # --- progress: what the supervisor may see of a side before the safeguards ran (docs/privacy.md) ---

    @property
    def _noisy(self) -> bool:
        """A noisy answer withholds every side's token counts (invalid identifiers are in the difference)."""
        return self.plan.epsilon > 0

    def _rows_shown(self, side: Side) -> bool:
        """Rows blinded are shown, coarse, unless a noisy answer withholds the filtered set's size."""
        return not (self._noisy and self.plan.side(side).filter_text)

    def _stepped(self, side: Side, stage: str, before: int, now: int, shown: bool) -> list[Command]:
        """A side's progress when a count it may show passes a step; none for a withheld one (even the number
        of events would count its steps)."""
        if not shown or before // PROGRESS_EVERY == now // PROGRESS_EVERY:
            return []
        return [self._side_progress(side, stage)]

    def _side_progress(self, side: Side, stage: str) -> Progress:
        stream, side_plan = self._streams[side], self.plan.side(side)
        tokens_shown = not self._noisy
        return Progress(side, side_plan.department, coarse(stream.own_tokens) if tokens_shown else 0, stage=stage,
                        rows_blinded=coarse(stream.rows_blinded) if self._rows_shown(side) else 0,
                        tokens_reblinded=coarse(stream.reblinded) if tokens_shown else 0,
                        dataset_rows=side_plan.dataset_rows, filtered=bool(side_plan.filter_text),
                        withheld=not self._rows_shown(side))

    # --- helpers ---

    @property
    def _pairs(self) -> bool:
        return self.plan.homomorphic is not None and self.plan.homomorphic.pairs

    def _finished(self, side: Side) -> bool:
        stream = self._streams[side]
        return stream.own_done and (stream.reblind_done or not self.plan.protocol.relays)

    @property
    def _noisy_sum(self) -> bool:
        return self.plan.homomorphic is not None and not self._pairs and self.plan.epsilon > 0

    def _take_noise(self, side: Side, data: bytes) -> None:
        """A noisy sum's value side must send one noise ciphertext per value field; no other side sends any."""
        department = self.plan.side(side).department
        if not (self._noisy_sum and side in self.outcome.values):
            if data:
                raise RemoteProtocolError(f"department '{department}' sent noise for an answer that takes none")
            return
        columns = self.outcome.values[side]
        if len(data) != columns.columns * columns.width:
            # The gateway never computes a noisy sum's total without its department's noise.
            raise RemoteProtocolError(f"department '{department}' sent no noise (or noise of the wrong size) for "
                                      "a noisy sum: upgrade its adapter")
        self.outcome.total_noise = [data[i:i + columns.width] for i in range(0, len(data), columns.width)]

    def _add_tokens(self, side: Side, data: bytes) -> None:
        try:
            self._intersector.add(side, data)
        except TooManyTokens:
            self._too_many(side)

    def _too_many(self, side: Side) -> NoReturn:
        # The bound is the max_match_rows safeguard: say so to the supervisor.
        raise FailedPrecondition(f"the {side} set has more than {self.plan.max_tokens:,} rows (safeguard "
                                 "max_match_rows): refused") from None
