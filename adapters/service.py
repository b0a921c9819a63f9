"""AdapterService: what the gateway may ask of a department's adapter."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from opentelemetry import trace

from fedgate.adapters.catalogue import Catalogue
from fedgate.adapters.disclosure import Ask, render
from fedgate.adapters.matching import MatchSessions
from fedgate.adapters.row_history import RowRefs, RowSets
from fedgate.adapters.sources import Source, serving
from fedgate.adapters.subject_refs import SubjectRefs, subject_columns
from fedgate.adapters.subject_uses import SubjectUse, SubjectUses
from fedgate.adapters.tickets import Admission
from fedgate.adapters.tickets import TicketGate, recording_stops
from fedgate.core.classification import Levels
from fedgate.core.datasets import DatasetDecl, FieldGrant
from fedgate.core.errors import FailedPrecondition, InvalidInput, PermissionDenied
from fedgate.core.filters import Filter, parse_checked
from fedgate.core.identity import Role
from fedgate.server.interceptors import current_identity, current_record
from fedgate.server.span_wire import own_spans, spans_reply
from fedgate.protos.fedgate.v1 import adapter_pb2, adapter_pb2_grpc, common_pb2
from fedgate.query.safeguards import MAX_DISCLOSE_ROWS, DifferenceRefused, Release, Safeguards, difference_k
from fedgate.server import metrics
from fedgate.server.telemetry import safe_attributes
from fedgate.server.wire import admitted_metadata
from fedgate.server.wire import dataset_to_proto

tracer = trace.get_tracer(__name__)


def require_gateway() -> None:
    """Adapters answer the gateway only; a supervisor or department dialling directly is refused."""
    caller = current_identity()
    if caller.role is not Role.GATEWAY:
        raise PermissionDenied(f"adapters serve the gateway only (caller is {caller})")


class AdapterServicer(adapter_pb2_grpc.AdapterServiceServicer):
    def __init__(self, department: str, catalogue: Catalogue, gate: TicketGate, levels: Levels,
                 sessions: MatchSessions, row_sets: RowSets, subjects: SubjectUses | None = None,
                 span_store: Path | None = None) -> None:
        self._span_store = span_store  # this adapter's own spans, for GetSpans
        self._sessions = sessions
        self._subjects = subjects  # None: whose records each answer covered is not recorded
        self._row_sets = row_sets
        self._department = department
        self._catalogue = catalogue
        self._gate = gate
        self._levels = levels
        self._release = Safeguards.for_department(levels, row_sets.history)

    def _filtered(self, admission: Admission, decl: DatasetDecl, source: Source,
                  where: Filter | None) -> tuple[int, RowRefs | None]:
        """The rows passing `where` (blocking), with their references when the entry binds a difference check:
        then only the columns the references are made of are read."""
        if difference_k(admission.params) <= 1:
            return source.count(where), None
        refs = self._row_sets.read(source, decl, where)
        return refs.rows, refs

    def _released(self, admission: Admission, decl: DatasetDecl, refs: RowRefs | None, total: int, filter_text: str,
                  set_rows: int | None = None, total_rows: int | None = None) -> None:
        """The RELEASE safeguards (blocking: the difference check reads and writes the row-set history)."""
        answer = (None if refs is None
                  else self._row_sets.answer(admission.entry.subject, decl, refs, total, filter_text))
        self._release.release(Release(admission.params, set_rows=set_rows, total_rows=total_rows, answer=answer))

    def _record_use(self, admission: Admission, decl: DatasetDecl, source: Source, where: Filter | None,
                    disclosed: SubjectRefs | None = None, fields: tuple[FieldGrant, ...] = ()) -> None:
        """Record whose records the answer covered (and disclosed), before it leaves (blocking): a use not
        recorded is not served."""
        if self._subjects is None:
            return
        covered = self._subjects.read(source, decl, where)
        if covered is not None:
            self._subjects.record(SubjectUse.of(admission, covered, disclosed.refs() if disclosed else None,
                                                [f"{f.name}:{f.form}" for f in fields]))

    async def GetSpans(self, request: common_pb2.GetSpansRequest,
                       context: grpc.aio.ServicerContext) -> common_pb2.Spans:
        require_gateway()
        spans = await own_spans(self._span_store, request.trace_id) if self._span_store else []
        current_record().result_sizes["spans"] = len(spans)
        return spans_reply(spans)

    async def Describe(self, request: adapter_pb2.DescribeRequest,
                       context: grpc.aio.ServicerContext) -> adapter_pb2.DescribeResponse:
        require_gateway()
        return adapter_pb2.DescribeResponse(
            department=self._department, datasets=[dataset_to_proto(d) for d in self._catalogue.datasets])

    async def GetLogState(self, request: adapter_pb2.GetLogStateRequest,
                          context: grpc.aio.ServicerContext) -> adapter_pb2.LogState:
        require_gateway()
        return adapter_pb2.LogState(seen_size=await asyncio.to_thread(self._gate.seen_size))

    async def CountRows(self, request: adapter_pb2.AdapterCountRequest,
                        context: grpc.aio.ServicerContext) -> adapter_pb2.AdapterCountResponse:
        require_gateway()
        decl, source = self._catalogue.lookup(request.dataset)
        ask = Ask("query.count", decl, filter_text=request.filter, filter_nonce=request.filter_nonce,
                  min_set_size=request.min_set_size)
        with tracer.start_as_current_span("ticket.verify"):
            admission = await self._gate.admit(request.ticket, ask)

        def count(where: Filter | None) -> tuple[int, int, DifferenceRefused | None]:
            rows, refs = self._filtered(admission, decl, source, where)
            # The live total too: the gateway checks the rows a filter leaves out (min_aggregate both ways).
            total = rows if where is None else source.count(None)
            try:
                self._released(admission, decl, refs, total, request.filter)
            except DifferenceRefused as refusal:
                return rows, total, refusal
            self._record_use(admission, decl, source, where)
            return rows, total, None

        async with recording_stops(admission):
            await context.send_initial_metadata(admitted_metadata(admission.cosignature))
            where = parse_checked(request.filter, decl.field_types)  # its own parse, trusting none other
            with tracer.start_as_current_span("source.count") as span, serving(admission.ticket.claims.query_id):
                rows, total, refused = await asyncio.to_thread(count, where)
                span.set_attributes(safe_attributes(**{"fedgate.rows": rows}))
        if refused is not None:
            await admission.refused_after_check(str(refused))
            raise refused
        await admission.served(rows)
        return adapter_pb2.AdapterCountResponse(rows=rows, total_rows=total)

    async def Disclose(self, request: adapter_pb2.AdapterDiscloseRequest,
                       context: grpc.aio.ServicerContext) -> adapter_pb2.AdapterDiscloseResponse:
        require_gateway()
        decl, source = self._catalogue.lookup(request.dataset)
        fields = tuple(FieldGrant(f.name, f.level, f.form) for f in request.fields)
        if not fields or not 0 < request.limit <= MAX_DISCLOSE_ROWS:
            raise InvalidInput(f"a disclosure names at least one field and a limit of 1..{MAX_DISCLOSE_ROWS} rows")
        ask = Ask("query.disclose", decl, fields, request.filter, request.filter_nonce, request.min_set_size,
                  limit=request.limit)
        with tracer.start_as_current_span("ticket.verify"):
            admission = await self._gate.admit(request.ticket, ask)

        def read(where: Filter | None) -> tuple[int, list[common_pb2.DisclosedRow] | FailedPrecondition]:
            matched, refs = self._filtered(admission, decl, source, where)
            total = None if where is None else source.count(None)  # unfiltered: the whole, public-sized set
            try:  # the entry's minimum set size, both ways, and the difference check, before any row is read
                self._released(admission, decl, refs, matched if total is None else total, request.filter, matched,
                               total)
            except FailedPrecondition as refusal:
                return matched, refusal
            # The disclosed rows' subject columns are read with them, so the record names exactly those rows.
            disclosed = self._subjects.refs(decl) if self._subjects else None
            names = [f.name for f in fields]
            keys = [name for name, _ in subject_columns(decl)] if disclosed else []
            columns = list(dict.fromkeys([*names, *keys]))
            at = {name: i for i, name in enumerate(columns)}
            out = []
            for row in itertools.islice(source.rows(columns, where), request.limit):
                text, nulls = render([row[at[n]] for n in names], fields, decl, self._levels)
                out.append(common_pb2.DisclosedRow(values=text, null=nulls))
                if disclosed is not None:
                    disclosed.add_rows(([row[at[k]] for k in keys],))
            self._record_use(admission, decl, source, where, disclosed, fields)
            return matched, out

        async with recording_stops(admission):
            await context.send_initial_metadata(admitted_metadata(admission.cosignature))
            where = parse_checked(request.filter, decl.field_types)  # its own parse, trusting none other
            with tracer.start_as_current_span("source.disclose") as span, serving(admission.ticket.claims.query_id):
                matched, rows = await asyncio.to_thread(read, where)
                span.set_attributes(safe_attributes(**{
                    "fedgate.matched_rows": matched,
                    "fedgate.disclosed_rows": 0 if isinstance(rows, FailedPrecondition) else len(rows)}))
        if isinstance(rows, DifferenceRefused):
            await admission.refused_after_check(str(rows))
            raise rows
        if isinstance(rows, FailedPrecondition):
            # The exact size is not told: that would itself be a probe answer.
            await admission.refused_after_check(f"filtered set, or the rows it leaves out, fewer than the minimum "
                                                f"of {request.min_set_size}")
            raise rows
        await admission.served(len(rows))
        metrics.record_disclosed_rows(admission.action, len(rows))
        return adapter_pb2.AdapterDiscloseResponse(rows=rows, matched_rows=matched)

    async def Match(self, request_iterator: AsyncIterator[adapter_pb2.MatchIn],
                    context: grpc.aio.ServicerContext) -> AsyncIterator[adapter_pb2.MatchOut]:
        require_gateway()
        with tracer.start_as_current_span("match.session"):
            # Closed here when the call ends early, so the session's clean-up and record happen now.
            async with contextlib.aclosing(self._sessions.serve(request_iterator)) as session:
                async for message in session:
                    yield message
