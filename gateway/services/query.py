"""QueryService: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import grpc

from fedgate.gateway.query import Purpose, QueryEngine
from fedgate.interceptors import current_identity, current_record
from fedgate.protos.fedgate.v1 import query_pb2, query_pb2_grpc


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(self, engine: QueryEngine) -> None:
        self._engine = engine

    async def CountRows(self, request: query_pb2.CountRowsRequest,
                        context: grpc.aio.ServicerContext) -> query_pb2.CountRowsResponse:
        record = current_record()
        record.action = "query.count"
        record.rule = "builtin:supervisors-query-with-purpose-and-case"
        record.datasets = [request.dataset]
        record.purpose, record.case_number = request.purpose, request.case_number
        rows, index = await self._engine.count_rows(current_identity(), record, request.dataset,
                                                    Purpose(request.purpose, request.case_number))
        return query_pb2.CountRowsResponse(rows=rows, audit_index=index)
