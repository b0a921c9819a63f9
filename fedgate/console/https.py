"""The console's HTTPS listener: mutual TLS with the fedgate CA, and the browser's certificate handed to the app.

The console serves with its owner's own certificate and asks every browser connection for a client
certificate from the same CA: a connection without one, or with one from another CA, fails in the
handshake and never reaches the application. Which identity the certificate holds is checked per
request (`fedgate.console.app`), because loopback is shared by every user of the machine.

uvicorn (0.55) does not yet put the client certificate in the ASGI scope (the ASGI TLS extension,
uvicorn PR #3133), so the HTTP protocol below reads it off the connection's SSL object and adds it
as ``scope["extensions"]["tls"]["client_cert_chain"]``, the extension's own key: once uvicorn sets
it itself, this class can go.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = dict[str, Any]
ASGIApp = Any


def _with_client_cert(app: ASGIApp, pem: str | None) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = {"client_cert_chain": [pem] if pem else []}
            scope = {**scope, "extensions": extensions}
        await app(scope, receive, send)
    return wrapped


class ClientCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with the verified client certificate in each request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode() if der else None
        self.app = _with_client_cert(self.app, pem)


def client_certificate(scope: Scope) -> bytes | None:
    """The PEM of the certificate the browser presented on this request's connection, if any."""
    chain = ((scope.get("extensions") or {}).get("tls") or {}).get("client_cert_chain") or []
    return chain[0].encode() if chain else None


def server_context(ca: str, cert: str, key: str, crl: str | None = None) -> ssl.SSLContext:
    """A TLS server context that requires a client certificate issued by the CA (and not on its CRL, if given)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    if crl:
        context.load_verify_locations(cafile=crl)
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context
