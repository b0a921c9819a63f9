"""One trace as a security officer sees it: the gateway's own spans and every registered department's.

Spans never hold an identifier, key or classified value (the telemetry rules), so gathering them for an
officer reveals only the shape and timing of the work. A department that does not answer in time is
named as missing rather than failing the whole view.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from fedgate.gateway.adapter_links import AdapterLinks
from fedgate.gateway.registry_store import RegistryStore
from fedgate.server.span_wire import own_spans
from fedgate.server.trace_store import StoredSpan

DEPARTMENT_TIMEOUT_S = 5.0


class TraceGatherer:
    """Reads the gateway's span store and asks each registered adapter for its spans of the same trace."""

    def __init__(self, span_store: Path, store: RegistryStore, links: AdapterLinks) -> None:
        self._span_store, self._store, self._links = span_store, store, links

    async def gather(self, trace_id: str) -> tuple[list[StoredSpan], list[str]]:
        """(spans ordered by start, "department: why" for each department whose spans could not be read)."""
        spans = await own_spans(self._span_store, trace_id)
        departments = await asyncio.to_thread(self._store.departments)

        async def ask(code: str, endpoint: str) -> list[StoredSpan] | str:
            try:
                return await self._links.spans(code, endpoint, trace_id, DEPARTMENT_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                return f"{code}: {exc.code().name}"

        answers = await asyncio.gather(*(ask(d.code, d.endpoint) for d in departments))
        missing = [a for a in answers if isinstance(a, str)]
        seen = {s.span_id for s in spans}
        for answer in answers:
            if not isinstance(answer, str):
                spans += [s for s in answer if s.trace_id == trace_id and s.span_id not in seen]
                seen.update(s.span_id for s in answer)
        return sorted(spans, key=lambda s: (s.start_ns, s.span_id)), missing
