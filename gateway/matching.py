"""Private matching through the gateway: two adapter sessions, relayed tokens, one intersection.

The gateway opens one bidirectional stream per side. In keyed-hash mode each
side sends HMAC tokens under a per-query key the two departments agreed
without the gateway; in ECDH mode each side's blinded points are relayed to
the other side to be blinded again. Either way the gateway only ever holds
fixed-width tokens, intersects them in compact arrays and learns set sizes
and the intersection size, as the trust model allows.

Forwarding never blocks a reader: each destination has its own queue and
writer task, so two adapters each waiting for the other cannot deadlock the
relay (gRPC flow control still paces every individual stream).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from fedgate.crypto.intersect import Intersector, IntersectionResult, TooManyTokens
from fedgate.crypto.psi import TOKEN_BYTES
from fedgate.crypto.ticket import Ticket
from fedgate.datasets import FieldGrant
from fedgate.errors import FailedPrecondition, RemoteProtocolError, Unavailable
from fedgate.gateway.adapter_links import AdapterLinks, adapter_failure, ticket_to_proto
from fedgate.crypto.ticket import StaleBase
from fedgate.gateway.adapter_links import StaleTicket
from fedgate.gateway.homomorphic import CipherColumns
from fedgate.gateway.tickets import Admissions
from fedgate.interceptors import call_timeout, error_class
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.wire import matching_key_to_proto

# A match stream ends within MATCH_TIMEOUT_S (or the supervisor's deadline), and fails sooner if its
# adapter sends nothing for the idle timeout while the gateway waits for it (a hung department;
# `adapter_idle_timeout_s` in gateway.toml, STREAM_IDLE_S by default).
MATCH_TIMEOUT_S = 3600.0
STREAM_IDLE_S = 300.0
PROGRESS_EVERY = 50_000


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


@dataclass(frozen=True)
class SideStats:
    rows: int
    invalid_identifiers: int
    tokens: int
    missing_values: int = 0


def _coarse(tokens: int) -> int:
    """A side's token count as progress shows it: rounded down to the step, since an exact size would
    reach the supervisor before min_set_size is checked."""
    return tokens - tokens % PROGRESS_EVERY


@dataclass(frozen=True)
class Progress:
    phase: str
    department: str
    tokens: int


@dataclass
class MatchOutcome:
    left: SideStats | None = None
    right: SideStats | None = None
    intersection: IntersectionResult | None = None
    rows: list[tuple[list[str], list[bool]]] = field(default_factory=list)
    audit_index: int = -1
    grants: list[FieldGrant] = field(default_factory=list)
    # Sum, compare: each value-holding side's ciphertexts, in token order.
    values: dict[str, CipherColumns] = field(default_factory=dict)
    # Set by an `after` step to disclose these left positions instead of the first `limit` matched.
    disclose_positions: list[int] | None = None
    # Sum: one encrypted total per value field.
    totals: list[bytes] = field(default_factory=list)


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


class _Session:
    """One adapter's stream: a reader that dispatches, a writer fed by a queue."""

    def __init__(self, links: AdapterLinks, side: SidePlan, idle_timeout_s: float) -> None:
        self.side = side
        self.idle_timeout_s = idle_timeout_s
        stub = adapter_pb2_grpc.AdapterServiceStub(links.channel(side.department, side.endpoint))
        self.call = stub.Match(timeout=call_timeout(MATCH_TIMEOUT_S))
        self.outbox: asyncio.Queue[adapter_pb2.MatchIn | None] = asyncio.Queue()

    async def read(self) -> adapter_pb2.MatchOut:
        try:
            msg: adapter_pb2.MatchOut = await asyncio.wait_for(self.call.read(), self.idle_timeout_s)
        except TimeoutError:
            self.call.cancel()
            raise Unavailable(f"department '{self.side.department}' sent nothing for {self.idle_timeout_s:g} s; "
                              "the query was stopped") from None
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        if msg is grpc.aio.EOF:
            raise RemoteProtocolError(f"department '{self.side.department}' ended the match stream early")
        return msg

    async def finish(self) -> None:
        """Read the stream to its natural end: the adapter records the session, then ends the call.

        Never a cancel on success: a cancel races the department's own record of
        what it served (it would read "stopped: cancelled by the gateway").
        """
        try:
            msg = await asyncio.wait_for(self.call.read(), self.idle_timeout_s)
        except TimeoutError:
            self.call.cancel()
            raise Unavailable(f"department '{self.side.department}' did not end the match stream within "
                              f"{self.idle_timeout_s:g} s; the query was stopped") from None
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        if msg is not grpc.aio.EOF:
            raise RemoteProtocolError(f"department '{self.side.department}' sent {msg.WhichOneof('msg')} "
                                      "after the end of the match")

    async def write(self, msg: adapter_pb2.MatchIn) -> None:
        try:
            await self.call.write(msg)
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        except asyncio.InvalidStateError:
            # The call already ended; its status (read by the reader) says why.
            raise Unavailable(f"department '{self.side.department}' ended the match stream") from None

    def _failure(self, exc: grpc.aio.AioRpcError) -> Exception:
        if error_class(exc) == StaleBase.__name__:
            return StaleTicket(self.side.department)
        return adapter_failure(self.side.department, exc)

    async def pump_outbox(self) -> None:
        while (msg := await self.outbox.get()) is not None:
            await self.write(msg)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self.call.done_writing()

    def cancel(self) -> None:
        self.call.cancel()


def _start(side: SidePlan, ticket: Ticket, mode: str, role: str, min_set_size: int,
           homomorphic: Homomorphic | None, **extra: Any) -> adapter_pb2.MatchIn:
    if homomorphic is not None:
        extra.update(action=homomorphic.action, value_fields=side.value_fields)
        if side.value_fields:
            extra.update(paillier_key=homomorphic.paillier_key, paillier_key_signature=homomorphic.key_signature,
                         supervisor_certificate=homomorphic.supervisor_certificate)
    return adapter_pb2.MatchIn(start=adapter_pb2.MatchStart(
        ticket=ticket_to_proto(ticket), dataset=side.dataset, key_field=side.key_field, filter=side.filter_text,
        filter_nonce=side.filter_nonce, mode=mode, role=role, min_set_size=min_set_size, **extra))


After = Callable[[MatchOutcome], AsyncIterator[Any]]


async def run_match(links: AdapterLinks, left: SidePlan, right: SidePlan, mode: str,
                    ticket_for: Callable[[SidePlan], Awaitable[Ticket]], admissions: Admissions,
                    peer_key: Any, min_set_size: int,
                    disclose: list[FieldGrant], limit: int, max_tokens: int,
                    outcome: MatchOutcome, homomorphic: Homomorphic | None = None,
                    after: After | None = None, idle_timeout_s: float = STREAM_IDLE_S) -> AsyncIterator[Any]:
    """Drive both sessions to a result in `outcome`, yielding progress as tokens flow.

    For a sum or comparison, `homomorphic` has the value-holding sides send
    ciphertexts, and `after` runs on the intersection (yielding its own events)
    before any disclosure.
    """
    ls, rs = _Session(links, left, idle_timeout_s), _Session(links, right, idle_timeout_s)
    if homomorphic is not None:
        for name, plan in (("left", left), ("right", right)):
            if plan.value_fields:
                outcome.values[name] = CipherColumns(plan.department, len(plan.value_fields),
                                                     homomorphic.ciphertext_width)
    progress: asyncio.Queue[Progress | None] = asyncio.Queue()
    intersector = Intersector(max_tokens_per_side=max_tokens, width=TOKEN_BYTES)
    tasks: list[asyncio.Task[Any]] = []
    readers: asyncio.Future[Any] | None = None
    try:
        grants = [adapter_pb2.FieldRequest(name=g.name, level=g.level, form=g.form) for g in disclose]

        async def start(session: _Session, plan: SidePlan, role: str, **extra: Any) -> adapter_pb2.MatchOut:
            """Issue the side's ticket and start it, in the department's admission turn."""
            release = await admissions.acquire(plan.department)
            try:
                ticket = await ticket_for(plan)
                await session.write(_start(plan, ticket, mode, role, min_set_size, homomorphic, **extra))
                return await session.read()  # MatchStarted: the adapter has admitted the ticket
            finally:
                release()

        if mode == "keyed":
            sealed = (await start(ls, left, "left", peer_key=matching_key_to_proto(peer_key),
                                  peer_department=right.department, disclose_fields=grants,
                                  limit=limit)).started.sealed_key
            await start(rs, right, "right", sealed_key=sealed, peer_department=left.department)
        else:
            await start(ls, left, "left", peer_department=right.department, disclose_fields=grants, limit=limit)
            await start(rs, right, "right", peer_department=left.department)

        def add_tokens(side: str, data: bytes) -> None:
            try:
                intersector.add(side, data)  # type: ignore[arg-type]
            except TooManyTokens:
                # The intersector's bound is the max_match_rows safeguard: say so to the supervisor.
                raise FailedPrecondition(f"the {side} set has more than {max_tokens:,} rows (safeguard "
                                         "max_match_rows): refused") from None

        async def reader(me: _Session, peer: _Session, name: str, own_side: str, other_side: str) -> None:
            """Dispatch one side's messages: own tokens, tokens it re-blinded for the peer, stats."""
            own_count = 0
            finished = {"own": False, "reblind": mode == "keyed"}
            while not all(finished.values()):
                msg = await me.read()
                kind = msg.WhichOneof("msg")
                if kind == "own_tokens":
                    if mode == "keyed":
                        add_tokens(own_side, msg.own_tokens.data)
                    else:
                        peer.outbox.put_nowait(adapter_pb2.MatchIn(peer_tokens=msg.own_tokens))
                    before, own_count = own_count, own_count + len(msg.own_tokens.data) // (
                        TOKEN_BYTES if mode == "keyed" else 32)
                    if own_count // PROGRESS_EVERY != before // PROGRESS_EVERY:
                        progress.put_nowait(Progress(name, me.side.department, _coarse(own_count)))
                elif kind == "own_values" and name in outcome.values:
                    outcome.values[name].add(msg.own_values.data, msg.own_values.rows)
                elif kind == "own_done":
                    stats = SideStats(msg.own_done.rows, msg.own_done.invalid_identifiers, msg.own_done.tokens,
                                      msg.own_done.missing_values)
                    if name in outcome.values:
                        outcome.values[name].check_complete(stats.tokens)
                    setattr(outcome, name, stats)
                    if mode != "keyed":
                        peer.outbox.put_nowait(adapter_pb2.MatchIn(peer_done=msg.own_done))
                    finished["own"] = True
                    progress.put_nowait(Progress(name, me.side.department, _coarse(own_count)))
                elif kind == "reblinded" and mode != "keyed":
                    # This side finished the other side's tokens: they belong to the other side.
                    add_tokens(other_side, msg.reblinded.data)
                elif kind == "reblind_done" and mode != "keyed":
                    finished["reblind"] = True
                else:
                    raise RemoteProtocolError(f"department '{me.side.department}' sent an unexpected {kind}")

        tasks = [asyncio.create_task(ls.pump_outbox()), asyncio.create_task(rs.pump_outbox())]
        readers = asyncio.gather(reader(ls, rs, "left", "left", "right"),
                                 reader(rs, ls, "right", "right", "left"))
        readers.add_done_callback(lambda _: progress.put_nowait(None))
        while (event := await progress.get()) is not None:
            yield event
        await readers
        yield Progress("intersect", "", 0)
        pairs = homomorphic is not None and homomorphic.pairs
        outcome.intersection = intersector.finish(pairs=pairs, max_pairs=max_tokens)
        for name, stats in (("left", outcome.left), ("right", outcome.right)):
            if stats and 0 < stats.rows < min_set_size:
                raise FailedPrecondition(f"the {name} set has fewer than {min_set_size} rows after its filter "
                                         "(safeguard min_set_size): no result")
        if after is not None:
            async for event in after(outcome):
                yield event
        positions = (outcome.disclose_positions if outcome.disclose_positions is not None
                     else outcome.intersection.left_positions[:limit].tolist())
        if disclose and positions:
            ls.outbox.put_nowait(adapter_pb2.MatchIn(disclose=adapter_pb2.DiscloseMatched(positions=positions)))
            reply = await ls.read()
            outcome.rows = [(list(r.values), list(r.null)) for r in reply.rows.rows]
            yield Progress("disclose", left.department, len(outcome.rows))
        ls.outbox.put_nowait(None)
        rs.outbox.put_nowait(None)
        await asyncio.gather(*tasks)
        # Both departments record the session as served and end their streams; only then is the
        # query over (and its outcome logged by the caller).
        await asyncio.gather(ls.finish(), rs.finish())
    finally:
        for task in tasks:
            task.cancel()
        if readers is not None:
            readers.cancel()
            with contextlib.suppress(BaseException):
                await readers
        # A no-op for a stream that ended; stops the department's work on failure or cancellation.
        ls.cancel()
        rs.cancel()
