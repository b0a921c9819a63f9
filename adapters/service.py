"""AdapterService: what the gateway may ask of a department's adapter."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from fedgate.datasets import DatasetDecl
from fedgate.errors import PermissionDenied
from fedgate.identity import Role
from fedgate.interceptors import current_identity
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.wire import dataset_to_proto


def require_gateway() -> None:
    """Adapters answer the gateway only; a supervisor or department dialling directly is refused."""
    caller = current_identity()
    if caller.role is not Role.GATEWAY:
        raise PermissionDenied(f"adapters serve the gateway only (caller is {caller})")


class AdapterServicer(adapter_pb2_grpc.AdapterServiceServicer):
    def __init__(self, department: str, datasets: Sequence[DatasetDecl]) -> None:
        self._department = department
        self._datasets = list(datasets)

    async def Describe(self, request: adapter_pb2.DescribeRequest,
                       context: grpc.aio.ServicerContext) -> adapter_pb2.DescribeResponse:
        require_gateway()
        return adapter_pb2.DescribeResponse(
            department=self._department, datasets=[dataset_to_proto(d) for d in self._datasets])
