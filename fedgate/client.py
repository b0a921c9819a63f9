"""The client library used by the CLI and the tests: supervisors and officers talk to the gateway."""

from __future__ import annotations

import datetime as dt
from types import TracebackType

import grpc

from fedgate.datasets import RegisteredDataset
from fedgate.errors import RemoteCallFailed
from fedgate.identity import GATEWAY
from fedgate.protos.fedgate.v1 import registry_pb2, registry_pb2_grpc
from fedgate.tls import TlsFiles, secure_channel
from fedgate.wire import dataset_from_proto

DEFAULT_TIMEOUT_S = 30.0


class GatewayClient:
    """An mTLS connection to the gateway under the identity in `tls`'s certificate."""

    def __init__(self, address: str, tls: TlsFiles, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._channel = secure_channel(address, tls, GATEWAY)
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._timeout = timeout

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def list_datasets(self, department: str | None = None) -> list[RegisteredDataset]:
        try:
            reply = await self._registry.ListDatasets(
                registry_pb2.ListDatasetsRequest(department=department or ""), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise RemoteCallFailed(exc.code().name, exc.details() or "") from None
        return [
            RegisteredDataset(dataset_from_proto(item.spec), item.department_display_name,
                              item.registered_at.ToDatetime(tzinfo=dt.timezone.utc))
            for item in reply.datasets
        ]
