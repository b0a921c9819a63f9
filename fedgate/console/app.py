"""The console's pages: server-rendered, each one a call to the gateway under the owner's own certificate.

There is no console-wide account: the console holds one person's certificate, serves only a browser
presenting a certificate of that same identity, and every page it renders is one or more audited
requests to the gateway as that person. The same library calls as the CLI's do the work.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from fedgate.client.gateway import GatewayClient
from fedgate.console import audit_views
from fedgate.console.https import client_certificate
from fedgate.console.settings import ConsoleSettings
from fedgate.core import audit_search
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import FedgateError, InvalidInput, NotFound, RemoteCallFailed
from fedgate.core.identity import Identity, Role, identity_from_pem, who
from fedgate.crypto.checkpoint import VerifierKey
from fedgate.crypto.cosignature import WitnessKey
from fedgate.server.signing_key import read_vkey

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_PAGE = 500
# gRPC status names of a failed gateway call, as the HTTP status the page carries.
_HTTP_OF = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
            "FAILED_PRECONDITION": 409, "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}
_SECURITY_HEADERS = {
    # Scripts and styles only from the console itself (no inline script, no CDN); no framing (an approve
    # button in someone else's frame); no referrer (URLs carry search criteria); nothing cached.
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass
class Console:
    """One console's state: its owner, the gateway client and what the owner's role needs."""

    settings: ConsoleSettings
    owner: Identity
    vkey: VerifierKey | None
    vkey_text: str
    csrf_key: bytes
    client: GatewayClient | None = None
    job: audit_views.VerificationJob | None = None
    witnesses: tuple[WitnessKey, ...] = ()

    @property
    def gateway(self) -> GatewayClient:
        assert self.client is not None, "the console's gateway client opens with the app"
        return self.client

    def csrf_token(self) -> str:
        return hmac.new(self.csrf_key, b"fedgate-console-form", hashlib.sha256).hexdigest()

    def check_csrf(self, token: str) -> None:
        if not hmac.compare_digest(token.encode(), self.csrf_token().encode()):
            raise HTTPException(403, "this form was not sent from this console's own page (stale or forged): "
                                     "reload the page and send it again")


def _templates() -> Jinja2Templates:
    directory = resources.files("fedgate.console") / "templates"
    templates = Jinja2Templates(directory=str(directory))
    templates.env.filters["who"] = lambda subject: who(subject)[1]
    templates.env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False, indent=2)
    templates.env.filters["plain"] = _plain
    return templates


def _plain(value: Any) -> str | None:
    """A value shown as one line of text (strings, numbers, lists of them), or None for JSON in a block."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return ", ".join(map(str, value)) or "-"
    if isinstance(value, dict) and all(isinstance(v, (str, int)) for v in value.values()):
        return "; ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    return None


def _page_size(request: Request) -> int:
    try:
        size = int(request.query_params.get("limit", PAGE_SIZE))
    except ValueError:
        raise InvalidInput("limit must be a number of entries per page") from None
    if not 1 <= size <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE} entries per page")
    return size


def _entry_row(index: int, e: AuditEntry) -> dict[str, Any]:
    agency, caller = who(e.subject)
    return {"index": index, "time": e.time.replace("T", " ").removesuffix("Z"), "agency": agency, "caller": caller,
            "action": e.action, "decision": e.decision, "status": e.status, "datasets": ", ".join(e.datasets),
            "case_number": e.case_number, "purpose": e.purpose, "reason": e.reason, "trace_id": e.trace_id,
            "query_id": e.query_id}


def create_app(settings: ConsoleSettings) -> Starlette:
    """The console as an ASGI app for `settings`' owner (InvalidInput if the settings cannot serve)."""
    owner = settings.owner()
    vkey = read_vkey(settings.vkey) if settings.vkey else None
    vkey_text = settings.vkey.read_text() if settings.vkey else ""
    con = Console(settings, owner, vkey, vkey_text, secrets.token_bytes(32))
    if vkey is not None:
        from fedgate.server.witness_key import read_witness_keys
        witnesses = read_witness_keys(settings.witness_keys) if settings.witness_keys else []
        con.witnesses = tuple(witnesses)
        quorum = settings.witness_quorum if settings.witness_quorum is not None else (1 if witnesses else 0)
        con.job = audit_views.VerificationJob(vkey, settings.state_dir, witnesses, quorum)
    templates = _templates()
    officer = owner.role is Role.OFFICER

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.update(owner=owner, officer=officer, gateway=settings.gateway, csrf=con.csrf_token(),
                       now=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
        return templates.TemplateResponse(request, name, context, status_code=status)

    def for_role(role: Role, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request],
                                                                                             Awaitable[Response]]:
        async def checked(request: Request) -> Response:
            if owner.role is not role:
                raise HTTPException(404, f"this page is for {role.value}s; this console is {owner}'s")
            return await handler(request)
        return checked

    # --- officers ---

    async def log_head(request: Request) -> Response:
        assert vkey is not None
        head = await audit_views.read_head(con.gateway, vkey, settings.state_dir, con.witnesses)
        return page(request, "log.html", head=head, job=con.job.state if con.job else None)

    def _criteria(request: Request, **fixed: str) -> tuple[dict[str, str], audit_search.Criteria, int]:
        q = {k: request.query_params.get(k, "").strip() for k in
             ("subject", "agency", "dataset", "case", "decision", "action", "since", "until")}
        q.update(fixed)
        wanted = audit_search.checked(q["subject"], q["dataset"], q["case"], q["decision"], q["action"],
                                      q["since"], q["until"], agency=q["agency"])
        try:
            before = int(request.query_params.get("before", "0") or 0)
        except ValueError:
            raise InvalidInput("before must be an entry index") from None
        return q, wanted, before

    async def entries(request: Request, title: str = "Search the audit log", suppressed: bool = False,
                      **fixed: str) -> Response:
        q, wanted, before = _criteria(request, **fixed)
        size = _page_size(request)
        found = await con.gateway.search(**vars(wanted), before=before, limit=size, suppressed=suppressed)
        rows = [_entry_row(i, e) for i, e in found]
        next_before = found[-1].audit_index if len(found) == size else None
        query = {k: v for k, v in q.items() if v and k not in fixed}
        if size != PAGE_SIZE:
            query["limit"] = str(size)
        if suppressed:
            query["suppressed"] = "1"
        return page(request, "entries.html", title=title, q=q, rows=rows, before=before, next_before=next_before,
                    query=query, fixed=fixed, suppressed=suppressed)

    async def refused(request: Request) -> Response:
        if request.query_params.get("suppressed") == "1":
            return await entries(request, "Answers suppressed as too small", suppressed=True)
        return await entries(request, "Refused requests", decision="deny")

    async def alerts(request: Request) -> Response:
        return await entries(request, "Probing alerts", action=audit_search.ALERT_ACTION)

    async def entry(request: Request) -> Response:
        assert vkey is not None
        index = int(request.path_params["index"])
        proof = await con.gateway.inclusion_proof(index)
        problem = ""
        try:
            proven = audit_views.check_entry(proof, vkey)
            e, size = proven.entry, proven.checkpoint.size
        except FedgateError as exc:
            problem, e, size = exc.diagnostics(), AuditEntry.from_canonical(proof.body), proof.size
        bundle = audit_views.proof_bundle(proof, vkey_text)
        return page(request, "entry.html", row=_entry_row(index, e), entry=e.to_dict(), size=size, problem=problem,
                    bundle=bundle, bundle_json=json.dumps(bundle))

    async def bundle(request: Request) -> Response:
        index = int(request.path_params["index"])
        proof = await con.gateway.inclusion_proof(index)
        body = json.dumps(audit_views.proof_bundle(proof, vkey_text), indent=2).encode()
        return Response(body, media_type="application/json", headers={
            "content-disposition": f'attachment; filename="fedgate-entry-{index}-proof.json"'})

    async def budgets(request: Request) -> Response:
        return page(request, "budgets.html", uses=await con.gateway.budgets())

    async def verify_page(request: Request) -> Response:
        assert con.job is not None
        if request.method == "POST":
            form = await request.form()
            con.check_csrf(str(form.get("csrf", "")))
            con.job.start(con.gateway)
            return RedirectResponse("/verify", status_code=303)
        return page(request, "verify.html", job=con.job.state, running=con.job.running)

    async def verify_status(request: Request) -> Response:
        assert con.job is not None
        return JSONResponse(con.job.state.to_json())

    async def trace(request: Request) -> Response:
        from fedgate.console.traces import trace_tree
        trace_id = request.path_params["trace_id"]
        view = await con.gateway.trace(trace_id)
        if not view.spans:
            raise NotFound(f"no spans of trace {trace_id[:32]} at the gateway or its departments (spans are kept "
                           "for a limited time)")
        return page(request, "trace.html", trace_id=trace_id, tree=trace_tree(view.spans), missing=view.missing,
                    services=sorted({s.service for s in view.spans}))

    # --- departments ---

    # A department's adapter configuration, read once at start (a broken one fails the start, not a page).
    adapter_config: Any = None
    if settings.adapter_config is not None:
        from fedgate.adapters.config import AdapterConfig
        adapter_config = AdapterConfig.load(settings.adapter_config)

    def _adapter_config() -> Any:
        return adapter_config

    async def requests_page(request: Request) -> Response:
        from fedgate.cli.department_view import read_view
        since = audit_search.point_in_time(request.query_params.get("since", ""), "since", dt.datetime.now(dt.UTC))
        flagged_only = request.query_params.get("flagged") == "1"
        view = await read_view(con.gateway, owner.org, _adapter_config().data_dir / "disclosures.db", since)
        shown = view.flagged if flagged_only else view.requests
        return page(request, "requests.html", view=view, shown=[r.to_json() for r in shown],
                    flagged_only=flagged_only, since=request.query_params.get("since", ""))

    async def approvals(request: Request) -> Response:
        from fedgate.client.approvals import held_summary
        everything = request.query_params.get("all") == "1"
        held = await con.gateway.held_requests(everything)
        return page(request, "approvals.html", held=[held_summary(h, owner.org) | {"state": h.state}
                                                      for h in held], everything=everything)

    async def approval(request: Request) -> Response:
        from fedgate.client.approvals import held_summary
        query_id = request.path_params["query_id"]
        message = ""
        if request.method == "POST":
            form = await request.form()
            con.check_csrf(str(form.get("csrf", "")))
            decision = str(form.get("decision", ""))
            if decision not in ("approve", "deny"):
                raise InvalidInput("decision must be approve or deny")
            h = await _decide(query_id, decision, str(form.get("reason", ""))[:1000])
            missing = sum(n.missing for n in h.needs if n.department == owner.org)
            message = f"{decision}d: the request is now {h.state}" + (
                f" ({missing} approval(s) still missing)" if missing and h.state == "pending" else "")
        else:
            h = await con.gateway.held_request(query_id)
        summary = held_summary(h, owner.org)
        datasets = await con.gateway.list_datasets(owner.org)
        summary["rows"] = {d.decl.qualified_name: d.live_row_count if d.live_row_count is not None
                           else d.decl.row_count for d in datasets if d.decl.qualified_name in h.entry.datasets}
        return page(request, "approval.html", h=h, summary=summary, message=message,
                    can_decide=settings.approver_key is not None and h.state == "pending")

    async def _decide(query_id: str, decision: str, reason: str) -> Any:
        from fedgate.server.signing_key import ed25519_key, vkey_path
        if settings.approver_key is None:
            raise InvalidInput("this console has no approver key: start it with --approver-key to approve or deny")
        signer = ed25519_key(settings.approver_key, "approver key")
        name = read_vkey(vkey_path(settings.approver_key)).name
        h = await con.gateway.held_request(query_id)
        now = int(time.time())
        note = h.sign(owner.org, decision, name, signer, now, h.expires_at - now)
        return await con.gateway.decide(query_id, note, reason)

    async def subject_report(request: Request) -> Response:
        report = None
        dataset = ""
        if request.method == "POST":
            from fedgate.adapters.subject_report import make_report
            form = await request.form()
            con.check_csrf(str(form.get("csrf", "")))
            dataset = str(form.get("dataset", ""))
            # The identifier comes in a POST body, never a URL (history, logs); it is only ever hashed.
            report = make_report(_adapter_config(), str(form.get("identifier", "")), dataset)
        return page(request, "subject_report.html", report=report.to_json() if report else None,
                    tell_withheld=bool(report and report.tell_withheld), dataset=dataset)

    async def home(request: Request) -> Response:
        return RedirectResponse("/log" if officer else "/requests", status_code=303)

    async def certificate(request: Request) -> Response:
        from fedgate.console.certificates import own_certificates
        return page(request, "certificates.html", certs=own_certificates(settings))

    static = resources.files("fedgate.console") / "static"
    routes = [
        Route("/", home),
        Route("/certificates", certificate),
        Route("/log", for_role(Role.OFFICER, log_head)),
        Route("/entries", for_role(Role.OFFICER, entries)),
        Route("/entries/{index:int}", for_role(Role.OFFICER, entry)),
        Route("/entries/{index:int}/bundle", for_role(Role.OFFICER, bundle)),
        Route("/refused", for_role(Role.OFFICER, refused)),
        Route("/alerts", for_role(Role.OFFICER, alerts)),
        Route("/budgets", for_role(Role.OFFICER, budgets)),
        Route("/verify", for_role(Role.OFFICER, verify_page), methods=["GET", "POST"]),
        Route("/verify/status", for_role(Role.OFFICER, verify_status)),
        Route("/traces/{trace_id}", for_role(Role.OFFICER, trace)),
        Route("/requests", for_role(Role.DEPARTMENT, requests_page)),
        Route("/approvals", for_role(Role.DEPARTMENT, approvals)),
        Route("/approvals/{query_id}", for_role(Role.DEPARTMENT, approval), methods=["GET", "POST"]),
        Route("/subject-report", for_role(Role.DEPARTMENT, subject_report), methods=["GET", "POST"]),
        Mount("/static", app=StaticFiles(directory=str(static)), name="static"),
    ]

    async def failed(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            status, message = exc.status_code, str(exc.detail)
        elif isinstance(exc, RemoteCallFailed):
            status, message = _HTTP_OF.get(exc.code, 502), f"the gateway answered {exc.code}: {exc.details}"
        elif isinstance(exc, InvalidInput):
            status, message = 400, exc.diagnostics()
        elif isinstance(exc, NotFound):
            status, message = 404, exc.diagnostics()
        elif isinstance(exc, FedgateError):
            status, message = 500, exc.diagnostics()
        else:
            log.exception("console page %s failed", request.url.path)
            status, message = 500, f"the console failed ({type(exc).__name__}); its log has the details"
        return page(request, "error.html", status=status, status_code=status, message=message)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        con.client = GatewayClient(settings.gateway, settings.tls)
        try:
            yield
        finally:
            if con.job is not None:
                await con.job.stop()
            await con.client.close()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={Exception: failed, HTTPException: failed, FedgateError: failed})
    return _OwnerOnly(app, owner)  # type: ignore[return-value]


class _OwnerOnly:
    """Serve only requests whose TLS client certificate is the console owner's identity; add security headers."""

    def __init__(self, app: Any, owner: Identity) -> None:
        self.app, self.owner = app, owner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pem = client_certificate(scope)
        refusal = self._refusal(pem)
        if refusal:
            # Nothing is asked of the gateway: a stranger's request never becomes the owner's audited call.
            log.warning("console request refused: %s", refusal)
            await Response(refusal + "\n", status_code=403 if pem else 401, media_type="text/plain",
                           headers=_SECURITY_HEADERS)(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in _SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)
        await self.app(scope, receive, with_headers)

    def _refusal(self, pem: bytes | None) -> str:
        if pem is None:
            return "this console serves only a browser presenting its owner's certificate (none was presented)"
        try:
            presented = identity_from_pem(pem)
        except Exception:
            return "the certificate presented names no fedgate identity"
        if presented != self.owner:
            return (f"this console is {self.owner}'s; the certificate presented is {presented}'s. Run your own "
                    "console with your own certificate")
        return ""

