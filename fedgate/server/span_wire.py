"""Stored spans to and from their wire form (common.proto Span), and the one way a process reads its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path

from fedgate.protos.fedgate.v1 import common_pb2
from fedgate.server.trace_store import StoredSpan, load_trace

# A trace's spans are a few hundred at most; a bound keeps a huge store from answering with megabytes.
MAX_SPANS = 5000


def span_to_proto(span: StoredSpan) -> common_pb2.Span:
    return common_pb2.Span(trace_id=span.trace_id, span_id=span.span_id, parent_span_id=span.parent_span_id or "",
                           name=span.name, service=span.service, kind=span.kind, start_ns=span.start_ns,
                           end_ns=span.end_ns, status_code=span.status_code, status_message=span.status_message,
                           attributes_json=json.dumps(dict(span.attributes), ensure_ascii=False, default=str))


def span_from_proto(msg: common_pb2.Span) -> StoredSpan:
    try:
        attributes = json.loads(msg.attributes_json) if msg.attributes_json else {}
    except ValueError:
        attributes = {}
    return StoredSpan(msg.trace_id, msg.span_id, msg.parent_span_id or None, msg.name, msg.service, msg.kind,
                      msg.start_ns, msg.end_ns, msg.status_code, msg.status_message,
                      attributes if isinstance(attributes, dict) else {})


async def own_spans(store: Path, trace_id: str) -> list[StoredSpan]:
    """This process's spans of one trace (InvalidInput for a malformed trace id), read off the loop."""
    spans = await asyncio.to_thread(load_trace, [store], trace_id)
    return spans[:MAX_SPANS]


def spans_reply(spans: Iterable[StoredSpan], missing: Iterable[str] = ()) -> common_pb2.Spans:
    return common_pb2.Spans(spans=[span_to_proto(s) for s in spans], missing=list(missing))
