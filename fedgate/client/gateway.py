"""The client library used by the CLI and the tests: supervisors and officers talk to the gateway.

Every method returns domain objects; the protobuf messages stay inside this
module. The sides of a match, sum or comparison are `Side`s passed by name,
so swapping them (which changes whose rows are disclosed) cannot happen by
position.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import grpc

from fedgate.core import certified
from fedgate.core.audit_entry import AuditEntry
from fedgate.client.audit_open import OpenedEntry, open_entry
from fedgate.client.audit_verify import TrustedState, VerifyReport, verify_log
from fedgate.core.officer_seal import OpenKey
from fedgate.crypto.checkpoint import VerifierKey
from fedgate.crypto.cosignature import WitnessKey
from fedgate.crypto.compare import Packing
from fedgate.core.datasets import FieldGrant, RegisteredDataset
from fedgate.core.addresses import address_problem
from fedgate.core.errors import InvalidInput, RemoteCallFailed
from fedgate.core.identity import GATEWAY, identity_from_pem
from fedgate.core.row_limit import RowLimit
from fedgate.query import noise, protocols
from fedgate.query.match import Progress
from fedgate.client.approvals import NONCES_KEY, QUERY_ID_KEY, Collect, HeldForApproval, HeldRequest
from fedgate.protos.fedgate.v1 import approvals_pb2, approvals_pb2_grpc, audit_pb2, audit_pb2_grpc, policy_pb2, policy_pb2_grpc
from fedgate.protos.fedgate.v1 import common_pb2, query_pb2, query_pb2_grpc, registry_pb2, registry_pb2_grpc
from fedgate.server.span_wire import span_from_proto
from fedgate.server.trace_store import StoredSpan
from fedgate.core.supervisor_keys import SupervisorKey, flagged_indices, key_statement
from fedgate.server.tls import TlsFiles, check_own, handshake_hint, secure_channel
from fedgate.server.wire import dataset_from_proto

DEFAULT_TIMEOUT_S = 30.0
# Matching, sums and comparisons stream for as long as the data takes; they still end. The gateway
# gives each adapter stream the same bound (or this caller's deadline, which it passes on).
STREAM_TIMEOUT_S = 3600.0

# (phase, department, count so far): called as tokens flow and while results are decrypted.
OnProgress = Callable[[str, str, int], None]


# A progress event in full, as the gateway's match machine made it (see MatchProgress in query.proto); rate and
# time left are the caller's to work out.
ProgressReport = Progress
OnReport = Callable[[ProgressReport], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Side:
    """One side of a match, sum or comparison: a dataset, the field whose keys are matched, and a row filter."""

    dataset: str
    key_field: str
    filter: str = ""

    def to_proto(self) -> query_pb2.MatchSide:
        return query_pb2.MatchSide(dataset=self.dataset, key_field=self.key_field, filter=self.filter)


# The small results below are named tuples: callers unpack them as pairs (`rows, index = ...`), and
# the names say which is which.

@dataclass(frozen=True)
class FewerThan:
    """A count below its threshold: all the caller learns is "fewer than k" (the same for 0 as for k-1)."""

    k: int

    def __str__(self) -> str:
        return f"< {self.k}"


class NoisyCount(int):
    """A count answered with differential-privacy noise of `epsilon` (as an int, the noisy value)."""

    epsilon: float

    def __new__(cls, value: int, epsilon: float) -> NoisyCount:
        count = super().__new__(cls, value)
        count.epsilon = epsilon
        return count

    def within(self, confidence: float = 0.95) -> int:
        """How far from the true count this answer is, at most, with this probability."""
        return noise.accuracy(noise.count_scale(self.epsilon), confidence)


class RowCount(NamedTuple):
    """A live row count (or only that it is below a threshold), and the audit index of the query."""

    rows: int | FewerThan
    audit_index: int


class BudgetUse(NamedTuple):
    """ε an agency spent on a dataset in a period, out of the period's budget."""

    agency: str
    dataset: str
    period: str
    spent: float
    budget: float


class PolicyVersion(NamedTuple):
    """The rules the gateway loaded, and the digest of its policy files."""

    rules: int
    digest: str


class CheckpointNote(NamedTuple):
    """A signed checkpoint: the tree size it covers and its signed note (text)."""

    size: int
    note: str


class LogEntry(NamedTuple):
    """An audit entry as the log hashed it: its index in the log and its canonical bytes."""

    audit_index: int
    body: bytes


class IndexedEntry(NamedTuple):
    """An audit entry and its index in the log."""

    audit_index: int
    entry: AuditEntry


@dataclass(frozen=True)
class TraceView:
    """A trace's spans, ordered by start, and the departments whose spans could not be read."""

    spans: list[StoredSpan]
    missing: tuple[str, ...]


@dataclass(frozen=True)
class EntryProof:
    """An entry, its inclusion proof and the signed checkpoint of the tree the proof leads to."""

    index: int
    size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]  # the proof: sibling hashes from the leaf up
    checkpoint: str  # the signed note of the tree of `size`
    body: bytes  # the entry's canonical bytes


@dataclass(frozen=True)
class MatchSideStats:
    """What one side of a match sent: its rows, the identifiers that were invalid, its tokens."""

    dataset: str
    rows: int
    invalid_identifiers: int
    tokens: int
    missing_values: int = 0


@dataclass(frozen=True)
class MatchResult:
    """A match's answer: both sides' stats, the matched count and any disclosed left rows."""

    left: MatchSideStats
    right: MatchSideStats
    cardinality: int
    distinct_matches: int
    fields: list[FieldGrant]
    rows: list[list[str | None]]
    audit_index: int
    # Set when fields were disclosed: rows returned of the matched rows, and what cut them.
    row_limit: RowLimit | None = None
    # Set (k) when fewer than k rows matched: then cardinality and distinct_matches are 0 and nothing is disclosed.
    fewer_than: int = 0
    # > 0: the cardinality is noisy (ε-DP); distinct_matches and the sides' stats are withheld (0).
    epsilon: float = 0.0

    def within(self, confidence: float = 0.95) -> int:
        """How far the cardinality may be from the truth with this probability (0: exact)."""
        return noise.accuracy(noise.count_scale(self.epsilon), confidence) if self.epsilon > 0 else 0


def _stats(msg: query_pb2.MatchSideStats) -> MatchSideStats:
    return MatchSideStats(msg.dataset, msg.rows, msg.invalid_identifiers, msg.tokens, msg.missing_values)


@dataclass(frozen=True)
class SumResult:
    """An intersection sum's answer: both sides' stats, the matched count and the decrypted totals."""

    values: MatchSideStats
    other: MatchSideStats
    cardinality: int
    distinct_matches: int
    # Decrypted in this process: value field -> total.
    totals: dict[str, int]
    audit_index: int
    # Set (k) when fewer than k rows matched: then there are no totals and cardinality is 0.
    fewer_than: int = 0
    # > 0: the cardinality and each total are noisy, each ε-DP with this ε; the sides' stats are withheld.
    epsilon: float = 0.0
    # A noisy sum: the most one row adds to each total (its field's declared bounds).
    sensitivity: dict[str, int] = field(default_factory=dict)

    def within(self, total: str | None = None, confidence: float = 0.95) -> int:
        """How far the cardinality (or the named total) may be from the truth with this probability (0: exact)."""
        if self.epsilon <= 0:
            return 0
        scale = (noise.count_scale(self.epsilon) if total is None
                 else noise.sum_scale(self.sensitivity[total], self.epsilon))
        return noise.accuracy(scale, confidence)


@dataclass(frozen=True)
class CompareResult:
    """A comparison's answer: the compared pairs, those flagged, and any disclosed flagged left rows."""

    left: MatchSideStats
    right: MatchSideStats
    pairs: int
    # Indices of the pairs where a·x > b·y, decrypted in this process.
    flagged: list[int]
    fields: list[FieldGrant]
    rows: list[list[str | None]]
    audit_index: int
    # Set when fields were disclosed: rows returned of the flagged left rows, and what cut them.
    row_limit: RowLimit | None = None


@dataclass(frozen=True)
class Disclosure:
    """Disclosed fields of the filtered rows, each plaintext or masked as policy allows."""

    fields: list[FieldGrant]
    rows: list[list[str | None]]
    matched_rows: int
    audit_index: int
    row_limit: RowLimit | None = None


def _grants(fields: Iterable[query_pb2.DisclosedField]) -> list[FieldGrant]:
    return [FieldGrant(f.name, f.level, f.form) for f in fields]


def _rows(rows: Iterable[Any]) -> list[list[str | None]]:
    """Disclosed rows, a value flagged null becoming None."""
    return [[None if null else value for value, null in zip(row.values, row.null)] for row in rows]


def _row_limit(reply: Any) -> RowLimit | None:
    """The reply's row limit, when it disclosed rows."""
    if not reply.HasField("row_limit"):
        return None
    msg = reply.row_limit
    return RowLimit(msg.available, msg.returned, msg.requested, msg.applied, msg.limited_by)


@dataclass(frozen=True)
class _Reporter:
    """The caller's progress callbacks: the short form (phase, department, count) and the full report."""

    on_progress: OnProgress | None
    on_report: OnReport | None = None

    def __call__(self, phase: str, department: str, count: int) -> None:
        self.send(ProgressReport(phase, department, count))

    def send(self, report: ProgressReport) -> None:
        if self.on_progress:
            self.on_progress(report.phase, report.department, report.tokens)
        if self.on_report:
            self.on_report(report)


def _report_of(msg: Any) -> ProgressReport:
    return ProgressReport(msg.phase, msg.department, msg.tokens, msg.stage, msg.rows_blinded, msg.tokens_reblinded,
                          msg.dataset_rows, msg.filtered, msg.withheld)


async def _outcomes(events: AsyncIterator[Any], report: _Reporter) -> AsyncIterator[tuple[str, Any]]:
    """A query stream's events other than progress, as (kind, event); progress goes to `report`.

    The stream is read to its end, past the result: the server logs the outcome before it closes it.
    """
    async for event in events:
        kind = event.WhichOneof("event")
        if kind == "progress":
            report.send(_report_of(event.progress))
        else:
            yield kind, event


def _received(result: T | None, stream: str) -> T:
    if result is None:
        raise RemoteCallFailed("UNKNOWN", f"the {stream} stream ended without a result")
    return result


class GatewayClient:
    """An mTLS connection to the gateway under the identity in `tls`'s certificate."""

    def __init__(self, address: str, tls: TlsFiles, timeout: float = DEFAULT_TIMEOUT_S,
                 collect: Collect | None = None) -> None:
        if (problem := address_problem(address)) is not None:
            raise InvalidInput(f"gateway address {problem}")
        # Our own files first: a key that is not the certificate's, or a certificate from another CA,
        # would otherwise surface only as a failed handshake.
        check_own(tls)
        self._address = address
        self._tls = tls
        self._channel = secure_channel(address, tls, GATEWAY)
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._audit = audit_pb2_grpc.AuditServiceStub(self._channel)
        self._query = query_pb2_grpc.QueryServiceStub(self._channel)
        self._policy = policy_pb2_grpc.PolicyServiceStub(self._channel)
        self._approvals = approvals_pb2_grpc.ApprovalServiceStub(self._channel)
        self._timeout = timeout
        # Queries sent again to collect a held request carry its query id and filter nonces.
        self._metadata = collect.metadata() if collect else ()

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def _hint(self, code: str, details: str) -> str | None:
        return handshake_hint(details, self._address, self._tls, "the gateway") if code == "UNAVAILABLE" else None

    async def list_datasets(self, department: str | None = None) -> list[RegisteredDataset]:
        async with _calling(self._hint):
            reply = await self._registry.ListDatasets(
                registry_pb2.ListDatasetsRequest(department=department or ""), timeout=self._timeout)
        return [
            RegisteredDataset(dataset_from_proto(item.spec), item.department_display_name,
                              item.registered_at.ToDatetime(tzinfo=dt.UTC),
                              liveness=item.liveness or "unknown",
                              last_contact=item.last_contact.ToDatetime(tzinfo=dt.UTC)
                              if item.HasField("last_contact") else None,
                              live_row_count=item.live_row_count if item.HasField("live_row_count") else None,
                              counted_at=item.counted_at.ToDatetime(tzinfo=dt.UTC)
                              if item.HasField("counted_at") else None)
            for item in reply.datasets
        ]

    # --- queries (supervisors) ---

    async def count_rows(self, dataset: str, purpose: str, case_number: str, filter: str = "") -> RowCount:
        """Live row count of `dept.dataset`, optionally filtered, and the audit index of the query."""
        async with _calling(self._hint):
            reply = await self._query.CountRows(query_pb2.CountRowsRequest(
                dataset=dataset, purpose=purpose, case_number=case_number, filter=filter), timeout=self._timeout,
                metadata=self._metadata)
        rows = NoisyCount(reply.rows, reply.epsilon) if reply.epsilon > 0 else reply.rows
        return RowCount(FewerThan(reply.fewer_than) if reply.fewer_than else rows, reply.audit_index)

    async def disclose(self, dataset: str, fields: list[str], purpose: str, case_number: str,
                       filter: str = "", limit: int = 100) -> Disclosure:
        """Fields of the filtered rows, each plaintext or masked as policy allows."""
        async with _calling(self._hint):
            reply = await self._query.Disclose(query_pb2.DiscloseRequest(
                dataset=dataset, fields=fields, purpose=purpose, case_number=case_number, filter=filter,
                limit=limit), timeout=self._timeout, metadata=self._metadata)
        return Disclosure(_grants(reply.fields), _rows(reply.rows), reply.matched_rows, reply.audit_index,
                          _row_limit(reply))

    async def match(self, *, left: Side, right: Side, purpose: str, case_number: str, mode: str = protocols.DEFAULT,
                    disclose: list[str] | None = None, limit: int = 100,
                    on_progress: OnProgress | None = None, on_report: OnReport | None = None) -> MatchResult:
        """Private match of `left` rows whose key is on the `right`; `disclose` names fields of matched left rows."""
        request = query_pb2.MatchRequest(
            left=left.to_proto(), right=right.to_proto(), mode=mode, disclose_fields=disclose or [], limit=limit,
            purpose=purpose, case_number=case_number)
        result: MatchResult | None = None
        async with _calling(self._hint):
            async for _, event in _outcomes(self._query.Match(request, timeout=STREAM_TIMEOUT_S, metadata=self._metadata),
                                          _Reporter(on_progress, on_report)):
                r = event.result
                result = MatchResult(_stats(r.left), _stats(r.right), r.cardinality, r.distinct_matches,
                                     _grants(r.fields), _rows(r.rows), r.audit_index, _row_limit(r), r.fewer_than,
                                     r.epsilon)
        return _received(result, "match")

    async def intersection_sum(self, *, values: Side, value_fields: list[str], other: Side, purpose: str,
                               case_number: str, mode: str = protocols.DEFAULT, key: SupervisorKey | None = None,
                               on_progress: OnProgress | None = None,
                               on_report: OnReport | None = None) -> SumResult:
        """Totals of `value_fields` over the rows of `values` whose key is in `other`.

        Only the public half of `key` (a fresh one by default) leaves this process;
        the totals are decrypted here.
        """
        if key is None:
            key = await asyncio.to_thread(SupervisorKey.generate)
        request = query_pb2.SumRequest(
            values=values.to_proto(), value_fields=value_fields, other=other.to_proto(), mode=mode,
            paillier_key=key.public_bytes, purpose=purpose, case_number=case_number, **self._vouch(key))
        result: SumResult | None = None
        async with _calling(self._hint):
            stream = self._query.IntersectionSum(request, timeout=STREAM_TIMEOUT_S, metadata=self._metadata)
            report = _Reporter(on_progress, on_report)
            async for _, event in _outcomes(stream, report):
                r = event.result
                report("decrypt", "", 0)
                totals = {t.field: key.decrypt_total(t.ciphertext) for t in r.totals}
                report("decrypt", "", len(totals))
                result = SumResult(_stats(r.values), _stats(r.other), r.cardinality, r.distinct_matches, totals,
                                   r.audit_index, r.fewer_than, r.epsilon,
                                   {t.field: t.sensitivity for t in r.totals} if r.epsilon > 0 else {})
        return _received(result, "sum")

    async def compare(self, *, left: Side, left_value: str, right: Side, right_value: str, purpose: str,
                      case_number: str, weights: tuple[int, int] = (1, 1), mode: str = protocols.DEFAULT,
                      disclose: list[str] | None = None, limit: int = 100, key: SupervisorKey | None = None,
                      on_progress: OnProgress | None = None, on_report: OnReport | None = None) -> CompareResult:
        """Flag each matched pair where weights[0]·left_value > weights[1]·right_value; disclose flagged left rows.

        The flags are decrypted here; only the indices of flagged pairs go back,
        and only when fields are to be disclosed.
        """
        if key is None:
            key = await asyncio.to_thread(SupervisorKey.generate)
        request = query_pb2.CompareRequest(
            left=left.to_proto(), left_value=left_value, right=right.to_proto(), right_value=right_value,
            left_weight=weights[0], right_weight=weights[1], mode=mode, paillier_key=key.public_bytes,
            disclose_fields=disclose or [], limit=limit, purpose=purpose, case_number=case_number,
            **self._vouch(key))
        outbox: asyncio.Queue[query_pb2.CompareIn | None] = asyncio.Queue()
        outbox.put_nowait(query_pb2.CompareIn(request=request))

        async def requests() -> AsyncIterator[query_pb2.CompareIn]:
            while (msg := await outbox.get()) is not None:
                yield msg

        packed = bytearray()
        result: CompareResult | None = None
        report = _Reporter(on_progress, on_report)
        async with _calling(self._hint):
            try:
                async for kind, event in _outcomes(self._query.Compare(requests(), timeout=STREAM_TIMEOUT_S, metadata=self._metadata),
                                                   report):
                    if kind == "flags":
                        packed.extend(event.flags.ciphertexts)
                    elif kind == "result":
                        r = event.result
                        packing = Packing(r.offset_bits, r.slot_bits, r.slots)
                        report("decrypt", "", 0)
                        flags = await asyncio.to_thread(key.decrypt_flags, bytes(packed), r.pairs, packing)
                        report("decrypt", "", r.pairs)
                        flagged = flagged_indices(flags)
                        result = CompareResult(_stats(r.left), _stats(r.right), r.pairs, flagged, [], [],
                                               r.audit_index)
                        if disclose:
                            outbox.put_nowait(query_pb2.CompareIn(flagged=query_pb2.FlaggedPairs(pairs=flagged)))
                        outbox.put_nowait(None)
                    elif kind == "rows" and result is not None:
                        rows = event.rows
                        result = dataclasses.replace(result, fields=_grants(rows.fields), rows=_rows(rows.rows),
                                                     row_limit=_row_limit(rows))
            finally:
                outbox.put_nowait(None)
        return _received(result, "comparison")

    def _vouch(self, key: SupervisorKey) -> dict[str, Any]:
        """Our signature over the Paillier key, so departments know it is ours and not the gateway's."""
        _, cert_pem, _ = self._tls.read()
        me = identity_from_pem(cert_pem)
        signature, certificate = certified.sign(self._tls, key_statement(me.spiffe_id, key.public_bytes))
        return {"paillier_key_signature": signature, "supervisor_certificate": certificate}

    # --- policy administration ---

    # --- approvals (departments; the asking supervisor may look at its own) ---

    async def held_requests(self, include_decided: bool = False, since: int = 0) -> list[HeldRequest]:
        """Requests held for the calling department's approval (waiting only, unless `include_decided`)."""
        async with _calling(self._hint):
            reply = await self._approvals.ListHeld(approvals_pb2.ListHeldRequest(since=since, all=include_decided),
                                                   timeout=self._timeout)
        return [HeldRequest.from_proto(r) for r in reply.requests]

    async def held_request(self, query_id: str) -> HeldRequest:
        async with _calling(self._hint):
            reply = await self._approvals.GetHeld(approvals_pb2.GetHeldRequest(query_id=query_id),
                                                  timeout=self._timeout)
        return HeldRequest.from_proto(reply)

    async def decide(self, query_id: str, approval: str, reason: str = "") -> HeldRequest:
        """Send one approver's signed decision (HeldRequest.sign) on a held request."""
        async with _calling(self._hint):
            reply = await self._approvals.Decide(approvals_pb2.DecideRequest(
                query_id=query_id, approval=approval, reason=reason), timeout=self._timeout)
        return HeldRequest.from_proto(reply)

    async def reload_policy(self) -> PolicyVersion:
        async with _calling(self._hint):
            reply = await self._policy.Reload(policy_pb2.ReloadPolicyRequest(), timeout=self._timeout)
        return PolicyVersion(reply.rules, reply.digest)

    async def budgets(self) -> list[BudgetUse]:
        """Privacy budgets spent: every agency's (officers) or the caller's agency's (supervisors)."""
        async with _calling(self._hint):
            reply = await self._policy.Budgets(policy_pb2.BudgetsRequest(), timeout=self._timeout)
        return [BudgetUse(u.agency, u.dataset, u.period, u.spent, u.budget) for u in reply.uses]

    # --- audit (security officers) ---

    async def checkpoint(self, size: int = 0) -> CheckpointNote:
        """The signed checkpoint at `size` (0: the latest)."""
        async with _calling(self._hint):
            reply = await self._audit.GetCheckpoint(audit_pb2.GetCheckpointRequest(size=size), timeout=self._timeout)
        return CheckpointNote(reply.size, reply.note)

    async def entries(self, start: int = 0, stop: int = 0) -> AsyncIterator[LogEntry]:
        """Raw canonical entries [start, stop) in index order."""
        async with _calling(self._hint):
            async for item in self._audit.GetEntries(audit_pb2.GetEntriesRequest(start=start, stop=stop),
                                                     timeout=STREAM_TIMEOUT_S):
                yield LogEntry(item.index, item.body)

    async def checkpoints(self, start_size: int = 1, stop_size: int = 0) -> dict[int, str]:
        """Signed checkpoint notes by tree size, for sizes in [start_size, stop_size] (0: up to the latest)."""
        async with _calling(self._hint):
            return {c.size: c.note async for c in self._audit.GetCheckpoints(
                audit_pb2.GetCheckpointsRequest(start_size=start_size, stop_size=stop_size))}

    async def consistency_proof(self, size1: int, size2: int) -> tuple[bytes, ...]:
        """The hashes proving the tree of `size2` extends the tree of `size1`."""
        async with _calling(self._hint):
            reply = await self._audit.GetConsistencyProof(
                audit_pb2.GetConsistencyProofRequest(size1=size1, size2=size2), timeout=self._timeout)
        return tuple(reply.hashes)

    async def trace(self, trace_id: str) -> TraceView:
        """One trace's spans from the gateway and its departments (security officers)."""
        async with _calling(self._hint):
            reply = await self._audit.GetTrace(common_pb2.GetSpansRequest(trace_id=trace_id), timeout=self._timeout)
        return TraceView([span_from_proto(s) for s in reply.spans], tuple(reply.missing))

    async def search(self, **criteria: str | int) -> list[IndexedEntry]:
        """Entries matching every criterion (subject, agency, dataset, case_number, decision, action, since, until,
        suppressed), newest first: at most `limit`, below index `before` if given."""
        async with _calling(self._hint):
            return [IndexedEntry(e.index, AuditEntry.from_canonical(e.body)) async for e in self._audit.SearchEntries(
                audit_pb2.SearchEntriesRequest(**criteria), timeout=self._timeout)]  # type: ignore[arg-type]

    async def inclusion_proof(self, index: int, size: int = 0) -> EntryProof:
        """Entry `index`, its inclusion proof in the tree of `size` (0: the latest) and that tree's checkpoint."""
        async with _calling(self._hint):
            proof = await self._audit.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(index=index, size=size), timeout=self._timeout)
        return EntryProof(proof.index, proof.size, proof.leaf_hash, tuple(proof.hashes), proof.checkpoint, proof.body)

    async def open_entry(self, index: int, vkey: VerifierKey, key: OpenKey) -> OpenedEntry:
        """Entry `index`, proven in the latest signed tree, with its sealed filters opened by the officers' key."""
        proof = await self.inclusion_proof(index)
        return open_entry(proof.index, proof.body, list(proof.hashes), proof.checkpoint, vkey, key)

    async def verify_log(self, vkey: VerifierKey, trusted: TrustedState | None = None,
                         witnesses: Sequence[WitnessKey] = (), quorum: int = 0) -> VerifyReport:
        """Fetch the whole log up to its latest checkpoint and replay it (see fedgate.client.audit_verify)."""
        size, latest = await self.checkpoint()
        notes = await self.checkpoints(1, size)
        items = [item async for item in self.entries(0, size)]
        # Entries beyond `size` are appended meanwhile (this very call is one); they are checked next time.
        return verify_log(items, notes, latest, vkey, trusted, witnesses=witnesses, quorum=quorum)


@contextlib.asynccontextmanager
async def _calling(hint: Callable[[str, str], str | None] | None = None) -> AsyncIterator[None]:
    """Turn a failed RPC into RemoteCallFailed with the server's status and message (or what to check)."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code().name, exc.details() or ""
        trailers = {k: v for k, v in exc.trailing_metadata() or () if isinstance(v, str)}
        if QUERY_ID_KEY in trailers:
            raise HeldForApproval(code, details, trailers[QUERY_ID_KEY], trailers.get(NONCES_KEY, "")) from None
        raise RemoteCallFailed(code, (hint(code, details) if hint else None) or details) from None
