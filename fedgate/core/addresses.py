"""host:port addresses as fedgate reads them from configs and options: a port is never implied."""

from __future__ import annotations

import re

# gRPC target schemes passed through as they are (their own syntax; gRPC reports their errors).
_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/]+):(?P<port>\d{1,5})$")


def address_problem(text: str, listen: bool = False) -> str | None:
    """Why `text` is not a host:port address (None if it is); port 0 is allowed only where we listen."""
    if text.startswith(_SCHEMES):
        return None
    match = _HOST_PORT.match(text.strip())
    if match is None:
        if text.strip() and ":" not in text.strip("[]"):
            return (f"{text!r} has no port: write host:port, e.g. {text.strip()}:50051 (a port is never assumed)")
        return f"{text!r} is not host:port (e.g. 127.0.0.1:50051, gateway.example:50051, [::1]:50051)"
    port = int(match.group("port"))
    if port > 65535 or (port == 0 and not listen):
        allowed = "0 to 65535 (0 picks a free port)" if listen else "1 to 65535"
        return f"{text!r} has port {port}: a port is {allowed}"
    return None
