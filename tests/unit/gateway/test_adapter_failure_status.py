"""What a failed adapter call means for the supervisor: a stream cut under the call is the department gone
(UNAVAILABLE, retry), not a refusal; the adapter's own refusals stay refusals."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from fedgate.core.errors import FailedPrecondition, Unavailable
from fedgate.gateway.adapter_links import adapter_failure


def _error(code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, str], ...] = ()) -> AioRpcError:
    return AioRpcError(code, Metadata(), Metadata(*trailers), details)


@pytest.mark.parametrize("code,details", [
    (grpc.StatusCode.UNKNOWN, "Stream removed"),
    (grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 2"),
    (grpc.StatusCode.INTERNAL, "Socket closed"),
    (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"),
    (grpc.StatusCode.CANCELLED, "Cancelled"),
])
def test_a_cut_stream_is_the_department_gone(code: grpc.StatusCode, details: str) -> None:
    failure = adapter_failure("samr", _error(code, details))
    assert isinstance(failure, Unavailable) and "department 'samr' is unavailable" in str(failure)


@pytest.mark.parametrize("code,details,trailers", [
    (grpc.StatusCode.PERMISSION_DENIED, "the ticket carries 0 valid approval(s)", (("fedgate-error", "TicketRefused"),)),
    (grpc.StatusCode.INTERNAL, "internal error in the server; the operator's log has the details", ()),
    (grpc.StatusCode.INTERNAL, "Socket closed", (("fedgate-error", "LocalProtocolError"),)),
])
def test_the_adapters_own_errors_stay_refusals(code: grpc.StatusCode, details: str,
                                               trailers: tuple[tuple[str, str], ...]) -> None:
    failure = adapter_failure("samr", _error(code, details, trailers))
    assert isinstance(failure, FailedPrecondition) and not isinstance(failure, Unavailable)
