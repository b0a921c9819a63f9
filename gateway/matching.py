"""Private matching through the gateway: the pump between two adapter streams and the match machine.

The choreography (how sides start, where tokens go, when sizes are checked,
what a sum or comparison does after the intersection) is the machine's,
``fedgate.query.match``. This module opens one bidirectional stream per side,
turns each adapter message into a machine event and carries out the machine's
commands: tickets in the department's admission turn, queued writes, pool
work, the client's flags. The gateway only ever holds fixed-width tokens and
ciphertexts it cannot read, and learns set sizes and the intersection size.

Forwarding never blocks a reader: each destination has its own queue and
writer task, and at most one read per side is open, for the sides the
machine awaits; so two adapters each waiting for the other cannot deadlock the
relay (gRPC flow control still paces every individual stream).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from opentelemetry import trace

from fedgate.crypto.ticket import StaleBase, Ticket
from fedgate.core.errors import DeadlineExceeded, LocalProtocolError, Unavailable
from fedgate.gateway.adapter_links import AdapterLinks, StaleTicket, adapter_failure, ticket_to_proto
from fedgate.gateway.homomorphic import encrypted_totals, packed_comparisons
from fedgate.gateway.spill import QuerySpill
from fedgate.gateway.tickets import Admissions
from fedgate.server.interceptors import call_timeout, error_class
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.query import match as m
from fedgate.query.match import (
    PROGRESS_EVERY,
    ComparisonsSent,
    Flagged,
    Homomorphic,
    MatchOutcome,
    MatchPlan,
    PackedResults,
    Progress,
    ResultsReady,
    SidePlan,
    SideStats,
    self_join,
)
from fedgate.server.telemetry import safe_attributes
from fedgate.server.wire import matching_key_to_proto
from fedgate.server.worker_pool import WorkerPool

__all__ = ["MATCH_TIMEOUT_S", "PROGRESS_EVERY", "STREAM_IDLE_S", "ComparisonsSent", "Flagged", "Homomorphic",
           "MatchOutcome", "MatchPlan", "PackedResults", "Progress", "Relay", "ResultsReady", "SidePlan",
           "SideStats", "run_match"]

tracer = trace.get_tracer(__name__)

# A match stream ends within MATCH_TIMEOUT_S (or the supervisor's deadline), and fails sooner if its
# adapter sends nothing for the idle timeout while the gateway waits for it (a hung department;
# `adapter_idle_timeout_s` in gateway.toml, STREAM_IDLE_S by default).
MATCH_TIMEOUT_S = 3600.0
STREAM_IDLE_S = 300.0


class _EndOfStream(Exception):
    """The adapter ended its stream (the machine decides whether that was early)."""


class _Session:
    """One adapter's stream: reads on demand, a writer fed by a queue."""

    def __init__(self, links: AdapterLinks, side: SidePlan, idle_timeout_s: float) -> None:
        self.side = side
        self.idle_timeout_s = idle_timeout_s
        stub = adapter_pb2_grpc.AdapterServiceStub(links.channel(side.department, side.endpoint))
        self.call = stub.Match(timeout=call_timeout(MATCH_TIMEOUT_S))
        self.outbox: asyncio.Queue[adapter_pb2.MatchIn | None] = asyncio.Queue()
        self.links = links
        self.checkpoint_note = ""  # the one the ticket carried: what the adapter cosigns when it starts

    async def read(self) -> adapter_pb2.MatchOut:
        """The next message, while the gateway waits for one (``_EndOfStream`` if the adapter ended)."""
        msg = await self._receive("sent nothing for {timeout:g} s")
        if msg is None:
            raise _EndOfStream
        if msg.WhichOneof("msg") == "started":
            await self.links.keep_cosignature(self.side.department, self.checkpoint_note, msg.started.cosignature)
        return msg

    async def read_end(self) -> adapter_pb2.MatchOut | None:
        """Read the stream to its natural end (None): the adapter records the session, then ends the call.

        Never a cancel on success: a cancel races the department's own record of
        what it served (it would read "stopped: cancelled by the gateway").
        """
        return await self._receive("did not end the match stream within {timeout:g} s")

    async def _receive(self, idle: str) -> adapter_pb2.MatchOut | None:
        try:
            msg = await asyncio.wait_for(self.call.read(), self.idle_timeout_s)
        except TimeoutError:
            self.call.cancel()
            raise Unavailable(f"department '{self.side.department}' {idle.format(timeout=self.idle_timeout_s)}; "
                              "the query was stopped") from None
        except grpc.aio.AioRpcError as exc:
            raise self._failure(exc) from None
        if msg is grpc.aio.EOF:
            return None
        assert isinstance(msg, adapter_pb2.MatchOut)
        return msg

    async def write(self, msg: adapter_pb2.MatchIn) -> None:
        if msg.WhichOneof("msg") == "start":
            self.checkpoint_note = msg.start.ticket.checkpoint
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




@dataclass(frozen=True)
class Relay:
    """What the pump needs of the gateway around it."""

    links: AdapterLinks
    admissions: Admissions
    pool: WorkerPool
    idle_timeout_s: float = STREAM_IDLE_S
    flags_timeout_s: float = 300.0
    # Where a large match's tokens and ciphertexts go (None: always in memory); removed when the match ends.
    spill: QuerySpill | None = None


# What the pump hands its caller, in order: progress, and a comparison's results as they leave.
Yielded: TypeAlias = Progress | ResultsReady | PackedResults | ComparisonsSent | Flagged
_Inbox: TypeAlias = "asyncio.Queue[tuple[m.Side, m.FromDepartment | Exception]]"


async def run_match(relay: Relay, plan: MatchPlan, outcome: MatchOutcome,
                    ticket_for: Callable[[SidePlan], Awaitable[Ticket]],
                    flagged: Callable[[], Awaitable[list[int]]] | None = None) -> AsyncIterator[Yielded]:
    """Drive both sessions through the machine to a result in `outcome`, yielding what the caller sees.

    `ticket_for` issues a side's ticket; `flagged` gives the client's flagged
    pairs when a comparison discloses rows.
    """
    machine = m.MatchMachine(plan, outcome, relay.spill)
    pump = _Pump(relay, plan, ticket_for, flagged)
    inbox: _Inbox = asyncio.Queue()
    reads: dict[m.Side, asyncio.Task[None]] = {}
    try:
        commands = deque(machine.start())
        while True:
            while commands:
                command = commands.popleft()
                if isinstance(command, m.Finished):
                    return
                if isinstance(command, (Progress, ResultsReady, ComparisonsSent, Flagged)):
                    yield command
                elif isinstance(command, m.SendComparisons):
                    async for packed in pump.comparisons(command):
                        yield PackedResults(packed)
                elif (event := await pump.carry_out(command)) is not None:
                    commands.extend(machine.handle(event))
            for side in machine.reading - reads.keys():
                reads[side] = asyncio.create_task(pump.read(side, machine.closing, inbox))
            if not reads:
                raise LocalProtocolError(f"the match machine awaits nothing while {machine.state.value}")
            side, item = await inbox.get()
            del reads[side]
            if isinstance(item, Exception):
                raise item
            commands.extend(machine.handle(item))
    finally:
        for task in reads.values():
            task.cancel()
        pump.cancel()
        if relay.spill is not None:
            # Success, failure or cancellation: the spilled tokens and ciphertexts go with the match.
            relay.spill.remove()


class _Pump:
    """Carries out a match machine's commands on two adapter streams."""

    def __init__(self, relay: Relay, plan: MatchPlan, ticket_for: Callable[[SidePlan], Awaitable[Ticket]],
                 flagged: Callable[[], Awaitable[list[int]]] | None) -> None:
        self.relay, self.plan, self.ticket_for, self.flagged = relay, plan, ticket_for, flagged
        self.sessions = {side: _Session(relay.links, plan.side(side), relay.idle_timeout_s) for side in m.SIDES}
        self.writers = [asyncio.create_task(s.pump_outbox()) for s in self.sessions.values()]

    async def carry_out(self, command: m.Command) -> m.Event | None:
        """One command that is not a result for the caller; the event it gives back, if any."""
        if isinstance(command, m.StartSide):
            return await self.start(command)
        if isinstance(command, m.Send):
            self.sessions[command.to].outbox.put_nowait(_outgoing(command.message))
            return None
        if isinstance(command, m.Intersect):
            return m.Intersected(command.intersector.finish(pairs=command.pairs, max_pairs=command.max_pairs))
        if isinstance(command, m.ComputeTotals):
            return m.TotalsComputed(await self.totals(command))
        if isinstance(command, m.AskFlags):
            return m.FlagsReceived(await self.flags())
        if isinstance(command, m.EndWriting):
            for session in self.sessions.values():
                session.outbox.put_nowait(None)
            await asyncio.gather(*self.writers)
            return None
        raise LocalProtocolError(f"the pump cannot carry out {type(command).__name__}")

    async def start(self, command: m.StartSide) -> m.Event:
        """Issue the side's ticket and start it, in the department's admission turn; its first reply."""
        side = self.plan.side(command.side)
        session = self.sessions[command.side]
        release = await self.relay.admissions.acquire(side.department)
        try:
            ticket = await self.ticket_for(side)
            await session.write(_start_message(self.plan, command, ticket))
            try:
                return _incoming(command.side, await session.read())  # MatchStarted: the ticket is admitted
            except _EndOfStream:
                return m.StreamEnded(command.side)
        finally:
            release()

    async def read(self, side: m.Side, closing: bool, inbox: _Inbox) -> None:
        """One message from `side` (its end, once closing) into the inbox, or the failure reading it."""
        session = self.sessions[side]
        item: m.FromDepartment | Exception
        try:
            msg = await (session.read_end() if closing else session.read())
            item = m.StreamEnded(side) if msg is None else _incoming(side, msg)
        except _EndOfStream:
            item = m.StreamEnded(side)
        except Exception as exc:  # raised by the pump, which owns the query
            item = exc
        inbox.put_nowait((side, item))

    async def totals(self, command: m.ComputeTotals) -> list[bytes]:
        assert self.plan.homomorphic is not None
        with tracer.start_as_current_span("homomorphic.sum") as span:
            span.set_attributes(safe_attributes(**{"fedgate.rows": len(command.positions),
                                                   "fedgate.columns": command.values.columns}))
            return await encrypted_totals(self.relay.pool, self.plan.homomorphic.paillier_key, command.values,
                                          command.positions, command.noise)

    async def comparisons(self, command: m.SendComparisons) -> AsyncIterator[bytes]:
        assert self.plan.homomorphic is not None
        c = command.comparison
        # Not the current span: it spans yields, and a generator closed late (another context) could
        # not detach it (see telemetry.StreamServerSpans).
        span = tracer.start_span("homomorphic.compare",
                                 attributes=safe_attributes(**{"fedgate.pairs": len(command.pair_left)}))
        try:
            async for packed in packed_comparisons(self.relay.pool, self.plan.homomorphic.paillier_key,
                                                   command.left, command.right, command.pair_left,
                                                   command.pair_right, c.left_weight, c.right_weight, c.bound,
                                                   c.packing):
                yield packed
        finally:
            span.end()

    async def flags(self) -> list[int]:
        assert self.flagged is not None, "a comparison that discloses rows needs the client's flags"
        try:
            return await asyncio.wait_for(self.flagged(), self.relay.flags_timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"no flagged pairs came within {self.relay.flags_timeout_s:g} s of the "
                                   "comparison result: nothing disclosed") from None

    def cancel(self) -> None:
        for task in self.writers:
            task.cancel()
        # A no-op for a stream that ended; stops the department's work on failure or cancellation.
        for session in self.sessions.values():
            session.cancel()


# --- protobuf at the edge ---


def _start_message(plan: MatchPlan, command: m.StartSide, ticket: Ticket) -> adapter_pb2.MatchIn:
    side = plan.side(command.side)
    extra: dict[str, Any] = {}
    if plan.homomorphic is not None:
        extra.update(action=plan.homomorphic.action, value_fields=side.value_fields)
        if side.value_fields:
            extra.update(paillier_key=plan.homomorphic.paillier_key,
                         paillier_key_signature=plan.homomorphic.key_signature,
                         supervisor_certificate=plan.homomorphic.supervisor_certificate)
    if command.peer_key is not None:
        extra.update(peer_key=matching_key_to_proto(command.peer_key))
    if command.side == "left" and self_join(plan):
        # The department holds both sides: it checks the rows the answer covers, for which it needs both filters.
        extra.update(peer_filter=plan.right.filter_text, peer_filter_nonce=plan.right.filter_nonce)
    return adapter_pb2.MatchIn(start=adapter_pb2.MatchStart(
        ticket=ticket_to_proto(ticket), dataset=side.dataset, key_field=side.key_field, filter=side.filter_text,
        filter_nonce=side.filter_nonce, mode=plan.protocol.name, role=command.side, min_set_size=plan.min_set_size,
        progress_reports=True,
        peer_department=command.peer_department, sealed_key=command.sealed_key, limit=command.limit,
        disclose_fields=[adapter_pb2.FieldRequest(name=g.name, level=g.level, form=g.form) for g in command.grants],
        **extra))


def _stats(msg: adapter_pb2.SideDone) -> SideStats:
    return SideStats(msg.rows, msg.invalid_identifiers, msg.tokens, msg.missing_values, msg.total_rows)


_INCOMING: dict[str, Callable[[m.Side, adapter_pb2.MatchOut], m.FromDepartment]] = {
    "started": lambda side, msg: m.Started(side, msg.started.sealed_key),
    "own_tokens": lambda side, msg: m.OwnTokens(side, msg.own_tokens.data),
    "own_values": lambda side, msg: m.OwnValues(side, msg.own_values.data, msg.own_values.rows),
    "own_done": lambda side, msg: m.OwnDone(side, _stats(msg.own_done), msg.own_done.total_noise),
    "reblinded": lambda side, msg: m.Reblinded(side, msg.reblinded.data),
    "reblind_done": lambda side, msg: m.ReblindDone(side, msg.reblind_done.tokens),
    "rows": lambda side, msg: m.Rows(side, [(list(r.values), list(r.null)) for r in msg.rows.rows]),
    "progress": lambda side, msg: m.Report(side, msg.progress.rows_read, msg.progress.rows_blinded),
}


def _incoming(side: m.Side, msg: adapter_pb2.MatchOut) -> m.FromDepartment:
    convert = _INCOMING.get(msg.WhichOneof("msg") or "")
    return m.Unrecognised(side) if convert is None else convert(side, msg)


def _outgoing(message: m.PeerTokens | m.PeerDone | m.DiscloseMatched) -> adapter_pb2.MatchIn:
    if isinstance(message, m.PeerTokens):
        return adapter_pb2.MatchIn(peer_tokens=adapter_pb2.TokenData(data=message.data))
    if isinstance(message, m.PeerDone):
        s = message.stats
        return adapter_pb2.MatchIn(peer_done=adapter_pb2.SideDone(
            rows=s.rows, invalid_identifiers=s.invalid_identifiers, tokens=s.tokens, missing_values=s.missing_values))
    return adapter_pb2.MatchIn(disclose=adapter_pb2.DiscloseMatched(positions=message.positions))
