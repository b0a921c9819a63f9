"""What the gateway writes to its audit log for each request, and how officers read it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc

from fedgate.core import audit_search
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.core.errors import InvalidInput, NotFound
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import StoredEntry
from fedgate.core.errors import PolicyDenied
from fedgate.gateway.policy import Policy
from fedgate.core.identity import Identity
from fedgate.query.probing import SUPPRESSED_SIZE
from fedgate.server.interceptors import RequestRecord

_DENIALS = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION}
MAX_SEARCH = 10_000


def decision_for(code: grpc.StatusCode) -> str:
    if code is grpc.StatusCode.OK:
        return "allow"
    return "deny" if code in _DENIALS else "error"


# Longest text an entry keeps from a request field. Valid requests stay far below these (a
# purpose is at most 256 characters, a dataset name 127); a hostile one is cut, with its length
# noted, so a refused 3 MB purpose cannot bloat the append-only log.
MAX_TEXT = 512
MAX_REASON = 2048


def bounded(text: str, limit: int = MAX_TEXT) -> str:
    """`text`, or its first `limit` characters and a note of how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}…[{len(text):,} characters]"


def entry_for(record: RequestRecord, code: grpc.StatusCode | None, reason: str) -> AuditEntry:
    """The audit entry for a finished request (allowed or refused), or, with no code, for a
    query about to touch department data (decision allow, status STARTED)."""
    ident = record.identity
    return AuditEntry(
        time=utc_now(),
        subject=ident.spiffe_id if ident else "unauthenticated",
        role=ident.role.value if ident else "",
        action=record.action or record.method.rsplit("/", 1)[-1],
        method=record.method,
        decision=decision_for(code) if code else "allow",
        status=code.name if code else "STARTED",
        datasets=tuple(bounded(d) for d in record.datasets),
        fields=tuple(bounded(f) for f in record.fields),
        purpose=bounded(record.purpose),
        case_number=bounded(record.case_number),
        rule=record.rule,
        reason=bounded(reason, MAX_REASON),
        result_sizes=tuple(sorted(record.result_sizes.items())),
        trace_id=record.trace_id,
        query_id=record.query_id,
        params=tuple(sorted((bounded(k), bounded(v, MAX_REASON)) for k, v in record.params.items())),
    )


class AuditRecorder:
    """The gateway's completion hook: one entry per request, appended before the reply leaves.

    `then` runs after each append with the entry and its index (the probing alerts, `gateway/alerts.py`).
    `collect_failed` gets the query id of a held request whose collection this call took and did not
    answer, so it can be collected again (the departments' single-use tickets still serve it once).
    """

    def __init__(self, log: AuditLog, then: Callable[[int, AuditEntry], Awaitable[None]] | None = None,
                 collect_failed: Callable[[str], Awaitable[None]] | None = None) -> None:
        self._log = log
        self._then = then
        self._collect_failed = collect_failed

    async def __call__(self, record: RequestRecord, code: grpc.StatusCode, reason: str) -> None:
        if code is grpc.StatusCode.OK and not record.audit:
            return
        entry = entry_for(record, code, reason)
        appended = await self._log.append(entry)
        if code is not grpc.StatusCode.OK and record.approvals and self._collect_failed is not None:
            await self._collect_failed(record.query_id)
        if self._then is not None:
            await self._then(appended.index, entry)


@dataclass(frozen=True)
class SearchCriteria(audit_search.Criteria):
    """The criteria of one search, checked and normalised when built, and how many entries to return."""

    limit: int = 50
    # A department's code: only entries naming one of its datasets (department.dataset) match. Set from the
    # caller's certificate for a department's search, never from the request.
    department: str = ""
    # Paging: only entries below this index (0: no bound).
    before: int = 0
    # Only answers suppressed as too small (their outcome's result sizes say so).
    suppressed: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.limit <= MAX_SEARCH:
            raise InvalidInput(f"limit must be between 1 and {MAX_SEARCH}")
        if self.before < 0:
            raise InvalidInput("before must be an entry index (0: from the newest entry)")
        # Every criterion in the form entries hold, or InvalidInput: one that cannot match is not an empty answer.
        normal = audit_search.checked(self.subject, self.dataset, self.case_number, self.decision, self.action,
                                      self.since, self.until, agency=self.agency)
        for name, value in vars(normal).items():
            object.__setattr__(self, name, value)

    def matches(self, e: AuditEntry) -> bool:
        # RFC 3339 UTC strings of equal precision compare in time order.
        return ((not self.subject or e.subject == self.subject)
                and (not self.dataset or self.dataset in e.datasets)
                and (not self.case_number or e.case_number == self.case_number)
                and (not self.decision or e.decision == self.decision)
                and (not self.action or e.action == self.action)
                and (not self.since or e.time >= self.since)
                and (not self.until or e.time < self.until)
                and (not self.agency or audit_search.of_agency(e.subject, self.agency))
                and (not self.suppressed or dict(e.result_sizes).get(SUPPRESSED_SIZE, 0) > 0)
                and (not self.department or names_department(e, self.department)))


def names_department(entry: AuditEntry, department: str) -> bool:
    """Whether the entry is about one of `department`'s datasets (a qualified name's prefix is its department)."""
    return any(d.partition(".")[0] == department for d in entry.datasets)


class AuditReader:
    """Read access to the log for those the policy allows: security officers, and departments (their own part)."""

    def __init__(self, log: AuditLog, policy: Policy) -> None:
        self.log = log
        self.policy = policy

    def authorise(self, caller: Identity, record: RequestRecord) -> None:
        record.rule = self.policy.decide_for(caller, "audit.*", "audit.read").require()

    def authorise_own(self, caller: Identity, record: RequestRecord) -> None:
        """A department searching the entries about its own datasets (`audit.read.own`; see `own_part`)."""
        record.rule = self.policy.decide_for(caller, f"{caller.org}.*", "audit.read.own").require()

    @staticmethod
    def own_part(caller: Identity, criteria: SearchCriteria) -> SearchCriteria:
        """A department's search, narrowed to the entries about its own datasets.

        A dataset criterion naming another department's dataset is refused on its name alone, so the
        answer says nothing about that department's entries; every other entry simply does not match.
        """
        if criteria.dataset and criteria.dataset.partition(".")[0] != caller.org:
            raise PolicyDenied(f"department {caller.org} reads the audit entries about its own datasets only")
        return dataclasses.replace(criteria, department=caller.org)

    def checkpoint(self, size: int) -> tuple[int, str]:
        """The stored checkpoint at `size`, or the latest stored one for 0."""
        if size:
            note = self.log.store.checkpoint_at(size)
        else:
            found = self.log.store.latest_checkpoint_with_size()
            size, note = found if found else (0, None)
        if note is None:
            raise NotFound(f"no checkpoint for size {size} (the log has {self.log.size} entries)")
        return size, note

    async def entries(self, start: int, stop: int) -> AsyncIterator[StoredEntry]:
        stop = stop or await self.log.stored_size()  # all of it, with what other replicas appended
        if start < 0 or stop < start:
            raise InvalidInput("entries need 0 <= start <= stop")
        # Batches keep memory flat however long the log is.
        for begin in range(start, stop, 1000):
            end = min(begin + 1000, stop)
            for item in await asyncio.to_thread(list, self.log.store.entries(begin, end)):  # read on the thread
                yield item

    async def search(self, criteria: SearchCriteria) -> list[StoredEntry]:
        def scan() -> list[StoredEntry]:
            found = []
            for item in self.log.store.entries_newest_first(before=criteria.before or None):
                if criteria.matches(AuditEntry.from_canonical(item.body)):
                    found.append(item)
                    if len(found) >= criteria.limit:
                        break
            return found
        return await asyncio.to_thread(scan)
