"""A department's side of a private match, as a state machine (no I/O).

The adapter's pump (``fedgate.adapters.matching``) reads the department's
rows, runs the pool work and talks to the gateway; this machine holds the
rules: what a start may ask (``plan_session``), which gateway message may come
in which state, how many peer tokens a session takes, that only the left side
discloses and only once its own tokens are done, and that the session is
recorded as served exactly once, never followed by a stop::

    STREAMING --peer_tokens (relaying protocol, within the bound)--> Reblind
    STREAMING --peer_done (relaying protocol)--> FinishReblind            (peer input is over)
    STREAMING --disclose (left, disclosing)--> Disclose, or held until own_done
    own_done --> the held Disclose, if any;  disclosed(n) --> RecordServed(n), ReleaseRows
    close() once own tokens, peer input and any disclosure are done --> RecordServed (if none yet)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from fedgate.crypto.paillier import public_key_from_bytes
from fedgate.core.datasets import DatasetDecl, FieldGrant, FieldType
from fedgate.core.encryptors import MAX_VALUE_FIELDS
from fedgate.core.errors import InvalidInput, LocalProtocolError, RemoteProtocolError
from fedgate.core.filters import Filter, parse_checked
from fedgate.core.matching_keys import MatchingKey
from fedgate.crypto.ticket import TicketRefused
from fedgate.query.audit_params import QueryParams, SideRef, filter_digest
from fedgate.query import protocols
from fedgate.query.protocols import MatchProtocol

ACTIONS = ("query.match", "query.sum", "query.compare")


@dataclass(frozen=True)
class SideStart:
    """The gateway's start of one side, as the department reads it (the ticket stays with the pump)."""

    dataset: str
    key_field: str
    filter_text: str
    filter_nonce: bytes
    mode: str
    role: str
    peer_department: str
    peer_key: MatchingKey
    sealed_key: bytes = b""
    min_set_size: int = 0
    grants: tuple[FieldGrant, ...] = ()
    limit: int = 0
    action: str = ""
    value_fields: tuple[str, ...] = ()
    paillier_key: bytes = b""
    paillier_key_signature: bytes = b""
    supervisor_certificate: str = ""
    # A self-join's left side: the right side's filter (checked against the entry by `self_join_peer`).
    peer_filter_text: str = ""
    peer_filter_nonce: bytes = b""
    # The gateway takes progress reports (an older one would refuse them as unknown messages).
    progress_reports: bool = False


@dataclass(frozen=True)
class JoinSide:
    """One side of a self-join as the department reads it to find the matched rows."""

    key_field: str
    filter_text: str
    where: Filter | None
    values: tuple[str, ...] = ()  # a row missing one of them makes no token (sum, compare)


@dataclass(frozen=True)
class SessionPlan:
    """A start the department accepted, with what it resolved."""

    start: SideStart
    decl: DatasetDecl
    protocol: MatchProtocol
    key_kind: str
    where: Filter | None
    action: str
    values: tuple[str, ...]

    @property
    def grants(self) -> tuple[FieldGrant, ...]:
        return self.start.grants


def plan_session(start: SideStart, decl: DatasetDecl) -> SessionPlan:
    """Check a start against the dataset it names, or refuse it (InvalidInput, as the caller's mistake)."""
    key = decl.field(start.key_field)
    if key is None or key.key is None:
        raise InvalidInput(f"'{start.key_field}' is not a key field of '{decl.qualified_name}'")
    if start.mode not in protocols.names() or start.role not in protocols.ROLES:
        raise InvalidInput(f"mode must be {' or '.join(protocols.names())} and role left or right")
    action = start.action or "query.match"
    # Which sides encrypt values: none in a match, the left (value holder) in a sum, both in a comparison.
    wants_values = {"query.match": False, "query.sum": start.role == "left", "query.compare": True}
    if action not in ACTIONS or wants_values[action] != bool(start.value_fields):
        raise InvalidInput(f"a {start.role} side of a {action.removeprefix('query.')} "
                           f"{'names' if wants_values.get(action) else 'carries no'} value fields")
    values = start.value_fields
    if len(values) > MAX_VALUE_FIELDS or len(set(values)) != len(values):
        raise InvalidInput(f"name 1 to {MAX_VALUE_FIELDS} distinct value fields")
    for name in values:
        field = decl.field(name)
        if field is None or field.type is not FieldType.INT:
            raise InvalidInput(f"'{name}' is not an integer field of '{decl.qualified_name}'")
    if values:
        public_key_from_bytes(start.paillier_key)  # refuses a malformed or too small key
    where = parse_checked(start.filter_text, decl.field_types)
    if start.grants and start.role != "left":
        raise InvalidInput("only the left side discloses rows")
    return SessionPlan(start, decl, protocols.get(start.mode), key.key.value, where, action, values)


def self_join(params: QueryParams, plan: SessionPlan) -> bool:
    """Whether the admitted entry logs the other side of this match on this same dataset."""
    other = "right" if plan.start.role == "left" else "left"
    return SideRef(plan.decl.qualified_name, other) in params.sides


def self_join_peer(params: QueryParams, plan: SessionPlan) -> JoinSide | None:
    """The left side of a self-join: the right side, its filter the one the entry's digest binds (the left side
    checks both sides' rows and the matched rows). None for any other side; TicketRefused for a filter not logged."""
    start, qualified = plan.start, plan.decl.qualified_name
    if start.role != "left" or not self_join(params, plan):
        if start.peer_filter_text or start.peer_filter_nonce:
            raise TicketRefused("a peer filter is sent only to the left side of a self-join")
        return None
    logged = params.logged_side(qualified, "right")
    digest = logged.filter.digest if logged.filter else ""
    if (start.peer_filter_text or digest) and filter_digest(start.peer_filter_nonce, start.peer_filter_text) != digest:
        # An older gateway sends none: refused, as the matched rows could not be checked.
        raise TicketRefused("the right side's filter sent to this self-join's left side is not the logged one")
    if plan.decl.field(logged.key_field) is None:
        raise TicketRefused("the self-join's logged right key is not a field of this dataset")
    return JoinSide(logged.key_field, start.peer_filter_text,
                    parse_checked(start.peer_filter_text, plan.decl.field_types), logged.value_fields)


def check_first(kind: str | None) -> None:
    """A match stream starts with MatchStart."""
    if kind != "start":
        raise RemoteProtocolError("a match stream starts with MatchStart")


# --- what the gateway sends once the session runs ---


@dataclass(frozen=True)
class PeerTokens:
    kind: ClassVar[str] = "peer_tokens"
    data: bytes


@dataclass(frozen=True)
class PeerDone:
    kind: ClassVar[str] = "peer_done"


@dataclass(frozen=True)
class DiscloseMatched:
    kind: ClassVar[str] = "disclose"
    positions: list[int]


@dataclass(frozen=True)
class OtherMessage:
    """Any other message (a second start, or one of no known kind)."""

    kind: str


FromGateway: TypeAlias = PeerTokens | PeerDone | DiscloseMatched | OtherMessage


# --- commands for the pump ---


@dataclass(frozen=True)
class Reblind:
    """Blind the peer's tokens again in the pool; results leave in the order they came in."""

    data: bytes


@dataclass(frozen=True)
class FinishReblind:
    """Send every pending re-blinded chunk, then reblind_done with the peer's token count."""

    tokens: int


@dataclass(frozen=True)
class Disclose:
    """Find these positions' rows again and render them (the own set had `rows_after_filter` rows)."""

    positions: list[int]
    rows_after_filter: int


@dataclass(frozen=True)
class RecordServed:
    """Record the session as served (`rows` disclosed, or tokens sent), shielded from cancellation."""

    rows: int


@dataclass(frozen=True)
class ReleaseRows:
    """The disclosed rows are recorded: send them."""


SideCommand: TypeAlias = Reblind | FinishReblind | Disclose | RecordServed | ReleaseRows


@dataclass(frozen=True)
class OwnStats:
    rows: int
    invalid_identifiers: int
    tokens: int
    missing_values: int = 0


class SideState(enum.Enum):
    STREAMING = "streaming"
    CLOSED = "closed"
    ERROR = "error"


class SideMachine:
    """One department's session after its start was accepted and its ticket admitted."""

    def __init__(self, plan: SessionPlan, check_peer_tokens: Callable[[int], None]) -> None:
        self.plan = plan
        # The max_match_rows safeguard as the department runs it: refuses a count past the logged bound.
        self.check_peer_tokens = check_peer_tokens
        self._state = SideState.STREAMING
        self._peer_tokens = 0
        self._peer_done = False
        self._input_ended = False
        self._own: OwnStats | None = None
        self._held: DiscloseMatched | None = None   # a disclosure asked for before own tokens were done
        self._disclosure = "none"                    # none | held | running | done
        self._recorded = False

    @property
    def state(self) -> SideState:
        return self._state

    @property
    def recorded(self) -> bool:
        """Whether `served` is (being) recorded: then it is the session's record, never followed by `stopped`."""
        return self._recorded

    def receive(self, message: FromGateway) -> list[SideCommand]:
        """One message from the gateway; what to do about it."""
        return self._guard(self._receive, message)

    def own_done(self, stats: OwnStats) -> list[SideCommand]:
        """Every own token (and value) has been queued to leave."""
        return self._guard(self._own_done, stats)

    def disclosed(self, rows: int) -> list[SideCommand]:
        """The disclosure found and rendered `rows` rows: record, then release them."""
        return self._guard(self._disclosed, rows)

    def input_ended(self) -> None:
        """The gateway finished writing."""
        self._input_ended = True

    def record_failed(self) -> None:
        """`served` could not be written: the failure will be recorded as `stopped` instead."""
        self._recorded = False

    def close(self) -> list[SideCommand]:
        """The session is over: record it as served, unless that is done already."""
        if self._state is not SideState.STREAMING or self._own is None or not self._input_ended \
                or self._disclosure in ("held", "running"):
            raise LocalProtocolError("the session is not over: own tokens, peer input or a disclosure is pending")
        self._state = SideState.CLOSED
        # Tokens only, or a disclosure nobody asked for: nothing but tokens left.
        return self._record(0 if self.plan.grants else self._own.tokens)

    # --- rules ---

    def _receive(self, message: FromGateway) -> list[SideCommand]:
        relays = self.plan.protocol.relays
        if isinstance(message, PeerTokens) and relays and not self._peer_done:
            self._peer_tokens += len(message.data) // self.plan.protocol.own_token_bytes
            self.check_peer_tokens(self._peer_tokens)
            return [Reblind(message.data)]
        if isinstance(message, PeerDone) and relays and not self._peer_done:
            self._peer_done = True
            return [FinishReblind(self._peer_tokens)]
        if isinstance(message, DiscloseMatched) and self.plan.grants and self._disclosure == "none":
            if self._own is None:
                self._held, self._disclosure = message, "held"
                return []
            return self._disclose(message)
        start = self.plan.start
        raise RemoteProtocolError(f"unexpected {message.kind} in a {start.mode} match as {start.role}")

    def _own_done(self, stats: OwnStats) -> list[SideCommand]:
        if self._own is not None:
            raise LocalProtocolError("own tokens are done already")
        self._own = stats
        if self._held is not None:
            held, self._held = self._held, None
            return self._disclose(held)
        return []

    def _disclose(self, message: DiscloseMatched) -> list[SideCommand]:
        assert self._own is not None
        self._disclosure = "running"
        return [Disclose(list(message.positions), self._own.rows)]

    def _disclosed(self, rows: int) -> list[SideCommand]:
        if self._disclosure != "running":
            raise LocalProtocolError("no disclosure is running")
        self._disclosure = "done"
        return [*self._record(rows), ReleaseRows()]

    def _record(self, rows: int) -> list[SideCommand]:
        if self._recorded:
            return []
        self._recorded = True
        return [RecordServed(rows)]

    def _guard(self, step: Callable[[Any], list[SideCommand]], arg: object) -> list[SideCommand]:
        if self._state is not SideState.STREAMING:
            raise LocalProtocolError(f"the session is {self._state.value}: it takes no more events")
        try:
            return step(arg)
        except BaseException:
            self._state = SideState.ERROR
            raise
