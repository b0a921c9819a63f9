"""Channels from the gateway to department adapters, each pinned to its department's certificate."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc

from fedgate.core.datasets import DatasetDecl, FieldGrant
from fedgate.crypto.ticket import StaleBase, Ticket
from fedgate.core.errors import (CertificateRevoked, DepartmentDeclined, DepartmentRevoked, DisclosureLogFailed,
                                 FailedPrecondition, FedgateError, PermissionDenied, SourceFailed, Unavailable)
from fedgate.core.identity import Identity
from fedgate.server.interceptors import call_timeout, error_class
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc, common_pb2
from fedgate.server.revocation import Revocations, serial_of
from fedgate.server.span_wire import span_from_proto
from fedgate.server.trace_store import StoredSpan
from fedgate.server.tls import RenewedFiles, TlsFiles, secure_channel
from fedgate.server.wire import cosignature_from_metadata, dataset_from_proto

log = logging.getLogger(__name__)

# Every call to an adapter has a deadline: these, or the supervisor's own if it is sooner.
DESCRIBE_TIMEOUT_S = 5.0
STATE_TIMEOUT_S = 5.0
QUERY_TIMEOUT_S = 60.0


def ticket_to_proto(ticket: Ticket) -> adapter_pb2.QueryTicket:
    return adapter_pb2.QueryTicket(claims=ticket.claims_note, entry=ticket.entry, checkpoint=ticket.checkpoint,
                                   inclusion=list(ticket.inclusion), base_size=ticket.base_size,
                                   consistency=list(ticket.consistency), approvals=list(ticket.approvals))


def adapter_failure(department: str, exc: grpc.aio.AioRpcError) -> FedgateError:
    """What a failed adapter call means for the supervisor who asked."""
    code = exc.code()
    if error_class(exc) == SourceFailed.__name__:
        # Only the reference is taken from the adapter's words: nothing else of its source leaves it.
        ref = re.search(r"\(ref ([0-9a-f]{8})\)", exc.details() or "")
        return SourceFailed(ref.group(1) if ref else "none given", department)
    if error_class(exc) == CertificateRevoked.__name__:
        # "your certificate" is the gateway's here: not something the supervisor can fix.
        return FailedPrecondition(f"department '{department}' refuses the gateway: the gateway's certificate was "
                                  "revoked by the CA, so the gateway's operator must install a new one "
                                  f"(the department said: {exc.details()})")
    if error_class(exc) == DisclosureLogFailed.__name__:
        # The department's storage failed (a full disk): not a refusal, and its cause stays there.
        return Unavailable(f"department '{department}' could not record the request in its disclosure log, "
                           "so it served nothing; try later")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED) \
            or _transport_reset(exc):
        return Unavailable(f"department '{department}' is unavailable ({code.name}); retry later")
    return DepartmentDeclined(f"department '{department}' refused the request ({code.name}): {exc.details()}")


# How gRPC's transport reports a stream cut under it (the adapter stopped or its connection broke): no
# fedgate server answers UNKNOWN, and its own INTERNAL errors carry the error-class trailer.
_RESETS = ("RST_STREAM", "Stream removed", "Socket closed", "Connection reset")


def _transport_reset(exc: grpc.aio.AioRpcError) -> bool:
    if error_class(exc):
        return False
    details = exc.details() or ""
    return exc.code() is grpc.StatusCode.UNKNOWN or (
        exc.code() is grpc.StatusCode.INTERNAL and any(r in details for r in _RESETS))


class StaleTicket(FailedPrecondition):
    """The adapter accepted a newer checkpoint meanwhile; a new ticket will do."""

    def __init__(self, department: str) -> None:
        super().__init__(f"department '{department}' kept refusing tickets as stale; retry")


# (department, the checkpoint note its ticket carried, the department's cosignature line on it)
Witnessed = Callable[[str, str, str], Awaitable[None]]


class AdapterLinks:
    """One channel per (department, endpoint), reused across calls."""

    def __init__(self, tls: TlsFiles, witnessed: Witnessed | None = None,
                 revocations: Revocations | None = None) -> None:
        self._tls = tls
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}
        # The serial of the certificate each department's adapter registered with: it serves with the same one,
        # so a department whose serial the CA revoked is dialled no more (see `channel`).
        self._revocations = revocations
        self._serials: dict[str, int] = {}
        # A renewed gateway certificate: new channels present it (adapters may revoke the old one).
        self._renewed = RenewedFiles(tls)
        self._retired: list[grpc.aio.Channel] = []
        # Where an adapter's cosignature goes once it admitted a ticket (the gateway's audit log).
        self.witnessed = witnessed

    async def keep_cosignature(self, department: str, checkpoint_note: str, line: str) -> None:
        """Hand a department's cosignature to the audit log; a failure there costs the query nothing."""
        if not line or self.witnessed is None:
            return
        try:
            await self.witnessed(department, checkpoint_note, line)
        except Exception as exc:  # noqa: BLE001 - witnessing is checked by officers, never a reason to fail
            log.warning("did not keep the cosignature of department '%s': %s", department,
                        exc if isinstance(exc, FedgateError) else type(exc).__name__)

    def note_certificate(self, department: str, serial: int) -> None:
        """The department's adapter proved it holds the certificate with `serial` (a registration, a heartbeat)."""
        if serial:
            self._serials[department] = serial

    @contextlib.contextmanager
    def registering(self, department: str, serial: int) -> Iterator[int | None]:
        """Check the department's adapter as holding `serial` while it registers, yielding the serial checked
        before, which comes back if the registration fails (a refused second adapter must not change it)."""
        before = self._serials.get(department)
        self.note_certificate(department, serial)
        try:
            yield before
        except BaseException:
            if before is None:
                self._serials.pop(department, None)
            else:
                self._serials[department] = before
            raise

    def learn_certificate(self, department: str, certificate_pem: str) -> None:
        """The department's certificate as the registry stored it (with its matching key), unless a serial not
        revoked is known: another replica may have taken the registration of a renewed certificate."""
        if certificate_pem and (department not in self._serials or self.is_revoked(self._serials[department])):
            try:
                self._serials[department] = serial_of(certificate_pem.encode())
            except ValueError:
                pass

    def is_revoked(self, serial: int | None) -> bool:
        return serial is not None and self._revocations is not None and self._revocations.revoked(serial) is not None

    def check_not_revoked(self, department: str) -> None:
        """Raise DepartmentRevoked if the certificate the department's adapter registered with is revoked."""
        serial = self._serials.get(department)
        if self._revocations is None or serial is None:
            return
        found = self._revocations.revoked(serial)
        if found is not None:
            raise DepartmentRevoked(
                f"department '{department}' is sent no requests: the certificate its adapter registered with "
                f"(serial {found.serial:x}) was revoked by the CA on {found.revoked_at:%Y-%m-%d %H:%M} UTC; the "
                "department needs a new certificate from the CA operator, then its adapter registers again")

    def channel(self, department: str, endpoint: str) -> grpc.aio.Channel:
        """The channel to the department's adapter; DepartmentRevoked if its certificate is revoked."""
        self.check_not_revoked(department)  # every call to an adapter dials through here
        if self._renewed():
            log.info("the gateway's certificate was renewed: new connections to adapters present it")
            # Calls in flight finish on the old channels; they are closed with the links.
            self._retired += self._channels.values()
            self._channels.clear()
        key = (department, endpoint)
        if key not in self._channels:
            self._channels[key] = secure_channel(endpoint, self._tls, Identity.department(department))
        return self._channels[key]

    async def describe(self, department: str, endpoint: str) -> list[DatasetDecl]:
        """Ask the adapter at `endpoint` what it serves, proving it holds `department`'s certificate."""
        stub = adapter_pb2_grpc.AdapterServiceStub(self.channel(department, endpoint))
        try:
            reply = await stub.Describe(adapter_pb2.DescribeRequest(), timeout=call_timeout(DESCRIBE_TIMEOUT_S))
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(
                f"adapter endpoint {endpoint} did not answer as department '{department}' "
                f"({exc.code().name}); check that it is running and uses that department's certificate"
            ) from None
        if reply.department != department:
            raise PermissionDenied(f"adapter at {endpoint} says it serves department '{reply.department}'")
        return [dataset_from_proto(d, department) for d in reply.datasets]

    async def log_state(self, department: str, endpoint: str) -> int:
        """The size of the last audit checkpoint the adapter accepted."""
        reply = await self._call(department, endpoint, "GetLogState", adapter_pb2.GetLogStateRequest(),
                                 STATE_TIMEOUT_S)
        return int(reply.seen_size)

    async def spans(self, department: str, endpoint: str, trace_id: str, timeout: float) -> list[StoredSpan]:
        """The adapter's own spans of one trace."""
        stub = adapter_pb2_grpc.AdapterServiceStub(self.channel(department, endpoint))
        reply = await stub.GetSpans(common_pb2.GetSpansRequest(trace_id=trace_id), timeout=call_timeout(timeout))
        return [span_from_proto(s) for s in reply.spans]

    async def _call(self, department: str, endpoint: str, method: str, request: Any,
                    timeout: float = QUERY_TIMEOUT_S, admitted: Callable[[], None] | None = None) -> Any:
        """One unary call to an adapter, its failure turned into what it means for the query.

        `admitted` is called once the adapter has admitted the ticket (its initial
        metadata), or once the call has ended, whichever comes first.
        """
        stub = adapter_pb2_grpc.AdapterServiceStub(self.channel(department, endpoint))
        try:
            call = getattr(stub, method)(request, timeout=call_timeout(timeout))
            if admitted is not None:
                try:
                    metadata = await call.initial_metadata()
                finally:
                    admitted()
                await self.keep_cosignature(department, request.ticket.checkpoint,
                                            cosignature_from_metadata(metadata))
            return await call
        except grpc.aio.AioRpcError as exc:
            if error_class(exc) == StaleBase.__name__:
                raise StaleTicket(department) from None
            raise adapter_failure(department, exc) from None

    async def count_rows(self, department: str, endpoint: str, ticket: Ticket, dataset: str,
                         filter_text: str = "", nonce: bytes = b"",
                         admitted: Callable[[], None] | None = None, min_set_size: int = 0) -> tuple[int, int]:
        """The rows the filter selects and the dataset's live rows without it."""
        reply = await self._call(department, endpoint, "CountRows", adapter_pb2.AdapterCountRequest(
            ticket=ticket_to_proto(ticket), dataset=dataset, filter=filter_text, filter_nonce=nonce,
            min_set_size=min_set_size), admitted=admitted)
        return int(reply.rows), int(reply.total_rows)

    async def disclose(self, department: str, endpoint: str, ticket: Ticket, dataset: str,
                       fields: list[FieldGrant], filter_text: str, nonce: bytes, min_set_size: int,
                       limit: int, admitted: Callable[[], None] | None = None,
                       ) -> tuple[int, list[tuple[list[str], list[bool]]]]:
        reply = await self._call(department, endpoint, "Disclose", adapter_pb2.AdapterDiscloseRequest(
            ticket=ticket_to_proto(ticket), dataset=dataset,
            fields=[adapter_pb2.FieldRequest(name=f.name, level=f.level, form=f.form) for f in fields],
            filter=filter_text, filter_nonce=nonce, min_set_size=min_set_size, limit=limit), admitted=admitted)
        return int(reply.matched_rows), [(list(r.values), list(r.null)) for r in reply.rows]

    async def close(self) -> None:
        for channel in [*self._channels.values(), *self._retired]:
            await channel.close()
        self._channels.clear()
        self._retired.clear()


def check_same_datasets(declared: list[DatasetDecl], served: list[DatasetDecl]) -> None:
    """Refuse a registration whose datasets differ from what the adapter itself describes."""
    if {d.name: d.fields for d in declared} != {d.name: d.fields for d in served}:
        raise FailedPrecondition(
            "the datasets in the registration differ from those the adapter describes; "
            "restart the adapter so both come from the same configuration"
        )
