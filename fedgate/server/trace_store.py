"""The embedded span store: finished spans in a local SQLite file, read back by the CLI.

Each process (the gateway, every adapter) writes to its OWN file, so writers never
contend across processes; ``load_trace`` and ``list_traces`` merge several files,
which is how one query shows as one trace across gateway and adapters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import threading
import types
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from rich.text import Text
from rich.tree import Tree

from fedgate.core.errors import ConfigError, InvalidInput

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id       TEXT    NOT NULL,
    span_id        TEXT    NOT NULL,
    parent_span_id TEXT,
    name           TEXT    NOT NULL,
    service        TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    start_ns       INTEGER NOT NULL,
    end_ns         INTEGER NOT NULL,
    status_code    TEXT    NOT NULL,
    status_message TEXT    NOT NULL,
    attributes     TEXT    NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spans_by_end ON spans (end_ns);
"""
_COLUMNS = (
    "trace_id, span_id, parent_span_id, name, service, kind, start_ns, end_ns, "
    "status_code, status_message, attributes"
)
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
# SQLite's default limit on bound parameters is 999 on old builds; stay well below.
_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StoredSpan:
    """One finished span as kept in a span store."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    service: str
    kind: str
    start_ns: int
    end_ns: int
    status_code: str
    status_message: str
    attributes: Mapping[str, Any] = field(hash=False)

    @property
    def duration_ms(self) -> float:
        """Wall time of the span in milliseconds."""
        return (self.end_ns - self.start_ns) / 1e6


class TraceSummary(NamedTuple):
    """One line of ``list_traces``: a trace seen across all the given stores."""

    trace_id: str
    root_name: str
    start_ns: int
    span_count: int


class SqliteSpanExporter(SpanExporter):
    """Writes finished spans into one process's own SQLite span store; never raises into the app."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The BatchSpanProcessor exports from its worker thread, and force_flush from
        # the caller's thread: one connection shared under a lock.
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, timeout=5.0)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL survives an application crash; losing the last spans
                # on power loss is acceptable for traces and saves an fsync per batch.
                conn.execute("PRAGMA synchronous=NORMAL")
                with conn:
                    conn.executescript(_SCHEMA)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                conn.close()
                raise
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(str(path), f"cannot open the span store: {exc}") from exc
        self._conn = conn

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Store a batch in one transaction; on any failure log and return FAILURE."""
        try:
            rows = [_row(span) for span in spans]
            with self._lock:
                if self._conn is None:
                    return SpanExportResult.FAILURE
                with self._conn:
                    self._conn.executemany(
                        f"INSERT OR REPLACE INTO spans ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        rows,
                    )
        except Exception:  # the app must never fail because tracing did
            log.warning("could not store %d spans in %s", len(spans), self.path, exc_info=True)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Every export commits before returning, so there is nothing to flush."""
        return True

    def shutdown(self) -> None:
        """Close the database; later exports return FAILURE."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _row(span: ReadableSpan) -> tuple[object, ...]:
    ctx = span.context
    if ctx is None:
        raise ValueError("span without a context")
    parent = span.parent
    service = span.resource.attributes.get("service.name", "unknown_service")
    start = span.start_time or 0
    return (
        format(ctx.trace_id, "032x"),
        format(ctx.span_id, "016x"),
        format(parent.span_id, "016x") if parent is not None else None,
        span.name,
        str(service),
        span.kind.name,
        start,
        span.end_time or start,
        span.status.status_code.name,
        span.status.description or "",
        json.dumps(dict(span.attributes or {}), sort_keys=True, ensure_ascii=False, default=str),
    )


def load_trace(paths: Iterable[Path], trace_id: str) -> list[StoredSpan]:
    """All spans of one trace found in the given stores, ordered by start; missing files are skipped."""
    wanted = _check_trace_id(trace_id)
    found: dict[tuple[str, str], StoredSpan] = {}
    with _open_stores(paths) as stores:
        for path, conn in stores:
            rows = _query(path, conn, f"SELECT {_COLUMNS} FROM spans WHERE trace_id = ?", (wanted,))
            for row in rows:
                span = _stored(row)
                found[(span.trace_id, span.span_id)] = span
    return sorted(found.values(), key=lambda s: (s.start_ns, s.span_id))


def list_traces(paths: Iterable[Path], limit: int = 20) -> list[TraceSummary]:
    """The ``limit`` traces with the most recent activity across the given stores, newest first."""
    if limit < 1:
        raise InvalidInput("limit must be at least 1")
    with _open_stores(paths) as stores:
        # Ranking by a trace's LAST span end makes per-file top-N sound: a trace in the
        # global top N is in the top N of the file holding its last span.
        candidates: set[str] = set()
        for path, conn in stores:
            rows = _query(
                path, conn,
                "SELECT trace_id FROM spans GROUP BY trace_id ORDER BY MAX(end_ns) DESC LIMIT ?",
                (limit,),
            )
            candidates.update(str(r[0]) for r in rows)
        spans: dict[str, dict[str, tuple[str | None, str, int, int]]] = defaultdict(dict)
        ordered = sorted(candidates)
        for path, conn in stores:
            for i in range(0, len(ordered), _IN_CHUNK):
                chunk = ordered[i:i + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = _query(
                    path, conn,
                    "SELECT trace_id, span_id, parent_span_id, name, start_ns, end_ns"
                    f" FROM spans WHERE trace_id IN ({marks})",
                    tuple(chunk),
                )
                for tid, sid, parent, name, start, end in rows:
                    spans[tid][sid] = (parent, name, int(start), int(end))
    summaries: list[tuple[int, TraceSummary]] = []
    for tid, by_id in spans.items():
        roots = [(start, name) for parent, name, start, _ in by_id.values() if parent not in by_id]
        root_name = min(roots)[1] if roots else ""
        start_ns = min(s for _, _, s, _ in by_id.values())
        last = max(e for _, _, _, e in by_id.values())
        summaries.append((last, TraceSummary(tid, root_name, start_ns, len(by_id))))
    summaries.sort(key=lambda item: (item[0], item[1].trace_id), reverse=True)
    return [summary for _, summary in summaries[:limit]]


def render_tree(spans: Iterable[StoredSpan]) -> Tree:
    """A rich tree of spans by parent: service, name, duration, status and attributes per node."""
    items = sorted(spans, key=lambda s: (s.start_ns, s.span_id))
    trace_ids = {s.trace_id for s in items}
    label = f"trace {next(iter(trace_ids))}" if len(trace_ids) == 1 else f"{len(items)} spans"
    tree = Tree(Text(label, style="bold"))
    by_id = {s.span_id: s for s in items}
    children: dict[str | None, list[StoredSpan]] = defaultdict(list)
    for span in items:
        # A parent we do not hold (another store not given, or a caller that was not
        # traced) makes the span a top-level node rather than hiding it.
        key = span.parent_span_id if span.parent_span_id in by_id else None
        children[key].append(span)
    seen: set[str] = set()

    def add(node: Tree, span: StoredSpan) -> None:
        if span.span_id in seen:  # a corrupt store could hold a parent cycle
            return
        seen.add(span.span_id)
        branch = node.add(_label(span))
        for child in children.get(span.span_id, []):
            add(branch, child)

    for top in children.get(None, []):
        add(tree, top)
    for span in items:  # members of a parent cycle have no top-level ancestor
        if span.span_id not in seen:
            add(tree, span)
    return tree


def _label(span: StoredSpan) -> Text:
    # Text objects, not markup strings: a "[" in a name must not be read as rich markup.
    status_style = {"ERROR": "bold red", "OK": "green"}.get(span.status_code, "dim")
    status = span.status_code if not span.status_message else f"{span.status_code} {span.status_message}"
    # Client and server spans of one call share the method name: tell them apart.
    kind = f" ({span.kind.lower()})" if span.kind in ("CLIENT", "SERVER", "PRODUCER", "CONSUMER") else ""
    text = Text.assemble(
        (span.service, "cyan"), " ", (span.name, "bold"), kind,
        f"  {span.duration_ms:.1f} ms  ", (status, status_style),
    )
    if span.attributes:
        shown = " ".join(f"{k}={_show(v)}" for k, v in sorted(span.attributes.items()))
        text.append(f"  {shown}", style="dim")
    return text


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _check_trace_id(trace_id: str) -> str:
    wanted = trace_id.strip().lower()
    if not _TRACE_ID.fullmatch(wanted):
        raise InvalidInput("a trace id is 32 hexadecimal characters")
    return wanted


@contextlib.contextmanager
def _open_stores(paths: Iterable[Path]) -> Iterator[list[tuple[Path, sqlite3.Connection]]]:
    opened: list[tuple[Path, sqlite3.Connection]] = []
    try:
        for path in dict.fromkeys(paths):  # the same file given twice is read once
            if not path.is_file():
                continue  # e.g. an adapter that has not exported a span yet
            try:
                # Read-only URI: a reader must never create or change a store.
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
            except sqlite3.Error as exc:
                raise ConfigError(str(path), f"cannot open the span store: {exc}") from exc
            opened.append((path, conn))
        yield opened
    finally:
        for _, conn in opened:
            conn.close()


def _query(path: Path, conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[Any]:
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise ConfigError(str(path), f"not a readable span store: {exc}") from exc


def _stored(row: Sequence[Any]) -> StoredSpan:
    attributes = {
        k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(row[10]).items()
    }
    return StoredSpan(
        trace_id=row[0], span_id=row[1], parent_span_id=row[2], name=row[3], service=row[4],
        kind=row[5], start_ns=int(row[6]), end_ns=int(row[7]), status_code=row[8],
        status_message=row[9], attributes=types.MappingProxyType(attributes),
    )
