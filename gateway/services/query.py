"""QueryService: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import grpc

from fedgate.gateway.query import Purpose, QueryEngine
from fedgate.interceptors import RequestRecord, current_identity, current_record
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
        record = _record("query.count", request.dataset, request.purpose, request.case_number)
        rows, index = await self._engine.count_rows(current_identity(), record, request.dataset,
                                                    Purpose(request.purpose, request.case_number), request.filter)
        return query_pb2.CountRowsResponse(rows=rows, audit_index=index)

    async def Disclose(self, request: query_pb2.DiscloseRequest,
                       context: grpc.aio.ServicerContext) -> query_pb2.DiscloseResponse:
        record = _record("query.disclose", request.dataset, request.purpose, request.case_number)
        result = await self._engine.disclose(current_identity(), record, request.dataset, list(request.fields),
                                             Purpose(request.purpose, request.case_number), request.filter,
                                             request.limit or 100)
        return query_pb2.DiscloseResponse(
            fields=[query_pb2.DisclosedField(name=f.name, level=f.level, form=f.form) for f in result.fields],
            rows=[common_pb2.DisclosedRow(values=v, null=n) for v, n in result.rows],
            matched_rows=result.matched_rows, audit_index=result.audit_index)
