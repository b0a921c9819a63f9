"""RegistryService: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import grpc

from fedgate.gateway.registry import Lease, Registration, Registry
from fedgate.server.interceptors import current_identity, record_action
from fedgate.protos.fedgate.v1 import registry_pb2, registry_pb2_grpc
from fedgate.query.department_rules import DepartmentRules
from fedgate.server.wire import dataset_from_proto, dataset_to_proto, matching_key_from_proto


_LEASES = {Lease.CURRENT: registry_pb2.HeartbeatResponse.CURRENT,
           Lease.UNKNOWN: registry_pb2.HeartbeatResponse.UNKNOWN,
           Lease.REPLACED: registry_pb2.HeartbeatResponse.REPLACED}


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """Departments register their datasets and keep their lease; callers list what they may see."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def RegisterDatasets(self, request: registry_pb2.RegisterDatasetsRequest,
                               context: grpc.aio.ServicerContext) -> registry_pb2.RegisterDatasetsResponse:
        record = record_action("registry.register")
        record.datasets = [f"{request.department}.{d.name}" for d in request.datasets]
        reg = Registration(
            department=request.department,
            display_name=request.display_name,
            endpoint=request.adapter_endpoint,
            datasets=tuple(dataset_from_proto(d, request.department) for d in request.datasets),
            matching_key=matching_key_from_proto(request.matching_key) if request.HasField("matching_key") else None,
            rules=DepartmentRules.from_json(request.department_rules),
        )
        registered, removed = await self._registry.register(current_identity(), record, reg)
        record.result_sizes.update(registered=registered, removed=removed)
        return registry_pb2.RegisterDatasetsResponse(registered=registered, removed=removed)

    async def Heartbeat(self, request: registry_pb2.HeartbeatRequest,
                        context: grpc.aio.ServicerContext) -> registry_pb2.HeartbeatResponse:
        record = record_action("registry.heartbeat")
        lease, endpoint = await self._registry.heartbeat(
            current_identity(), record, request.department, request.adapter_endpoint,
            {c.name: c.row_count for c in request.counts})
        return registry_pb2.HeartbeatResponse(registration=_LEASES[lease], registered_endpoint=endpoint)

    async def ListDatasets(self, request: registry_pb2.ListDatasetsRequest,
                           context: grpc.aio.ServicerContext) -> registry_pb2.ListDatasetsResponse:
        record = record_action("registry.list")
        found = await self._registry.list(current_identity(), record, request.department or None)
        record.result_sizes["datasets"] = len(found)
        reply = registry_pb2.ListDatasetsResponse()
        for item in found:
            entry = reply.datasets.add(spec=dataset_to_proto(item.decl),
                                       department_display_name=item.department_display_name)
            entry.registered_at.FromDatetime(item.registered_at)
            entry.liveness = item.liveness
            if item.last_contact is not None:
                entry.last_contact.FromDatetime(item.last_contact)
            if item.live_row_count is not None:
                entry.live_row_count = item.live_row_count
            if item.counted_at is not None:
                entry.counted_at.FromDatetime(item.counted_at)
        return reply
