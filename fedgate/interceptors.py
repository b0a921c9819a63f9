"""The server interceptor chain shared by the gateway and the adapters.

Order, outermost first, for every method except health and reflection:
1. error mapping: a FedgateError becomes its status code (fedgate.status);
   anything unexpected becomes INTERNAL with a generic message (logged here,
   never sent to the caller);
2. identity: the caller's fedgate identity is read from the certificate the TLS
   layer verified and kept in a contextvar (``current_identity()``).
Service code never reads identity from a request field.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from fedgate.errors import FedgateError, Unauthenticated
from fedgate.identity import Identity, identity_from_pem
from fedgate.status import status_for

log = logging.getLogger(__name__)

_identity: contextvars.ContextVar[Identity] = contextvars.ContextVar("fedgate_identity")
EXEMPT_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def current_identity() -> Identity:
    """The verified identity of the caller of the RPC being served."""
    try:
        return _identity.get()
    except LookupError:
        raise Unauthenticated("no verified caller identity for this call") from None


def peer_identity(context: grpc.aio.ServicerContext) -> Identity:
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        raise Unauthenticated("a client certificate issued by the fedgate CA is required")
    return identity_from_pem(pems[0])


async def _abort_for(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(exc, FedgateError):
        await context.abort(status_for(exc), str(exc))
    log.error("unexpected error in %s", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error in the server; the operator's log has the details")


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Error mapping and identity for every fedgate service method."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(EXEMPT_PREFIXES):
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(handler.stream_stream, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


def _wrap_unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            _identity.set(peer_identity(context))
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort_for(exc, context, method)
    return wrapper


def _wrap_stream(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            _identity.set(peer_identity(context))
            async for item in behavior(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort_for(exc, context, method)
    return wrapper
