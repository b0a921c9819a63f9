"""The client library used by the CLI and the tests: supervisors and officers talk to the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc

from fedgate import certified
from fedgate.audit_entry import AuditEntry
from fedgate.audit_verify import TrustedState, VerifyReport, verify_log
from fedgate.crypto.checkpoint import VerifierKey
from fedgate.crypto.compare import Packing
from fedgate.datasets import FieldGrant, RegisteredDataset
from fedgate.addresses import address_problem
from fedgate.errors import InvalidInput, RemoteCallFailed
from fedgate.identity import GATEWAY, identity_from_pem
from fedgate.row_limit import RowLimit
from fedgate.query import protocols
from fedgate.protos.fedgate.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from fedgate.supervisor_keys import SupervisorKey, flagged_indices, key_statement
from fedgate.tls import TlsFiles, check_own, handshake_hint, secure_channel
from fedgate.wire import dataset_from_proto

DEFAULT_TIMEOUT_S = 30.0
# Matching, sums and comparisons stream for as long as the data takes; they still end. The gateway
# gives each adapter stream the same bound (or this caller's deadline, which it passes on).
STREAM_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class MatchSideStats:
    dataset: str
    rows: int
    invalid_identifiers: int
    tokens: int
    missing_values: int = 0


@dataclass(frozen=True)
class MatchResult:
    left: MatchSideStats
    right: MatchSideStats
    cardinality: int
    distinct_matches: int
    fields: list[FieldGrant]
    rows: list[list[str | None]]
    audit_index: int
    # Set when fields were disclosed: rows returned of the matched rows, and what cut them.
    row_limit: RowLimit | None = None


def _side(msg: query_pb2.MatchSideStats) -> MatchSideStats:
    return MatchSideStats(msg.dataset, msg.rows, msg.invalid_identifiers, msg.tokens, msg.missing_values)


@dataclass(frozen=True)
class SumResult:
    values: MatchSideStats
    other: MatchSideStats
    cardinality: int
    distinct_matches: int
    # Decrypted in this process: value field -> total.
    totals: dict[str, int]
    audit_index: int


@dataclass(frozen=True)
class CompareResult:
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
    fields: list[FieldGrant]
    rows: list[list[str | None]]
    matched_rows: int
    audit_index: int
    row_limit: RowLimit | None = None


def _row_limit(msg: query_pb2.RowLimit) -> RowLimit:
    return RowLimit(msg.available, msg.returned, msg.requested, msg.applied, msg.limited_by)


class GatewayClient:
    """An mTLS connection to the gateway under the identity in `tls`'s certificate."""

    def __init__(self, address: str, tls: TlsFiles, timeout: float = DEFAULT_TIMEOUT_S) -> None:
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
        self._timeout = timeout

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

    async def count_rows(self, dataset: str, purpose: str, case_number: str, filter: str = "") -> tuple[int, int]:
        """Live row count of `dept.dataset`, optionally filtered; returns (rows, audit index of the query)."""
        async with _calling(self._hint):
            reply = await self._query.CountRows(query_pb2.CountRowsRequest(
                dataset=dataset, purpose=purpose, case_number=case_number, filter=filter), timeout=self._timeout)
        return reply.rows, reply.audit_index

    async def disclose(self, dataset: str, fields: list[str], purpose: str, case_number: str,
                       filter: str = "", limit: int = 100) -> Disclosure:
        """Fields of the filtered rows, each plaintext or masked as policy allows."""
        async with _calling(self._hint):
            reply = await self._query.Disclose(query_pb2.DiscloseRequest(
                dataset=dataset, fields=fields, purpose=purpose, case_number=case_number, filter=filter,
                limit=limit), timeout=self._timeout)
        return Disclosure(
            [FieldGrant(f.name, f.level, f.form) for f in reply.fields],
            [[None if null else value for value, null in zip(r.values, r.null)] for r in reply.rows],
            reply.matched_rows, reply.audit_index,
            _row_limit(reply.row_limit) if reply.HasField("row_limit") else None)

    async def match(self, left: tuple[str, str, str], right: tuple[str, str, str], purpose: str,
                    case_number: str, mode: str = protocols.DEFAULT, disclose: list[str] | None = None, limit: int = 100,
                    on_progress: Callable[[str, str, int], None] | None = None) -> MatchResult:
        """Private match of (dataset, key field, filter) on each side; progress reported as tokens flow."""
        request = query_pb2.MatchRequest(
            left=query_pb2.MatchSide(dataset=left[0], key_field=left[1], filter=left[2]),
            right=query_pb2.MatchSide(dataset=right[0], key_field=right[1], filter=right[2]),
            mode=mode, disclose_fields=disclose or [], limit=limit, purpose=purpose, case_number=case_number)
        result: MatchResult | None = None
        async with _calling(self._hint):
            # Read to the end, past the result: the server logs the outcome before it closes the stream.
            async for event in self._query.Match(request, timeout=STREAM_TIMEOUT_S):
                if event.HasField("progress"):
                    if on_progress:
                        on_progress(event.progress.phase, event.progress.department, event.progress.tokens)
                    continue
                r = event.result
                result = MatchResult(
                    _side(r.left), _side(r.right), r.cardinality, r.distinct_matches,
                    [FieldGrant(f.name, f.level, f.form) for f in r.fields],
                    [[None if null else v for v, null in zip(row.values, row.null)] for row in r.rows],
                    r.audit_index, _row_limit(r.row_limit) if r.HasField("row_limit") else None)
        if result is None:
            raise RemoteCallFailed("UNKNOWN", "the match stream ended without a result")
        return result

    async def intersection_sum(self, values: tuple[str, str, str], value_fields: list[str],
                               other: tuple[str, str, str], purpose: str, case_number: str, mode: str = protocols.DEFAULT,
                               key: SupervisorKey | None = None,
                               on_progress: Callable[[str, str, int], None] | None = None) -> SumResult:
        """Totals of `value_fields` over the rows of `values` (dataset, key, filter) whose key is in `other`.

        Only the public half of `key` (a fresh one by default) leaves this process;
        the totals are decrypted here.
        """
        if key is None:
            key = await asyncio.to_thread(SupervisorKey.generate)
        request = query_pb2.SumRequest(
            values=query_pb2.MatchSide(dataset=values[0], key_field=values[1], filter=values[2]),
            value_fields=value_fields,
            other=query_pb2.MatchSide(dataset=other[0], key_field=other[1], filter=other[2]),
            mode=mode, paillier_key=key.public_bytes, purpose=purpose, case_number=case_number,
            **self._vouch(key))
        result: SumResult | None = None
        async with _calling(self._hint):
            async for event in self._query.IntersectionSum(request, timeout=STREAM_TIMEOUT_S):
                if event.HasField("progress"):
                    if on_progress:
                        on_progress(event.progress.phase, event.progress.department, event.progress.tokens)
                    continue
                r = event.result
                if on_progress:
                    on_progress("decrypt", "", 0)
                totals = {t.field: key.decrypt_total(t.ciphertext) for t in r.totals}
                if on_progress:
                    on_progress("decrypt", "", len(totals))
                result = SumResult(_side(r.values), _side(r.other), r.cardinality, r.distinct_matches, totals,
                                   r.audit_index)
        if result is None:
            raise RemoteCallFailed("UNKNOWN", "the sum stream ended without a result")
        return result

    async def compare(self, left: tuple[str, str, str], left_value: str, right: tuple[str, str, str],
                      right_value: str, purpose: str, case_number: str, weights: tuple[int, int] = (1, 1),
                      mode: str = protocols.DEFAULT, disclose: list[str] | None = None, limit: int = 100,
                      key: SupervisorKey | None = None,
                      on_progress: Callable[[str, str, int], None] | None = None) -> CompareResult:
        """Flag each matched pair where weights[0]·left_value > weights[1]·right_value; disclose flagged left rows.

        The flags are decrypted here; only the indices of flagged pairs go back,
        and only when fields are to be disclosed.
        """
        if key is None:
            key = await asyncio.to_thread(SupervisorKey.generate)
        request = query_pb2.CompareRequest(
            left=query_pb2.MatchSide(dataset=left[0], key_field=left[1], filter=left[2]), left_value=left_value,
            right=query_pb2.MatchSide(dataset=right[0], key_field=right[1], filter=right[2]),
            right_value=right_value, left_weight=weights[0], right_weight=weights[1], mode=mode,
            paillier_key=key.public_bytes, disclose_fields=disclose or [], limit=limit, purpose=purpose,
            case_number=case_number, **self._vouch(key))
        outbox: asyncio.Queue[query_pb2.CompareIn | None] = asyncio.Queue()
        outbox.put_nowait(query_pb2.CompareIn(request=request))

        async def requests() -> AsyncIterator[query_pb2.CompareIn]:
            while (msg := await outbox.get()) is not None:
                yield msg

        packed = bytearray()
        result: CompareResult | None = None
        async with _calling(self._hint):
            call = self._query.Compare(requests(), timeout=STREAM_TIMEOUT_S)
            try:
                async for event in call:
                    kind = event.WhichOneof("event")
                    if kind == "progress":
                        if on_progress:
                            on_progress(event.progress.phase, event.progress.department, event.progress.tokens)
                    elif kind == "flags":
                        packed.extend(event.flags.ciphertexts)
                    elif kind == "result":
                        r = event.result
                        packing = Packing(r.offset_bits, r.slot_bits, r.slots)
                        if on_progress:
                            on_progress("decrypt", "", 0)
                        flags = await asyncio.to_thread(key.decrypt_flags, bytes(packed), r.pairs, packing)
                        if on_progress:
                            on_progress("decrypt", "", r.pairs)
                        flagged = flagged_indices(flags)
                        result = CompareResult(_side(r.left), _side(r.right), r.pairs, flagged, [], [],
                                               r.audit_index)
                        if disclose:
                            outbox.put_nowait(query_pb2.CompareIn(flagged=query_pb2.FlaggedPairs(pairs=flagged)))
                        outbox.put_nowait(None)
                    elif kind == "rows" and result is not None:
                        result = dataclasses.replace(
                            result, fields=[FieldGrant(f.name, f.level, f.form) for f in event.rows.fields],
                            rows=[[None if null else v for v, null in zip(row.values, row.null)]
                                  for row in event.rows.rows],
                            row_limit=(_row_limit(event.rows.row_limit) if event.rows.HasField("row_limit")
                                       else None))
            finally:
                outbox.put_nowait(None)
        if result is None:
            raise RemoteCallFailed("UNKNOWN", "the comparison stream ended without a result")
        return result

    def _vouch(self, key: SupervisorKey) -> dict[str, Any]:
        """Our signature over the Paillier key, so departments know it is ours and not the gateway's."""
        _, cert_pem, _ = self._tls.read()
        me = identity_from_pem(cert_pem)
        signature, certificate = certified.sign(self._tls, key_statement(me.spiffe_id, key.public_bytes))
        return {"paillier_key_signature": signature, "supervisor_certificate": certificate}

    # --- policy administration ---

    async def reload_policy(self) -> tuple[int, str]:
        async with _calling(self._hint):
            reply = await self._policy.Reload(policy_pb2.ReloadPolicyRequest(), timeout=self._timeout)
        return reply.rules, reply.digest

    # --- audit (security officers) ---

    async def checkpoint(self, size: int = 0) -> tuple[int, str]:
        """The signed checkpoint at `size` (0: the latest)."""
        async with _calling(self._hint):
            reply = await self._audit.GetCheckpoint(audit_pb2.GetCheckpointRequest(size=size), timeout=self._timeout)
        return reply.size, reply.note

    async def entries(self, start: int = 0, stop: int = 0) -> AsyncIterator[tuple[int, bytes]]:
        """Raw canonical entries [start, stop) in index order."""
        async with _calling(self._hint):
            async for item in self._audit.GetEntries(audit_pb2.GetEntriesRequest(start=start, stop=stop),
                                                     timeout=STREAM_TIMEOUT_S):
                yield item.index, item.body

    async def checkpoints(self, start_size: int = 1, stop_size: int = 0) -> dict[int, str]:
        async with _calling(self._hint):
            return {c.size: c.note async for c in self._audit.GetCheckpoints(
                audit_pb2.GetCheckpointsRequest(start_size=start_size, stop_size=stop_size))}

    async def search(self, **criteria: str | int) -> list[tuple[int, AuditEntry]]:
        """Entries matching every criterion (subject, dataset, case_number, decision, action, since, until, limit)."""
        async with _calling(self._hint):
            return [(e.index, AuditEntry.from_canonical(e.body)) async for e in self._audit.SearchEntries(
                audit_pb2.SearchEntriesRequest(**criteria), timeout=self._timeout)]  # type: ignore[arg-type]

    async def inclusion_proof(self, index: int, size: int = 0) -> audit_pb2.InclusionProof:
        async with _calling(self._hint):
            proof: audit_pb2.InclusionProof = await self._audit.GetInclusionProof(
                audit_pb2.GetInclusionProofRequest(index=index, size=size), timeout=self._timeout)
        return proof

    async def verify_log(self, vkey: VerifierKey, trusted: TrustedState | None = None) -> VerifyReport:
        """Fetch the whole log up to its latest checkpoint and replay it (see fedgate.audit_verify)."""
        size, latest = await self.checkpoint()
        notes = await self.checkpoints(1, size)
        items = [item async for item in self.entries(0, size)]
        # Entries beyond `size` are appended meanwhile (this very call is one); they are checked next time.
        return verify_log(items, notes, latest, vkey, trusted)


@contextlib.asynccontextmanager
async def _calling(hint: Callable[[str, str], str | None] | None = None) -> AsyncIterator[None]:
    """Turn a failed RPC into RemoteCallFailed with the server's status and message (or what to check)."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code().name, exc.details() or ""
        raise RemoteCallFailed(code, (hint(code, details) if hint else None) or details) from None
