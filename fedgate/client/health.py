"""Asking a server's plaintext health-only port (`health_listen`), as a container's health check does.

That port serves grpc.health.v1 and nothing else, without TLS (fedgate/server/serving.py), so
this needs no certificate: it is what `fedgate health` runs inside the image.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedgate.core.addresses import address_problem
from fedgate.core.errors import InvalidInput, RemoteCallFailed

__all__ = ["health_status"]


async def health_status(address: str, service: str = "", timeout_s: float = 3.0) -> str:
    """The status the health service at `address` reports for `service` ("": the whole server).

    One of SERVING, NOT_SERVING (e.g. while shutting down), SERVICE_UNKNOWN, UNKNOWN.
    Raises RemoteCallFailed when nothing answers there within `timeout_s`.
    """
    if (problem := address_problem(address, False)) is not None:
        raise InvalidInput(f"health address {address!r}: {problem}")
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise RemoteCallFailed(exc.code().name, f"health check at {address}: {exc.details()}") from None
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return name
