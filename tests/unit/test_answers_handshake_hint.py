"""The TLS-handshake hint is given for gRPC's own connection failures only, never for a server's refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedgate.server.tls import TlsFiles, handshake_hint

FILES = TlsFiles(Path("certs/ca.pem"), Path("certs/dept-hrss.pem"), Path("certs/dept-hrss.key"))


@pytest.mark.parametrize("details", [
    # What grpc reports when we reject the peer's certificate, and when the peer rejects ours.
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:41851: Tls handshake failed "
    "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
    "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:41851: Socket closed",
])
def test_a_failed_handshake_gets_the_hint(details: str) -> None:
    hint = handshake_hint(details, "127.0.0.1:41851", FILES, "the gateway")
    assert hint is not None and "certs/ca.pem" in hint and details in hint


@pytest.mark.parametrize("details", [
    # The gateway could not reach the adapter's advertised endpoint: a wrong `advertise`, not a CA mismatch.
    "adapter endpoint 10.0.0.5:50061 did not answer as department 'hrss' (UNAVAILABLE); check that it is "
    "running and uses that department's certificate",
    # A department whose code happens to hold "tls" or "ssl".
    "department 'utls' is unavailable (UNAVAILABLE); retry later",
    "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: Connection refused",
])
def test_other_failures_keep_their_own_words(details: str) -> None:
    assert handshake_hint(details, "127.0.0.1:1", FILES, "the gateway") is None
