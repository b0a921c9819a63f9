"""One side of a private match, as the department's adapter plays it: the pump of its side machine.

The session verifies the ticket, reads its own rows (filtered, normalised,
invalid keys counted), turns them into tokens in the worker pool and streams
them out; with a relaying protocol it also blinds the peer's tokens as they
arrive. The left side can afterwards disclose its matched rows, masked here.
The rules (what a start may ask, which message may come when, the peer-token
bound, when the session is recorded) are ``fedgate.query.match_side``'s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import itertools
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedgate.core import certified
from fedgate.core.identity import Identity
from fedgate.core.supervisor_keys import key_statement
from fedgate.adapters.catalogue import Catalogue
from fedgate.adapters.disclose_tasks import DiscloseJob, FoundRow, disclose_chunk, disclosed
from fedgate.adapters.disclosure import Ask
from fedgate.adapters.pool_tasks import ChunkTokens, TokenJob, job_tokens, tokens_for
from fedgate.adapters.row_history import RowSets
from fedgate.adapters.sources import ChunkMapper, Source, chunk_mapper, serving
from fedgate.adapters.subject_refs import SUBJECT_KINDS, SubjectRefs
from fedgate.adapters.subject_uses import SubjectUse, SubjectUses
from fedgate.adapters.tickets import CANCELLED, Admission, TicketGate, recording_stops, stop_reason
from fedgate.server import metrics
from fedgate.server.worker_pool import WorkerPool
from fedgate.core.classification import Levels
from fedgate.crypto.paillier import MAX_CHUNK_CIPHERTEXTS, ciphertext_bytes
from fedgate.crypto.ticket import TicketRefused
from fedgate.core.encryptors import encryptor_for
from fedgate.core.datasets import FieldGrant
from fedgate.core.errors import (
    RemoteProtocolError,
    VerificationError,
)
from fedgate.core.filters import Filter
from fedgate.query import match_side as side
from fedgate.query.match_side import SideStart
from fedgate.query.protocols import SecretSetup
from fedgate.query.safeguards import Release, Safeguards, difference_k
from fedgate.query.sum_noise import SumNoise, sum_noise_for
from fedgate.server.wire import matching_key_from_proto
from fedgate.protos.fedgate.v1 import adapter_pb2, common_pb2

# Chunks are sized to the dataset: small sets get small chunks, so every worker is busy early and
# the last chunk (which nothing overlaps) is short; large sets get large ones, so pickling and
# message overhead stays small against the blinding. Measured: 1,024-row chunks made 10k x 10k
# ECDH 13% faster and 100k x 100k 10% slower than 2,048-row ones.
MIN_CHUNK_ROWS = 256
MAX_CHUNK_ROWS = 4096
# A side reports its progress each time this many more rows are blinded (the gateway coarsens what it shows).
REPORT_EVERY = 10_000


def chunk_rows(row_count: int, parallelism: int) -> int:
    """About four chunks per worker, within bounds."""
    return max(MIN_CHUNK_ROWS, min(MAX_CHUNK_ROWS, row_count // (4 * max(parallelism, 1))))


T = TypeVar("T")

# The most peer tokens one session takes (the safeguards will feed it from the logged entry).


def seal_context(query_id: str, left: str, right: str) -> bytes:
    return f"{query_id}|{left}|{right}".encode()


def side_start(m: adapter_pb2.MatchStart) -> SideStart:
    """The gateway's start as the department reads it (the ticket stays protobuf, for the gate)."""
    return SideStart(
        m.dataset, m.key_field, m.filter, m.filter_nonce, m.mode, m.role, m.peer_department,
        matching_key_from_proto(m.peer_key), m.sealed_key, m.min_set_size,
        tuple(FieldGrant(f.name, f.level, f.form) for f in m.disclose_fields), m.limit, m.action,
        tuple(m.value_fields), m.paillier_key, m.paillier_key_signature, m.supervisor_certificate, m.peer_filter,
        m.peer_filter_nonce, m.progress_reports)


def _from_gateway(msg: adapter_pb2.MatchIn) -> side.FromGateway:
    kind = msg.WhichOneof("msg")
    if kind == "peer_tokens":
        return side.PeerTokens(msg.peer_tokens.data)
    if kind == "peer_done":
        return side.PeerDone()
    if kind == "disclose":
        return side.DiscloseMatched(list(msg.disclose.positions))
    return side.OtherMessage(str(kind))


class MatchSessions:
    """Serves AdapterService.Match streams for one adapter."""

    def __init__(self, department: str, catalogue: Catalogue, gate: TicketGate, levels: Levels,
                 pool: WorkerPool, matching_key: X25519PrivateKey, ca_pem: bytes, row_sets: RowSets,
                 subjects: SubjectUses | None = None) -> None:
        self._department = department
        self._subjects = subjects  # None: whose records each side covered is not recorded
        self._row_sets = row_sets
        self._catalogue = catalogue
        self._gate = gate
        self._levels = levels
        # The RELEASE safeguards, with the numbers of each admitted entry.
        self._safeguards = Safeguards.for_department(levels, row_sets.history)
        self._pool = pool
        self._matching_key = matching_key
        self._ca_pem = ca_pem
        # Match sessions running now (each stops its work when its stream ends).
        self.active = 0

    async def serve(self, requests: AsyncIterator[adapter_pb2.MatchIn]) -> AsyncGenerator[adapter_pb2.MatchOut, None]:
        """The session: first message Start, then tokens flow both ways; see adapter.proto."""
        it = requests.__aiter__()
        first = await anext(it, None)
        side.check_first(None if first is None else first.WhichOneof("msg"))
        assert first is not None
        m = first.start
        decl, source = self._catalogue.lookup(m.dataset)
        plan = side.plan_session(side_start(m), decl)
        st = plan.start
        ask = Ask(plan.action, decl, plan.grants, st.filter_text, st.filter_nonce, st.min_set_size, st.key_field,
                  plan.values, st.paillier_key if plan.values else b"", st.role,
                  limit=st.limit if st.role == "left" else None, mode=st.mode, peer=st.peer_department)
        admission = await self._gate.admit(m.ticket, ask)
        if plan.values:
            await self._check_key_vouched(admission, m)
        try:
            noise = sum_noise_for(admission.params, plan.action, decl, st.role, plan.values)
        except TicketRefused as exc:
            await admission.refused_after_check(str(exc))
            raise
        peer = await self._self_join_peer(admission, plan)
        query_id = admission.ticket.claims.query_id
        left, right = ((self._department, st.peer_department) if st.role == "left"
                       else (st.peer_department, self._department))
        async with recording_stops(admission):  # a key that does not open ends the session here
            secret = plan.protocol.secret(SecretSetup(
                st.role, seal_context(query_id, left, right), st.peer_department, st.peer_key, st.sealed_key,
                self._matching_key, self._ca_pem))
        release = self._safeguards.release
        machine = side.SideMachine(plan, lambda n: release(Release(admission.params, peer_tokens=n)))
        session = _Session(plan, machine, source, secret.value, admission, self._pool, self._levels,
                           self._safeguards, self._row_sets, peer, noise,
                           self._subjects if plan.key_kind in SUBJECT_KINDS else None)
        await session.out.put(adapter_pb2.MatchOut(started=adapter_pb2.MatchStarted(
            sealed_key=secret.sealed_key, cosignature=admission.cosignature)))
        worker = asyncio.create_task(session.run(it))
        self.active += 1
        stopped = CANCELLED
        try:
            while (item := await session.out.get()) is not None:
                if isinstance(item, BaseException):
                    stopped = stop_reason(item)
                    raise item
                yield item
        finally:
            # Stop every piece of work this session started: chunk reading, queued pool tasks.
            worker.cancel()
            with contextlib.suppress(BaseException):
                await worker
            if not session.machine.recorded:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(admission.stopped(stopped))
            # Only now: Adapter.stop waits for no active session before it closes the disclosure log.
            self.active -= 1

    @staticmethod
    async def _self_join_peer(admission: Admission, plan: side.SessionPlan) -> side.JoinSide | None:
        """A self-join's right side, for the left side's check of the matched rows; a filter not logged is refused."""
        try:
            return side.self_join_peer(admission.params, plan)
        except VerificationError as exc:
            await admission.refused_after_check(str(exc))
            raise

    async def _check_key_vouched(self, admission: Admission, m: adapter_pb2.MatchStart) -> None:
        """Encrypt only under a key the supervisor who asked (the logged subject) signed, or refuse."""
        subject = admission.entry.subject
        try:
            certified.verify(key_statement(subject, m.paillier_key), m.paillier_key_signature,
                             m.supervisor_certificate, self._ca_pem, Identity.parse(subject), "the Paillier key")
        except VerificationError as exc:
            await admission.refused_after_check(str(exc))
            raise


def encrypted_noise(noise: SumNoise, paillier_key: bytes) -> bytes:
    """Each total's noise, drawn now and encrypted under the supervisor's key, back to back."""
    enc = encryptor_for(paillier_key)
    width = ciphertext_bytes(enc.n)
    return b"".join(c.to_bytes(width, "big") for c in enc.encrypt_many(noise.draw()))


class _Session:
    """One session's pump: its own tokens out, the peer's re-blinded, its machine's commands carried out."""

    def __init__(self, plan: side.SessionPlan, machine: side.SideMachine, source: Source, secret: bytes,
                 admission: Admission, pool: WorkerPool, levels: Levels, safeguards: Safeguards,
                 row_sets: RowSets, peer: side.JoinSide | None = None, noise: SumNoise | None = None,
                 subjects: SubjectUses | None = None) -> None:
        self.plan, self.machine, self.source, self.secret = plan, machine, source, secret
        self.admission, self.pool, self.levels, self.safeguards = admission, pool, levels, safeguards
        self.row_sets = row_sets
        self.peer = peer  # a self-join's right side (this is its left side): the matched rows are checked too
        self.noise = noise  # a noisy sum's value side: clamp every value, add noise to each total
        self.out: asyncio.Queue[adapter_pb2.MatchOut | BaseException | None] = asyncio.Queue(maxsize=64)
        self.hashes = bytearray()
        # Up to one chunk per worker in flight, results taken in order: every core blinds.
        self.depth = pool.parallelism
        self.reblinding = (None if plan.protocol.reblind is None else
                           Reblinding(plan.protocol.reblind, secret, plan.protocol.own_token_bytes, pool,
                                      chunk_mapper(source), self._send_reblinded))
        self.disclosed_rows: list[common_pb2.DisclosedRow] = []
        # The subject references of this side's token rows (hashed in the workers) and of its disclosed rows.
        self.subjects = subjects
        self.covered = SubjectRefs(subjects.secret, [plan.key_kind]) if subjects else None
        self.disclosed = SubjectRefs(subjects.secret, [plan.key_kind]) if subjects else None

    async def run(self, requests: AsyncIterator[adapter_pb2.MatchIn]) -> None:
        # Every source read of the session serves its query (a Spark source makes it its jobs' group).
        with serving(self.admission.ticket.claims.query_id):
            try:
                await asyncio.gather(self.produce_own(), self.consume(requests))
                await self.carry_out(self.machine.close())
                await self.out.put(None)  # the stream ends only after the session is recorded
            except BaseException as exc:  # handed to the writer, which raises it in the handler
                await self.out.put(exc)

    async def produce_own(self) -> None:
        plan, st = self.plan, self.plan.start
        rows = invalid = missing = tokens = blinded = 0
        pending: collections.deque[asyncio.Future[ChunkTokens]] = collections.deque()

        async def emit() -> None:
            nonlocal invalid, missing, tokens, blinded
            chunk = await pending.popleft()
            invalid += chunk.invalid
            missing += chunk.missing_values
            count = len(chunk.tokens) // plan.protocol.own_token_bytes
            tokens += count
            self.hashes.extend(chunk.hashes)
            if self.covered is not None:
                self.covered.add_digests(chunk.subject_refs)
            if chunk.tokens:
                await self.out.put(adapter_pb2.MatchOut(own_tokens=adapter_pb2.TokenData(data=chunk.tokens)))
                if plan.values:
                    await self.out.put(adapter_pb2.MatchOut(own_values=adapter_pb2.CipherData(
                        data=chunk.ciphertexts, rows=count)))
            before, blinded = blinded, blinded + count + chunk.invalid + chunk.missing_values
            if st.progress_reports and before // REPORT_EVERY != blinded // REPORT_EVERY:
                await self.out.put(adapter_pb2.MatchOut(progress=adapter_pb2.SideProgress(
                    rows_read=rows, rows_blinded=blinded)))

        size = chunk_rows(plan.decl.row_count, self.depth)
        if plan.values:  # one ciphertext chunk per token chunk, within the wire limit
            size = min(size, MAX_CHUNK_CIPHERTEXTS // len(plan.values))
        if difference_k(self.admission.params) > 1:
            # Before any token leaves, so not even the gateway holds a refused side's tokens.
            await asyncio.to_thread(self._check_difference)
        job = TokenJob(plan.protocol.tokens, self.secret, plan.key_kind, bool(plan.grants), plan.values,
                       st.paillier_key if plan.values else b"", self.noise.bounds if self.noise else (),
                       self.subjects.secret if self.subjects else b"")
        columns = [st.key_field, *plan.values]
        mapper = chunk_mapper(self.source)
        if mapper is not None:  # the source works on its rows where they are (Spark: on the executors)
            row_bytes = job.result_bytes(plan.protocol.own_token_bytes)
            async for done in _threaded(lambda: mapper.map_chunks(columns, plan.where, size, job_tokens, job,
                                                                  plan.decl.row_count, row_bytes=row_bytes)):
                rows += done.rows
                pending.append(_ready(done))
                await emit()
        else:
            async for raw in _chunks(self.source, columns, plan.where, size):
                rows += len(raw)
                pending.append(asyncio.ensure_future(self.pool.run(
                    tokens_for, job.tokens_of, job.secret, job.kind, raw, job.keep_hashes, job.value_fields,
                    job.paillier_key, job.clamp_to, job.subject_key)))
                if len(pending) >= self.depth:
                    await emit()
        while pending:
            await emit()
        # The live total too, so the gateway checks the rows the filter leaves out (min_set_size both ways).
        total = rows if plan.where is None else await asyncio.to_thread(self.source.count, None)
        # Drawn here, where the exact values are anyway; only the supervisor's key opens it (docs/privacy.md).
        noise = await asyncio.to_thread(encrypted_noise, self.noise, st.paillier_key) if self.noise else b""
        await self.out.put(adapter_pb2.MatchOut(own_done=adapter_pb2.SideDone(
            rows=rows, invalid_identifiers=invalid, tokens=tokens, missing_values=missing, total_rows=total,
            total_noise=noise)))
        await self.carry_out(self.machine.own_done(side.OwnStats(rows, invalid, tokens, missing)))

    async def consume(self, requests: AsyncIterator[adapter_pb2.MatchIn]) -> None:
        async for msg in requests:
            await self.carry_out(self.machine.receive(_from_gateway(msg)))
        self.machine.input_ended()

    async def carry_out(self, commands: list[side.SideCommand]) -> None:
        for command in commands:
            if isinstance(command, side.Reblind):
                assert self.reblinding is not None
                await self.reblinding.add(command.data)
            elif isinstance(command, side.FinishReblind):
                assert self.reblinding is not None
                await self.reblinding.finish()
                await self.out.put(adapter_pb2.MatchOut(reblind_done=adapter_pb2.SideDone(tokens=command.tokens)))
            elif isinstance(command, side.Disclose):
                self.disclosed_rows = await asyncio.to_thread(self._disclose, command.positions,
                                                              command.rows_after_filter)
                await self.carry_out(self.machine.disclosed(len(self.disclosed_rows)))
            elif isinstance(command, side.RecordServed):
                await self._record_served(command.rows)
            else:
                await self.out.put(adapter_pb2.MatchOut(rows=adapter_pb2.DisclosedRows(rows=self.disclosed_rows)))

    async def _send_reblinded(self, data: bytes) -> None:
        await self.out.put(adapter_pb2.MatchOut(reblinded=adapter_pb2.TokenData(data=data)))

    async def _record_served(self, rows: int) -> None:
        """Record `served`; from its start it is the session's record, never followed by `stopped`."""
        write = asyncio.ensure_future(self._record_use_and_served(rows))
        try:
            await asyncio.shield(write)  # a cancellation now does not cut the record short
        except asyncio.CancelledError:
            raise
        except BaseException:
            self.machine.record_failed()  # not recorded: the failure is, as `stopped`
            raise

    async def _record_use_and_served(self, rows: int) -> None:
        """Whose records this side covered and disclosed first: a side whose use is not recorded is not served."""
        if self.subjects is not None and self.covered is not None and self.disclosed is not None:
            use = SubjectUse.of(self.admission, self.covered.refs(), self.disclosed.refs(),
                                [f"{g.name}:{g.form}" for g in self.plan.grants] if self.disclosed_rows else [],
                                self.plan.start.role)
            await asyncio.to_thread(self.subjects.record, use)
        await self.admission.served(rows)
        metrics.record_disclosed_rows(self.admission.action, len(self.disclosed_rows))

    def _check_difference(self) -> None:
        """The difference check on this side's rows, read by their reference columns only (blocking);
        a refusal ends the session, recorded as its stop.

        A self-join's left side checks both sides' rows, then the matched rows (its department holds both
        sides); its right side checks nothing of its own, so the sets are checked in one order."""
        plan, subject, params = self.plan, self.admission.entry.subject, self.admission.params
        if plan.start.role == "right" and side.self_join(params, plan):
            return
        if self.peer is None:
            refs = self.row_sets.read(self.source, plan.decl, plan.where)
            total = refs.rows if plan.where is None else self.source.count(None)
            self.safeguards.release(Release(params, answer=self.row_sets.answer(subject, plan.decl, refs, total,
                                                                                plan.start.filter_text)))
            return
        own = side.JoinSide(plan.start.key_field, plan.start.filter_text, plan.where, plan.values)
        total = self.source.count(None)
        for answer in self.row_sets.self_join(subject, plan.decl, self.source, own, self.peer, total):
            self.safeguards.release(Release(params, answer=answer))

    def _disclose(self, positions: list[int], rows_after_filter: int) -> list[common_pb2.DisclosedRow]:
        """Find the matched rows again by their keys' local hashes, and mask what leaves."""
        plan, st = self.plan, self.plan.start
        self.safeguards.release(Release(self.admission.params, set_rows=rows_after_filter))
        width = 16
        hashes = bytes(self.hashes)
        count = len(hashes) // width
        if any(not 0 <= p < count for p in positions) or positions != sorted(set(positions)):
            raise RemoteProtocolError("disclosure positions must be distinct, ascending and within this set")
        job = DiscloseJob(frozenset(hashes[p * width:(p + 1) * width] for p in positions), plan.key_kind,
                          len(plan.values), plan.grants, plan.decl, self.levels, st.limit,
                          self.subjects.secret if self.subjects else b"")
        columns = [st.key_field, *plan.values, *(g.name for g in plan.grants)]
        mapper = chunk_mapper(self.source)
        found: list[FoundRow] = []
        if mapper is None:
            found = list(itertools.islice(disclosed(job, self.source.rows(columns, plan.where)), st.limit))
        else:
            # Found and masked where the rows are (Spark: on the executors); only the disclosed rows come back.
            # More rows than `limit` match only where rows share a key and values (one local hash): the first
            # `limit` are kept in partition order then, which may differ from the table's row order.
            size = chunk_rows(plan.decl.row_count, self.depth)
            chunks = mapper.map_chunks(columns, plan.where, size, disclose_chunk, job, plan.decl.row_count,
                                       "masking disclosed rows")
            try:
                for chunk in chunks:
                    found += chunk[:st.limit - len(found)]
                    if len(found) >= st.limit:
                        break
            finally:  # now, not when collected: the job's tasks end and its broadcast (the hashes) is destroyed
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        if self.disclosed is not None:
            self.disclosed.add_digests(b"".join(row.subject_ref for row in found))
        return [common_pb2.DisclosedRow(values=row.values, null=row.nulls) for row in found]


class Reblinding:
    """The peer's tokens blinded again, each chunk sent on in the order it came, as its own message.

    In the pool: one chunk per worker in flight. With a source that works where its rows are (Spark's
    executors), in batches of chunks, one job each: a job per chunk costs about the chunk's work
    (docs/performance.md). A batch fills to a partition's points for every core; two are in flight, so the
    cores a batch's last tasks leave idle take the next's first.
    """

    BATCHES_IN_FLIGHT = 2

    def __init__(self, reblind: Callable[[bytes, bytes], bytes], secret: bytes, point_bytes: int, pool: WorkerPool,
                 mapper: ChunkMapper | None, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._reblind, self._secret, self._point_bytes = reblind, secret, point_bytes
        self._pool, self._mapper, self._send = pool, mapper, send
        self._pending: collections.deque[asyncio.Future[list[bytes]]] = collections.deque()
        self._batch: list[bytes] = []
        self._batch_points = 0
        self._batch_limit = 0  # asked of the mapper at the first chunk, off the loop (it may start Spark)

    async def add(self, data: bytes) -> None:
        """Start on one chunk; wait for the oldest work if enough is in flight."""
        if self._mapper is None:
            self._pending.append(asyncio.ensure_future(self._pooled(data)))
            if len(self._pending) >= self._pool.parallelism:
                await self._emit()
            return
        if not self._batch_limit:
            self._batch_limit = await asyncio.to_thread(self._mapper.batch_rows)
        self._batch.append(data)
        self._batch_points += len(data) // self._point_bytes
        if self._batch_points >= self._batch_limit:
            self._submit()
            if len(self._pending) >= self.BATCHES_IN_FLIGHT:
                await self._emit()

    async def finish(self) -> None:
        """Send every chunk still pending (a partial batch too)."""
        self._submit()
        while self._pending:
            await self._emit()

    async def _pooled(self, data: bytes) -> list[bytes]:
        return [await self._pool.run(self._reblind, self._secret, data)]

    def _submit(self) -> None:
        if not self._batch:
            return
        assert self._mapper is not None
        batch, self._batch, self._batch_points = self._batch, [], 0
        # On a thread with this task's context: the job's group is the query served (serving_query()).
        self._pending.append(asyncio.ensure_future(asyncio.to_thread(
            self._mapper.map_parts, self._reblind, self._secret, batch, "re-blinding tokens")))

    async def _emit(self) -> None:
        for data in await self._pending.popleft():
            await self._send(data)


def _chunks(source: Source, columns: list[str], where: Filter | None,
            size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
    """Read the source in chunks on one thread of its own (a database cursor stays on its thread)."""
    def read() -> Iterator[list[tuple[Any, ...]]]:
        it = iter(source.rows(columns, where))
        while chunk := list(itertools.islice(it, size)):
            yield chunk
    return _threaded(read)


class _End:
    """The end of a threaded iteration (None may be an item)."""


_END = _End()


def _ready(value: T) -> asyncio.Future[T]:
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


async def _threaded(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Run the blocking iterator `make()` on a thread of its own, at most a few items ahead of the reader."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[T | BaseException | _End] = asyncio.Queue(maxsize=4)
    stop = threading.Event()

    def read() -> None:
        def put(item: T | BaseException | _End) -> None:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        try:
            it = make()
            try:
                for item in it:
                    if stop.is_set():
                        break
                    put(item)
            finally:  # a generator frees what its iteration holds (Spark: the job's keys) now, not when collected
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            put(_END)
        except BaseException as exc:  # handed to the reading coroutine
            if not stop.is_set():
                put(exc)

    # With this task's context: the thread's reads serve its query (sources label their work with it).
    reader = loop.run_in_executor(None, contextvars.copy_context().run, read)
    try:
        while not isinstance(item := await queue.get(), _End):
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not queue.empty():  # unblock a reader waiting on a full queue
            queue.get_nowait()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(reader), 5)
