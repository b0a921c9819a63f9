"""QueryService: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import grpc

from collections.abc import AsyncIterator
from typing import Any

from fedgate.gateway.matching import MatchOutcome, SideStats
from fedgate.gateway.query import (
    CompareQuery,
    ComparisonsSent,
    MatchQuery,
    MatchSideQuery,
    PackedResults,
    Purpose,
    QueryEngine,
    QueryOutcome,
    SumQuery,
)
from fedgate.core.errors import InvalidInput
from fedgate.query import protocols
from fedgate.query.kinds import count, disclose
from fedgate.server.interceptors import RequestRecord, current_identity, current_record
from fedgate.core.row_limit import RowLimit
from fedgate.protos.fedgate.v1 import common_pb2, query_pb2, query_pb2_grpc


def _record(action: str, dataset: str, purpose: str, case_number: str) -> RequestRecord:
    # Filled before anything is checked, so a refusal is audited with what was asked.
    record = current_record()
    record.action = action
    record.datasets = [dataset]
    record.purpose, record.case_number = purpose, case_number
    return record


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(self, engine: QueryEngine) -> None:
        self._engine = engine

    async def CountRows(self, request: query_pb2.CountRowsRequest,
                        context: grpc.aio.ServicerContext) -> query_pb2.CountRowsResponse:
        record = _record(count.ACTION, request.dataset, request.purpose, request.case_number)
        got, index = await self._engine.one_dataset(current_identity(), record,
                                                    count.CountQuery(request.dataset, request.filter),
                                                    Purpose(request.purpose, request.case_number))
        return query_pb2.CountRowsResponse(rows=got.rows, fewer_than=got.fewer_than, audit_index=index,
                                           epsilon=got.epsilon)

    async def Disclose(self, request: query_pb2.DiscloseRequest,
                       context: grpc.aio.ServicerContext) -> query_pb2.DiscloseResponse:
        record = _record(disclose.ACTION, request.dataset, request.purpose, request.case_number)
        query = disclose.DiscloseQuery(request.dataset, list(request.fields), request.filter, request.limit or 100)
        result, index = await self._engine.one_dataset(current_identity(), record, query,
                                                       Purpose(request.purpose, request.case_number))
        return query_pb2.DiscloseResponse(
            fields=[query_pb2.DisclosedField(name=f.name, level=f.level, form=f.form) for f in result.grants],
            rows=[common_pb2.DisclosedRow(values=v, null=n) for v, n in result.rows],
            matched_rows=result.matched, audit_index=index, row_limit=_row_limit(result.row_limit))

    async def Match(self, request: query_pb2.MatchRequest,
                    context: grpc.aio.ServicerContext) -> AsyncIterator[query_pb2.MatchEvent]:
        record = _record("query.match", request.left.dataset, request.purpose, request.case_number)
        record.datasets.append(request.right.dataset)
        query = MatchQuery(
            left=MatchSideQuery(request.left.dataset, request.left.key_field, request.left.filter),
            right=MatchSideQuery(request.right.dataset, request.right.key_field, request.right.filter),
            mode=request.mode or protocols.DEFAULT, disclose_fields=list(request.disclose_fields),
            limit=request.limit or 100)
        outcome = QueryOutcome()
        async for event in self._engine.match(current_identity(), record, query,
                                              Purpose(request.purpose, request.case_number), outcome):
            yield query_pb2.MatchEvent(progress=_progress(event))
        cardinality, distinct = _matched(outcome)
        assert outcome.left and outcome.right
        yield query_pb2.MatchEvent(result=query_pb2.MatchResult(
            left=_stats(request.left.dataset, outcome.left, outcome.epsilon),
            right=_stats(request.right.dataset, outcome.right, outcome.epsilon),
            cardinality=cardinality, distinct_matches=distinct, fewer_than=outcome.fewer_than,
            epsilon=outcome.epsilon,
            fields=[query_pb2.DisclosedField(name=g.name, level=g.level, form=g.form) for g in outcome.grants],
            rows=[common_pb2.DisclosedRow(values=v, null=n) for v, n in outcome.rows],
            audit_index=outcome.audit_index, row_limit=_row_limit(outcome.row_limit)))


    async def IntersectionSum(self, request: query_pb2.SumRequest,
                              context: grpc.aio.ServicerContext) -> AsyncIterator[query_pb2.SumEvent]:
        record = _record("query.sum", request.values.dataset, request.purpose, request.case_number)
        record.datasets.append(request.other.dataset)
        query = SumQuery(_side(request.values), list(request.value_fields), _side(request.other),
                         request.paillier_key, request.mode or protocols.DEFAULT, request.paillier_key_signature,
                         request.supervisor_certificate)
        outcome = MatchOutcome()
        async for event in self._engine.intersection_sum(current_identity(), record, query,
                                                         Purpose(request.purpose, request.case_number), outcome):
            yield query_pb2.SumEvent(progress=_progress(event))
        cardinality, distinct = _matched(outcome)
        assert outcome.left and outcome.right
        sensitivity = outcome.total_sensitivity or [0] * len(request.value_fields)
        yield query_pb2.SumEvent(result=query_pb2.SumResult(
            values=_stats(request.values.dataset, outcome.left, outcome.epsilon),
            other=_stats(request.other.dataset, outcome.right, outcome.epsilon),
            cardinality=cardinality, distinct_matches=distinct, fewer_than=outcome.fewer_than,
            totals=[query_pb2.EncryptedTotal(field=f, ciphertext=c, sensitivity=s)
                    for f, c, s in zip(request.value_fields, outcome.totals, sensitivity, strict=True)]
            if outcome.totals else [],
            audit_index=outcome.audit_index, epsilon=outcome.epsilon))

    async def Compare(self, request_iterator: AsyncIterator[query_pb2.CompareIn],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[query_pb2.CompareEvent]:
        requests = request_iterator.__aiter__()
        first = await anext(requests, None)
        record = current_record()
        if first is None or first.WhichOneof("msg") != "request":
            record.action = "query.compare"
            raise InvalidInput("a comparison stream starts with a CompareRequest")
        request = first.request
        record = _record("query.compare", request.left.dataset, request.purpose, request.case_number)
        record.datasets.append(request.right.dataset)
        query = CompareQuery(_side(request.left), request.left_value, _side(request.right), request.right_value,
                             request.paillier_key, request.left_weight, request.right_weight,
                             request.mode or protocols.DEFAULT, list(request.disclose_fields), request.limit or 100,
                             request.paillier_key_signature, request.supervisor_certificate)

        async def flagged() -> list[int]:
            msg = await anext(requests, None)
            if msg is None or msg.WhichOneof("msg") != "flagged":
                raise InvalidInput("after the comparison result, send the flagged pairs (FlaggedPairs)")
            return list(msg.flagged.pairs)

        outcome = QueryOutcome()
        event: Any
        async for event in self._engine.compare(current_identity(), record, query,
                                                Purpose(request.purpose, request.case_number), outcome, flagged):
            if isinstance(event, PackedResults):
                yield query_pb2.CompareEvent(flags=query_pb2.PackedFlags(ciphertexts=event.data))
            elif isinstance(event, ComparisonsSent):
                assert outcome.left and outcome.right
                yield query_pb2.CompareEvent(result=query_pb2.CompareResult(
                    left=_stats(request.left.dataset, outcome.left), right=_stats(request.right.dataset, outcome.right),
                    pairs=event.pairs, slot_bits=event.packing.slot_bits, slots=event.packing.slots,
                    offset_bits=event.packing.offset_bits, audit_index=outcome.audit_index))
            else:
                yield query_pb2.CompareEvent(progress=_progress(event))
        if outcome.grants:
            yield query_pb2.CompareEvent(rows=query_pb2.CompareRows(
                fields=[query_pb2.DisclosedField(name=g.name, level=g.level, form=g.form) for g in outcome.grants],
                rows=[common_pb2.DisclosedRow(values=v, null=n) for v, n in outcome.rows],
                row_limit=_row_limit(outcome.row_limit)))


def _matched(outcome: MatchOutcome) -> tuple[int, int]:
    """A match's or sum's cardinality and distinct matches as the caller may learn them: both 0 when the
    aggregate was suppressed (the answer is then only "fewer than k", the same for 0 matches as for k-1)."""
    result = outcome.intersection
    assert result is not None
    if outcome.fewer_than:
        return 0, 0
    if outcome.noisy_cardinality is not None:
        return outcome.noisy_cardinality, 0  # distinct matches would be a second, exact count
    return result.cardinality, result.distinct_matches


def _side(msg: query_pb2.MatchSide) -> MatchSideQuery:
    return MatchSideQuery(msg.dataset, msg.key_field, msg.filter)


def _row_limit(limit: RowLimit | None) -> query_pb2.RowLimit | None:
    if limit is None:
        return None
    return query_pb2.RowLimit(available=limit.available, returned=limit.returned, requested=limit.requested,
                              applied=limit.applied, limited_by=limit.limited_by)


def _progress(event: Any) -> query_pb2.MatchProgress:
    return query_pb2.MatchProgress(
        phase=event.phase, department=event.department, tokens=event.tokens, stage=event.stage,
        rows_blinded=event.rows_blinded, tokens_reblinded=event.tokens_reblinded, dataset_rows=event.dataset_rows,
        filtered=event.filtered, withheld=event.withheld)


def _stats(dataset: str, stats: SideStats, epsilon: float = 0.0) -> query_pb2.MatchSideStats:
    if epsilon > 0:
        # Each side's numbers are exact counts of its (filtered) set: a noisy answer withholds them.
        return query_pb2.MatchSideStats(dataset=dataset)
    return query_pb2.MatchSideStats(dataset=dataset, rows=stats.rows,
                                    invalid_identifiers=stats.invalid_identifiers, tokens=stats.tokens,
                                    missing_values=stats.missing_values)
