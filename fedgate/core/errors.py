"""The fedgate error tree.

Domain code raises these; it never picks a transport status. ``fedgate.server.status``
holds the one table from error class to gRPC status code, and the CLI turns any
``FedgateError`` into ``diagnostics()`` and an exit code.

Messages must never contain a raw identifier, a matching key or a classified
value: they travel in gRPC details, logs and audit entries.
"""

from __future__ import annotations


class FedgateError(Exception):
    """Base of every error fedgate raises on purpose."""

    # Trailing metadata our own clients read besides the message (e.g. a pending request's query id).
    trailers: tuple[tuple[str, str], ...] = ()

    def diagnostics(self) -> str:
        """Text a person can act on (CLI, console); defaults to the message."""
        return str(self)


class ConfigError(FedgateError):
    """A configuration file is missing, unreadable or has a wrong, missing or unknown key."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class InvalidInput(FedgateError):
    """The caller sent something malformed (bad declaration, filter, identifier format...)."""


class InvalidIdentifier(InvalidInput):
    """An identifier failed normalisation or its check character; never carries the value."""


class DataSourceError(FedgateError):
    """A department's own data source cannot be read as declared (file, table, row)."""


class Unauthenticated(FedgateError):
    """The caller presented no usable identity."""


class CertificateRevoked(Unauthenticated):
    """The caller's certificate is on the CA's revocation list."""


class PermissionDenied(FedgateError):
    """The caller's identity is known but not allowed to do this."""


class PolicyDenied(PermissionDenied):
    """No rule of the central policy allows the request."""


class DepartmentRefused(PermissionDenied):
    """A department's own rule refuses the request, whatever the central policy allows."""


class TicketReplayed(PermissionDenied):
    """A department already served this logged request for this action: a logged entry is served once.

    Not retryable: a new ticket for the same entry is refused the same way (unlike a stale one).
    """


class NotFound(FedgateError):
    """A named dataset, department or entry does not exist."""


class FailedPrecondition(FedgateError):
    """The request is well formed but the system is not in a state to serve it."""


class ProbeRefused(FailedPrecondition):
    """A safeguard against probing refused the answer: a set (or what its filter leaves out) smaller than the
    minimum, a comparison on too few pairs, or an answer too close to one given before (the difference check)."""


class DepartmentDeclined(FailedPrecondition):
    """At the gateway: a department refused a request the gateway forwarded (its ticket check, its rules or
    its own safeguards); the message says why, in the department's words."""


class DepartmentRevoked(FailedPrecondition):
    """The certificate a department's adapter registered (and serves) with is revoked: it is sent no work."""


class AwaitingApproval(FailedPrecondition):
    """A logged request waits for its departments' approval; the caller collects the answer by query id."""

    def __init__(self, message: str, query_id: str, nonces: str = "") -> None:
        super().__init__(message)
        self.query_id = query_id
        # Read by our clients (fedgate.server.interceptors names the keys: QUERY_ID_KEY, NONCES_KEY).
        self.trailers = (("fedgate-query-id", query_id),) + ((("fedgate-filter-nonces", nonces),) if nonces else ())


class QuotaExceeded(FedgateError):
    """A per-caller volume quota is used up."""


class BudgetExhausted(QuotaExceeded):
    """An agency's differential-privacy budget for a dataset is used up for the period."""


class Unavailable(FedgateError):
    """A dependency (an adapter, the gateway) cannot be reached right now."""


class SourceFailed(Unavailable):
    """A department's own source failed while serving a request (table gone, database down).

    The cause names the department's internals (URL, host, user, file, table), so it
    stays in the adapter's log under ``ref``; only the reference leaves the department.
    """

    def __init__(self, ref: str, department: str = "") -> None:
        # The adapter's own words are the disclosure log's reason; the gateway tells the supervisor more.
        message = f"source failed (ref {ref})"
        if department:
            message = (f"department '{department}': the department's {message}; its operator finds the cause "
                       "under this reference in the adapter's log; retry later")
        super().__init__(message)
        self.ref = ref


class DeadlineExceeded(FedgateError):
    """A step of a request (a peer's answer, a client's reply) did not come in time."""


class RemoteCallFailed(FedgateError):
    """A call to a fedgate server failed; carries the gRPC status name and the server's message."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class ProtocolError(FedgateError):
    """A cryptographic or wire protocol step failed.

    Not raised directly: ``LocalProtocolError`` means our own caller misused an
    API (a bug, INTERNAL); ``RemoteProtocolError`` means a peer sent bad bytes
    (INVALID_ARGUMENT).
    """

    def __init__(self, message: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError")
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """Our own code called a protocol function with impossible arguments."""


class RemoteProtocolError(ProtocolError):
    """A peer sent malformed protocol data."""


class VerificationError(FedgateError):
    """A signature, proof or checkpoint did not verify (possible tampering)."""


class MalformedProof(VerificationError):
    """A proof or checkpoint is not well formed (wrong length, size, encoding)."""


class RootMismatch(VerificationError):
    """A well-formed proof leads to a different root than the trusted one."""

    def __init__(self, expected: bytes, calculated: bytes) -> None:
        super().__init__(
            f"root mismatch: expected {expected.hex()}, calculated {calculated.hex()}"
        )
        self.expected = expected
        self.calculated = calculated


class StoreClosed(Unavailable):
    """A local store was used after it was closed: its server is shutting down."""


class DisclosureLogFailed(Unavailable):
    """A department could not write its disclosure log (disk full, I/O error), so it served nothing.

    The gateway recognises the class name and tells the supervisor so, naming
    the department; the cause stays in the adapter's own log.
    """
