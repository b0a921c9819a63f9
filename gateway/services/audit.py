"""AuditService: security officers read, prove and verify the log; a department searches its own part."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from fedgate.gateway.audit import AuditReader, SearchCriteria
from fedgate.gateway.audit_log import HASHER
from fedgate.core.identity import Role
from fedgate.server.interceptors import current_identity, current_record
from fedgate.protos.fedgate.v1 import audit_pb2, audit_pb2_grpc, common_pb2
from fedgate.gateway.traces import TraceGatherer
from fedgate.core.errors import FailedPrecondition
from fedgate.server.span_wire import spans_reply


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, reader: AuditReader, traces: TraceGatherer | None = None) -> None:
        self._reader = reader
        self._traces = traces

    def _begin(self, action: str) -> None:
        record = current_record()
        record.action = action
        self._reader.authorise(current_identity(), record)

    async def GetCheckpoint(self, request: audit_pb2.GetCheckpointRequest,
                            context: grpc.aio.ServicerContext) -> audit_pb2.SignedCheckpoint:
        self._begin("audit.checkpoint")
        size, note = self._reader.checkpoint(request.size)
        return audit_pb2.SignedCheckpoint(size=size, note=note)

    async def GetEntries(self, request: audit_pb2.GetEntriesRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[audit_pb2.LogEntry]:
        self._begin("audit.read")
        count = 0
        async for item in self._reader.entries(request.start, request.stop):
            count += 1
            yield audit_pb2.LogEntry(index=item.index, body=item.body)
        current_record().result_sizes["entries"] = count

    async def GetCheckpoints(self, request: audit_pb2.GetCheckpointsRequest,
                             context: grpc.aio.ServicerContext) -> AsyncIterator[audit_pb2.SignedCheckpoint]:
        self._begin("audit.read")
        stop = request.stop_size or await self._reader.log.stored_size()
        for size, note in self._reader.log.store.checkpoints(max(request.start_size, 1)):
            if size > stop:
                break
            yield audit_pb2.SignedCheckpoint(size=size, note=note)

    async def SearchEntries(self, request: audit_pb2.SearchEntriesRequest,
                            context: grpc.aio.ServicerContext) -> AsyncIterator[audit_pb2.LogEntry]:
        record, caller = current_record(), current_identity()
        record.action = "audit.search"
        own = caller.role is Role.DEPARTMENT  # its own datasets' entries only, whatever it asked
        if own:
            self._reader.authorise_own(caller, record)
        else:
            self._reader.authorise(caller, record)
        criteria = SearchCriteria(subject=request.subject, dataset=request.dataset,
                                  case_number=request.case_number, decision=request.decision,
                                  action=request.action, since=request.since, until=request.until,
                                  agency=request.agency, before=request.before, suppressed=request.suppressed,
                                  limit=request.limit or 50)
        if own:
            criteria = self._reader.own_part(caller, criteria)
        found = await self._reader.search(criteria)
        current_record().result_sizes["entries"] = len(found)
        for item in found:
            yield audit_pb2.LogEntry(index=item.index, body=item.body)

    async def GetInclusionProof(self, request: audit_pb2.GetInclusionProofRequest,
                                context: grpc.aio.ServicerContext) -> audit_pb2.InclusionProof:
        self._begin("audit.proof")
        size, note = self._reader.checkpoint(request.size)
        hashes = await self._reader.log.inclusion_proof(request.index, size)
        (entry,) = [e async for e in self._reader.entries(request.index, request.index + 1)]
        return audit_pb2.InclusionProof(index=request.index, size=size, leaf_hash=HASHER.hash_leaf(entry.body),
                                        hashes=hashes, checkpoint=note, body=entry.body)

    async def GetTrace(self, request: common_pb2.GetSpansRequest,
                       context: grpc.aio.ServicerContext) -> common_pb2.Spans:
        self._begin("audit.trace")
        if self._traces is None:
            raise FailedPrecondition("this gateway keeps no spans (no span store)")
        spans, missing = await self._traces.gather(request.trace_id)
        current_record().result_sizes["spans"] = len(spans)
        return spans_reply(spans, missing)

    async def GetConsistencyProof(self, request: audit_pb2.GetConsistencyProofRequest,
                                  context: grpc.aio.ServicerContext) -> audit_pb2.ConsistencyProof:
        self._begin("audit.proof")
        hashes = await self._reader.log.consistency_proof(request.size1, request.size2)
        return audit_pb2.ConsistencyProof(size1=request.size1, size2=request.size2, hashes=hashes)
