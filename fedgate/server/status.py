"""THE one map from domain errors to gRPC status codes, for every fedgate server."""

from __future__ import annotations

import grpc

from fedgate.core import errors

# Looked up along the exception's MRO, so the most specific class wins
# (MalformedProof before VerificationError, InvalidIdentifier via InvalidInput).
STATUS_BY_ERROR: dict[type[errors.FedgateError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.RemoteProtocolError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.MalformedProof: grpc.StatusCode.INVALID_ARGUMENT,
    errors.LocalProtocolError: grpc.StatusCode.INTERNAL,
    errors.VerificationError: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    # A replayed ticket: no state change makes the entry servable again (FAILED_PRECONDITION
    # would invite a retry); the permission it carried is spent, so it is denied like a forged one.
    errors.TicketReplayed: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ConfigError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.DataSourceError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.QuotaExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_for(exc: errors.FedgateError) -> grpc.StatusCode:
    """The status code for a domain error; INTERNAL for a class nobody mapped."""
    for cls in type(exc).__mro__:
        code = STATUS_BY_ERROR.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL
