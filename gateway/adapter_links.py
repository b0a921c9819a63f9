"""Channels from the gateway to department adapters, each pinned to its department's certificate."""

from __future__ import annotations

import grpc

from fedgate.datasets import DatasetDecl
from fedgate.errors import FailedPrecondition, PermissionDenied, Unavailable
from fedgate.identity import Identity
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc
from fedgate.tls import TlsFiles, secure_channel
from fedgate.wire import dataset_from_proto

DESCRIBE_TIMEOUT_S = 5.0


class AdapterLinks:
    """One channel per (department, endpoint), reused across calls."""

    def __init__(self, tls: TlsFiles) -> None:
        self._tls = tls
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}

    def channel(self, department: str, endpoint: str) -> grpc.aio.Channel:
        key = (department, endpoint)
        if key not in self._channels:
            self._channels[key] = secure_channel(endpoint, self._tls, Identity.department(department))
        return self._channels[key]

    async def describe(self, department: str, endpoint: str) -> list[DatasetDecl]:
        """Ask the adapter at `endpoint` what it serves, proving it holds `department`'s certificate."""
        stub = adapter_pb2_grpc.AdapterServiceStub(self.channel(department, endpoint))
        try:
            reply = await stub.Describe(adapter_pb2.DescribeRequest(), timeout=DESCRIBE_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(
                f"adapter endpoint {endpoint} did not answer as department '{department}' "
                f"({exc.code().name}); check that it is running and uses that department's certificate"
            ) from None
        if reply.department != department:
            raise PermissionDenied(f"adapter at {endpoint} says it serves department '{reply.department}'")
        return [dataset_from_proto(d, department) for d in reply.datasets]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def check_same_datasets(declared: list[DatasetDecl], served: list[DatasetDecl]) -> None:
    """Refuse a registration whose datasets differ from what the adapter itself describes."""
    if {d.name: d.fields for d in declared} != {d.name: d.fields for d in served}:
        raise FailedPrecondition(
            "the datasets in the registration differ from those the adapter describes; "
            "restart the adapter so both come from the same configuration"
        )
