"""A trace's spans as the tree the trace page draws: children under their parents, by start time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from fedgate.server.trace_store import StoredSpan


@dataclass
class SpanNode:
    name: str
    service: str
    duration_ms: float
    status_code: str
    status_message: str
    children: list[SpanNode] = field(default_factory=list)


def trace_tree(spans: Iterable[StoredSpan]) -> list[SpanNode]:
    """Roots (spans whose parent is absent) with their descendants; siblings in start order."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.span_id))
    nodes = {s.span_id: SpanNode(s.name, s.service, s.duration_ms, s.status_code, s.status_message)
             for s in ordered}
    roots: list[SpanNode] = []
    for s in ordered:
        parent = nodes.get(s.parent_span_id or "")
        (parent.children if parent is not None and s.parent_span_id != s.span_id else roots).append(nodes[s.span_id])
    return roots
