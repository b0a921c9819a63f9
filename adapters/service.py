"""AdapterService: what the gateway may ask of a department's adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import grpc
from opentelemetry import trace

from fedgate.adapters.sources import Source
from fedgate.adapters.tickets import TicketGate
from fedgate.datasets import DatasetDecl
from fedgate.errors import NotFound, PermissionDenied
from fedgate.identity import Role
from fedgate.interceptors import current_identity
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.telemetry import safe_attributes

tracer = trace.get_tracer(__name__)
from fedgate.wire import dataset_to_proto


def require_gateway() -> None:
    """Adapters answer the gateway only; a supervisor or department dialling directly is refused."""
    caller = current_identity()
    if caller.role is not Role.GATEWAY:
        raise PermissionDenied(f"adapters serve the gateway only (caller is {caller})")


class AdapterServicer(adapter_pb2_grpc.AdapterServiceServicer):
    def __init__(self, department: str, datasets: Sequence[DatasetDecl], sources: Mapping[str, Source],
                 gate: TicketGate) -> None:
        self._department = department
        self._datasets = list(datasets)
        self._sources = dict(sources)
        self._gate = gate

    async def Describe(self, request: adapter_pb2.DescribeRequest,
                       context: grpc.aio.ServicerContext) -> adapter_pb2.DescribeResponse:
        require_gateway()
        return adapter_pb2.DescribeResponse(
            department=self._department, datasets=[dataset_to_proto(d) for d in self._datasets])

    async def GetLogState(self, request: adapter_pb2.GetLogStateRequest,
                          context: grpc.aio.ServicerContext) -> adapter_pb2.LogState:
        require_gateway()
        return adapter_pb2.LogState(seen_size=await asyncio.to_thread(self._gate.seen_size))

    async def CountRows(self, request: adapter_pb2.AdapterCountRequest,
                        context: grpc.aio.ServicerContext) -> adapter_pb2.AdapterCountResponse:
        require_gateway()
        source = self._sources.get(request.dataset)
        if source is None:
            raise NotFound(f"this adapter serves no dataset '{request.dataset}'")
        with tracer.start_as_current_span("ticket.verify"):
            admission = await self._gate.admit(request.ticket, "query.count", request.dataset)
        with tracer.start_as_current_span("source.count") as span:
            rows = await asyncio.to_thread(source.count)
            span.set_attributes(safe_attributes(**{"fedgate.rows": rows}))
        await admission.served(rows)
        return adapter_pb2.AdapterCountResponse(rows=rows)
