"""The `fedgate` command: parse, call the library, render. No logic lives here."""

from __future__ import annotations

import asyncio
import contextvars
import faulthandler
import signal
import datetime as dt
import time
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table as RichTable

from fedgate.core import audit_search as criteria
from fedgate.server import pki
from fedgate.cli import span_stores
from fedgate.core.audit_entry import AuditEntry
from fedgate.client.audit_verify import TrustedState, check_inclusion
from fedgate.core.classification import Levels, policies_dir
from fedgate.client.gateway import (
    BudgetUse,
    CompareResult,
    Disclosure,
    FewerThan,
    NoisyCount,
    GatewayClient,
    IndexedEntry,
    MatchResult,
    PolicyVersion,
    ProgressReport,
    RowCount,
    Side,
    SumResult,
)
from fedgate.client.progress import ProgressBoard
from fedgate.client.approvals import Collect, HeldForApproval, HeldRequest, held_summary
from fedgate.cli.approvals_view import HeldLocally, held_table
from fedgate.core.datasets import RegisteredDataset
from fedgate.client.render import (
    compare_table,
    datasets_table,
    entries_table,
    match_table,
    noisy_note,
    row_limit_line,
    rows_table,
    sum_table,
)
from fedgate.core.row_limit import RowLimit, row_limit_json
from fedgate.core.errors import FedgateError, InvalidInput, NotFound
from fedgate.core.officer_seal import OpenKey
from fedgate.core.identity import Identity, Role, identity_from_pem
from fedgate.server.signing_key import ed25519_key, load_or_create, read_vkey, vkey_path
from fedgate.server.witness_key import read_witness_keys
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.server.tls import TlsFiles
from fedgate.server.trace_store import list_traces, load_trace, render_tree
from fedgate.query import protocols

# The servers, the policy engine, the demo and the store reader are imported inside the commands
# that use them: they bring casbin, SQLAlchemy and numpy (about 0.5 s), which `fedgate --help` and
# the client commands never need.

app = typer.Typer(help="fedgate: privacy-preserving federated data-sharing gateway (可用不可见).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
certs_app = typer.Typer(help="Private CA and party certificates.", no_args_is_help=True)
gateway_app = typer.Typer(help="Run the gateway.", no_args_is_help=True)
adapter_app = typer.Typer(help="Run a department adapter.", no_args_is_help=True)
app.add_typer(certs_app, name="certs")
app.add_typer(gateway_app, name="gateway")
app.add_typer(adapter_app, name="adapter")
query_app = typer.Typer(help="Cross-department queries (supervisors).", no_args_is_help=True)
app.add_typer(query_app, name="query")
trace_app = typer.Typer(help="Show traces from the local span stores.", no_args_is_help=True)
app.add_typer(trace_app, name="trace")
audit_app = typer.Typer(help="Read, prove and verify the audit log (security officers).", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

GatewayOpt = Annotated[str, typer.Option("--gateway", envvar="FEDGATE_GATEWAY", help="Gateway host:port.")]
CaOpt = Annotated[Path, typer.Option("--ca", envvar="FEDGATE_CA", help="CA certificate (PEM).")]
CertOpt = Annotated[Path, typer.Option("--cert", envvar="FEDGATE_CERT", help="Your certificate (PEM).")]
KeyOpt = Annotated[Path, typer.Option("--key", envvar="FEDGATE_KEY", help="Your private key (PEM).")]
ReadyOpt = Annotated[Path | None, typer.Option("--ready-file", help="Write {pid, port} here as JSON once serving.")]


# A held request being collected: its query id and nonces for the gateway, its command line to save again.
_collecting: contextvars.ContextVar[HeldLocally | None] = contextvars.ContextVar("fedgate_collecting", default=None)
HELD_EXIT = 3  # the request is logged and waits for a department's approval


def _run(fn: Callable[[], T]) -> T:
    """The one place a FedgateError becomes a message and exit code 1 (3: held for approval)."""
    try:
        return fn()
    except HeldForApproval as exc:
        replaying = _collecting.get()
        argv = replaying.argv if replaying else tuple(sys.argv[1:])
        saved = HeldLocally(exc.query_id, argv, exc.nonces or (replaying.nonces if replaying else "")).save()
        err_console.print(f"[bold yellow]held:[/] {escape(exc.details)}", highlight=False, soft_wrap=True)
        err_console.print(f"(the request is kept in {saved} to send again; wait for the decision with "
                          f"`fedgate query collect {exc.query_id} --wait 600`)", highlight=False, soft_wrap=True)
        raise typer.Exit(HELD_EXIT) from None
    except FedgateError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.diagnostics())}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@certs_app.command("init")
def certs_init(
    directory: Annotated[Path, typer.Argument(help="Directory for ca.pem and the party certificates.")],
    dept: Annotated[list[str], typer.Option("--dept", help="Department code (repeatable).")] = [],
    supervisor: Annotated[list[str], typer.Option("--supervisor", help="AGENCY/USER (repeatable).")] = [],
    officer: Annotated[list[str], typer.Option("--officer", help="AGENCY/USER (repeatable).")] = [],
    host: Annotated[list[str], typer.Option("--host", help="Extra DNS name or IP for server certificates.")] = [],
    force: Annotated[bool, typer.Option(help="Re-issue certificates that already exist (the CA is kept).")] = False,
) -> None:
    """Create a private CA and certificates for the gateway, departments, supervisors and officers."""
    def go() -> list[pki.IssuedFile]:
        try:
            identities = ([Identity.department(d) for d in dept]
                          + [Identity.person(Role.SUPERVISOR, s) for s in supervisor]
                          + [Identity.person(Role.OFFICER, o) for o in officer])
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        return pki.init_dir(directory, identities, hosts=[*pki.DEFAULT_HOSTS, *host], force=force)

    table = RichTable("identity", "certificate", "status")
    for item in _run(go):
        table.add_row(item.identity, str(item.path), "created" if item.created else "kept")
    console.print(table)


def _parse_identity(text: str) -> Identity:
    """An identity as `certs request` takes it: a SPIFFE ID, `gateway`, `dept/CODE` or `ROLE/AGENCY/USER`."""
    try:
        if text.startswith("spiffe://"):
            return Identity.parse(text)
        return Identity.parse(f"spiffe://fedgate/{text}")
    except ValueError as exc:
        raise typer.BadParameter(f"{exc} (e.g. dept/hrss, supervisor/dcb/alice, officer/audit/bob, gateway)") from None


def _status_line(status: pki.CertificateStatus) -> str:
    left = (f"[bold red]expired {-status.days_left} days ago[/]" if status.expired
            else f"[yellow]{status.days_left} days left: renew it (`fedgate certs renew`)[/]" if status.renew_soon
            else f"{status.days_left} days left")
    return f"valid until {status.not_after:%Y-%m-%d %H:%M} UTC, {left}"


@certs_app.command("request")
def certs_request(
    identity: Annotated[str, typer.Argument(help="Whose certificate: dept/CODE, supervisor/AGENCY/USER, "
                                                 "officer/AGENCY/USER or gateway.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the new key (stays here) and the .csr.")],
    hosts: Annotated[str, typer.Option("--hosts", help="Extra DNS names or IPs, comma-separated "
                                                      "(servers: the names peers dial).")] = "",
) -> None:
    """Make your own private key and a signing request (CSR) for the CA operator; the key never leaves."""
    who = _parse_identity(identity)
    extra = [h.strip() for h in hosts.split(",") if h.strip()]
    made = _run(lambda: pki.write_request(out, who, [*pki.DEFAULT_HOSTS, *extra]))
    console.print(f"private key: {made.key} (mode 0600; keep it on this machine, never send it)", highlight=False)
    console.print(f"request:     {made.csr}", highlight=False)
    console.print(f"Send {made.csr.name} to the CA operator, who runs `fedgate certs sign {made.csr.name} --ca-dir DIR` "
                  f"and sends back {who.file_stem}.pem (and ca.pem); put both beside the key.", highlight=False)


@certs_app.command("sign")
def certs_sign(
    csr: Annotated[Path, typer.Argument(help="The .csr the requester sent.")],
    ca_dir: Annotated[Path, typer.Option("--ca-dir", help="The CA's directory (ca.pem, ca.key, index.json).")],
    days: Annotated[int, typer.Option("--days", help="Validity in days.")] = pki.DEFAULT_DAYS,
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the certificate "
                                                          "(default: <stem>.pem beside the .csr).")] = None,
) -> None:
    """Check a signing request and issue its certificate (CA operator); recorded in the CA's index."""
    def go() -> tuple[pki.SignedCertificate, Path]:
        try:
            data = csr.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"{csr}: cannot read the request: {exc.strerror}") from None
        signed = pki.sign_request(ca_dir, data, days)
        target = out or csr.with_name(f"{signed.identity.file_stem}.pem")
        target.write_bytes(signed.pem)
        return signed, target

    signed, target = _run(go)
    console.print(f"issued {signed.identity.spiffe_id}: serial {signed.serial:x}, valid until "
                  f"{signed.not_after:%Y-%m-%d} UTC", highlight=False)
    console.print(f"certificate: {target}; send it with {ca_dir / 'ca.pem'} back to the requester", highlight=False)


@certs_app.command("renew")
def certs_renew(
    cert: Annotated[Path, typer.Option("--cert", help="The certificate in use.")],
    key: Annotated[Path, typer.Option("--key", help="Its private key (only checked to be the certificate's).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the new key and .csr (not the one in use).")],
) -> None:
    """A fresh key and signing request for the same identity and hosts as the certificate in use."""
    def go() -> tuple[pki.RequestFiles, pki.CertificateStatus]:
        return pki.renewal_request(cert, key, out)

    made, status = _run(go)
    if not status.renew_soon:
        err_console.print(f"[yellow]note:[/] the certificate still has {status.days_left} days left; renewing now "
                          "is fine, but usually waits until fewer than "
                          f"{pki.RENEW_WITHIN_DAYS} remain", highlight=False)
    console.print(f"new private key: {made.key} (mode 0600; never send it)", highlight=False)
    console.print(f"request:         {made.csr}", highlight=False)
    console.print("Send the .csr to the CA operator (`fedgate certs sign`). When the new .pem comes back, copy the "
                  f"new key over {key} and the new certificate over {cert}: running servers serve it from their "
                  "next connection on, without a restart.", highlight=False)


@certs_app.command("revoke")
def certs_revoke(
    serial: Annotated[str | None, typer.Argument(help="Serial number (hex, as `certs status` shows it).")] = None,
    ca_dir: Annotated[Path, typer.Option("--ca-dir", help="The CA's directory.")] = Path("."),
    cert: Annotated[Path | None, typer.Option("--cert", help="Revoke this certificate instead of a serial.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="keyCompromise, superseded, cessationOfOperation, "
                                                        "affiliationChanged, ... (RFC 5280).")] = "unspecified",
) -> None:
    """Revoke a certificate and re-write the CA's crl.pem (CA operator); servers with tls.crl reload it."""
    def go() -> pki.IndexEntry:
        if (serial is None) == (cert is None):
            raise InvalidInput("give either a SERIAL or --cert FILE")
        pem = None
        if cert is not None:
            try:
                pem = cert.read_bytes()
            except OSError as exc:
                raise InvalidInput(f"{cert}: cannot read: {exc.strerror}") from None
            number = pki.certificate_status(pem).serial
        else:
            try:
                number = int(str(serial).removeprefix("0x").replace(":", ""), 16)
            except ValueError:
                raise InvalidInput(f"{serial!r} is not a hexadecimal serial number") from None
        return pki.revoke(ca_dir, number, reason, pem)

    entry = _run(go)
    who = f" ({entry.identity})" if entry.identity else ""
    console.print(f"revoked serial {entry.serial:x}{who} on {entry.revoked_at:%Y-%m-%d %H:%M} UTC "
                  f"({entry.reason}); wrote {ca_dir / pki.CRL_FILE}", highlight=False)
    console.print("Copy crl.pem to every server's tls.crl path: they re-read it within a second or so.",
                  highlight=False)


@certs_app.command("crl")
def certs_crl(
    ca_dir: Annotated[Path, typer.Option("--ca-dir", help="The CA's directory.")],
    days: Annotated[int, typer.Option("--days", help="Days until its next update.")] = pki.CRL_DAYS,
) -> None:
    """Re-issue crl.pem from the CA's index (do it before the current one's next update)."""
    path = _run(lambda: pki.write_crl(ca_dir, days))
    console.print(f"wrote {path}, valid for {days} days", highlight=False)


@certs_app.command("status")
def certs_status(
    files: Annotated[list[Path] | None, typer.Argument(help="Certificates (PEM) to show.")] = None,
    ca_dir: Annotated[Path | None, typer.Option("--ca-dir", help="Show every certificate in this directory, "
                                                                "checked against its crl.pem.")] = None,
    crl: Annotated[Path | None, typer.Option("--crl", help="A CRL to check against (signed by --ca).")] = None,
    ca: Annotated[Path | None, typer.Option("--ca", help="The CA certificate that signs --crl.")] = None,
) -> None:
    """Each certificate's identity, serial, expiry and whether it is revoked; warns under 30 days left."""
    def go() -> list[tuple[Path, pki.CertificateStatus]]:
        paths = list(files or [])
        crl_path, ca_path = crl, ca
        if ca_dir is not None:
            paths += sorted(p for p in ca_dir.glob("*.pem") if p.name not in ("ca.pem", pki.CRL_FILE))
            crl_path = crl_path or (ca_dir / pki.CRL_FILE if (ca_dir / pki.CRL_FILE).exists() else None)
            ca_path = ca_path or ca_dir / "ca.pem"
        revocations = None
        if crl_path is not None:
            if ca_path is None:
                raise InvalidInput("--crl needs --ca, the CA certificate that signed it")
            try:
                revocations = pki.load_crl(crl_path.read_bytes(), ca_path.read_bytes())
            except OSError as exc:
                raise InvalidInput(f"cannot read {exc.filename}: {exc.strerror}") from None
            except ValueError as exc:
                raise InvalidInput(f"{crl_path}: {exc}") from None
        if not paths:
            raise InvalidInput("name certificate files, or --ca-dir")
        out = []
        for path in paths:
            try:
                out.append((path, pki.certificate_status(path.read_bytes(), revocations)))
            except OSError as exc:
                raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from None
            except InvalidInput as exc:
                raise InvalidInput(f"{path}: {exc}") from None
        return out

    rows = _run(go)
    table = RichTable("certificate", "identity", "serial", "not after (UTC)", "days left", "revoked")
    for path, st in rows:
        left = (f"[bold red]{st.days_left}[/]" if st.expired else f"[yellow]{st.days_left}[/]" if st.renew_soon
                else str(st.days_left))
        revoked = f"[bold red]yes, {st.revoked_at:%Y-%m-%d}[/]" if st.revoked_at else "no"
        table.add_row(path.name, st.identity.spiffe_id if st.identity else "-", st.serial_hex,
                      f"{st.not_after:%Y-%m-%d %H:%M}", left, revoked)
    console.print(table)
    for path, st in rows:
        if st.renew_soon and not st.revoked:
            err_console.print(f"[yellow]warning:[/] {path.name}: {_status_line(st)}", highlight=False)


@gateway_app.command("serve")
def gateway_serve(config: Annotated[Path, typer.Option("--config", help="gateway.toml")],
                  ready_file: ReadyOpt = None) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    _serve("gateway", config, ready_file)


@gateway_app.command("keygen")
def gateway_keygen(
    out: Annotated[Path, typer.Argument(help="Directory for log-signing.key and log-signing.vkey.")],
    origin: Annotated[str, typer.Option("--origin", help="The gateway's log_origin (names the log).")]
    = "fedgate.local/audit",
) -> None:
    """Create the gateway's log-signing key ahead of its first start (to share between replicas, or mount read-only).

    Point `signing_key` in gateway.toml at log-signing.key (the .vkey beside it); copy log-signing.vkey to every
    department (`gateway_log_key`) and security officer.
    """
    vkey = _run(lambda: _new_signing_key(out / "log-signing.key", origin, "a log-signing key"))
    console.print(f"log-signing key {out / 'log-signing.key'} (0600) for log {origin!r}; verifier key {vkey}",
                  highlight=False)


@adapter_app.command("serve")
def adapter_serve(config: Annotated[Path, typer.Option("--config", help="The department's adapter TOML.")],
                  ready_file: ReadyOpt = None) -> None:
    """Run a department adapter: check its sources, serve, register with the gateway."""
    _serve("adapter", config, ready_file)


@app.command("health")
def health_cmd(
    address: Annotated[str, typer.Argument(envvar="FEDGATE_HEALTH_ADDRESS",
                                           help="A server's plaintext health port (health_listen).")] = "127.0.0.1:8081",
    service: Annotated[str, typer.Option("--service", help="A service name; default: the whole server.")] = "",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the answer.")] = 3.0,
) -> None:
    """Ask a gateway's or adapter's health-only port; exit 0 when SERVING, 1 otherwise (a container health check)."""
    from fedgate.client.health import health_status

    status = _run(lambda: asyncio.run(health_status(address, service, timeout)))
    console.print(status, highlight=False)
    if status != "SERVING":
        raise typer.Exit(1)


def _serve(party: str, config: Path, ready_file: Path | None) -> None:
    """Load `party`'s config and serve until SIGINT or SIGTERM."""
    _setup_logging()
    # Each server is imported only when it is to run (see the note at the top).
    if party == "gateway":
        from fedgate.gateway.config import GatewayConfig
        from fedgate.gateway.server import serve as serve_gateway
        _run(lambda: asyncio.run(serve_gateway(GatewayConfig.load(config), ready_file)))
    else:
        from fedgate.adapters.config import AdapterConfig
        from fedgate.adapters.server import serve as serve_adapter
        _run(lambda: asyncio.run(serve_adapter(AdapterConfig.load(config), ready_file)))


def datasets_json(datasets: list[RegisteredDataset]) -> list[dict[str, Any]]:
    return [
        {"department": i.decl.department, "department_display_name": i.department_display_name,
         "name": i.decl.name, "description": i.decl.description, "row_count": i.decl.row_count,
         "registered_at": i.registered_at.isoformat(),
         # What the gateway last heard from the adapter; row_count is the count at registration.
         "liveness": i.liveness, "last_contact": i.last_contact.isoformat() if i.last_contact else None,
         "live_row_count": i.live_row_count,
         "counted_at": i.counted_at.isoformat() if i.counted_at else None,
         "fields": [{"name": f.name, "type": f.type.value, "level": f.level,
                     "key": f.key.value if f.key else None} for f in i.decl.fields]}
        for i in datasets
    ]


@app.command("datasets")
def datasets_cmd(
    gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
    department: Annotated[str | None, typer.Option(help="Only this department.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the datasets your certificate may see, with each adapter's liveness and live row count."""
    async def go() -> list[RegisteredDataset]:
        async with GatewayClient(gateway, TlsFiles(ca, cert, key)) as client:
            return await client.list_datasets(department)

    found = _run(lambda: asyncio.run(go()))
    if as_json:
        print(json.dumps(datasets_json(found), ensure_ascii=False, indent=2))
    else:
        console.print(datasets_table(found))


@app.command("demo")
def demo_cmd(
    workdir: Annotated[Path, typer.Option(help="Where data, certificates, configs and logs go.")] = Path(
        "fedgate-demo"),
    rows: Annotated[int, typer.Option(min=200, help="Rows per dataset.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the data generator.")] = 20261129,
    keep_running: Annotated[bool, typer.Option(help="Keep the servers up until Ctrl-C.")] = False,
) -> None:
    """Generate data and certificates, start a gateway and every department adapter, show the registry."""
    from fedgate.demo.runner import run_demo  # it starts every server: imported only for `fedgate demo`

    result = _run(lambda: run_demo(workdir, rows, seed, say=lambda m: console.print(f"• {m}", soft_wrap=True),
                                   show=console.print,
                                   keep_running=keep_running))
    # counts, matches, two disclosures (one held for approval, then collected: one logged query), one filtered
    # count, a sum and a comparison
    queries = len(result.counts) + len(result.scenarios) + 3 + len(result.checks)
    console.print(f"• {len(result.datasets)} datasets from {len(result.departments)} departments, "
                  f"{queries} logged queries; all servers stopped cleanly")


def _client(gateway: str, ca: Path, cert: Path, key: Path) -> GatewayClient:
    held = _collecting.get()
    return GatewayClient(gateway, TlsFiles(ca, cert, key),
                         collect=Collect(held.query_id, held.nonces) if held else None)


def _print_entries(items: list[IndexedEntry], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"index": i, **e.to_dict()} for i, e in items], ensure_ascii=False, indent=2))
    else:
        console.print(entries_table(items))


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@audit_app.command("tail")
def audit_tail(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
               n: Annotated[int, typer.Option("-n", min=1, max=10_000, help="How many entries.")] = 20,
               as_json: JsonOpt = False) -> None:
    """The newest audit entries, oldest of them first."""
    async def go() -> list[IndexedEntry]:
        async with _client(gateway, ca, cert, key) as client:
            return list(reversed(await client.search(limit=n)))

    _print_entries(_run(lambda: asyncio.run(go())), as_json)


@audit_app.command("search")
def audit_search(
    gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
    subject: Annotated[str, typer.Option(help="Caller as the audit table prints it (supervisor/dcb/alice) or in "
                                              "full (spiffe://fedgate/supervisor/dcb/alice).")] = "",
    dataset: Annotated[str, typer.Option(help="Qualified dataset, e.g. hrss.subsidies.")] = "",
    case: Annotated[str, typer.Option("--case", help="Case number (督查事项编号).")] = "",
    decision: Annotated[str, typer.Option(help="allow, deny or error.")] = "",
    action: Annotated[str, typer.Option(help="e.g. query.match (or just match), registry.register, "
                                             "audit.read.")] = "",
    since: Annotated[str, typer.Option(help="Inclusive: 2026-11-29, 2026-11-29T08:00:00+08:00, today, "
                                            "yesterday, or an age such as 30m, 24h, 7d (UTC).")] = "",
    until: Annotated[str, typer.Option(help="Exclusive; the same forms as --since.")] = "",
    agency: Annotated[str, typer.Option(help="Only supervisors' and officers' requests of this agency, e.g. dcb.")]
    = "",
    before: Annotated[int, typer.Option(min=0, help="Only entries below this index (the next page of a "
                                                    "search: the last index shown).")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    alerts: Annotated[bool, typer.Option("--alerts", help="Only probing alerts the gateway raised (action "
                                                          "audit.alert): who, which pattern, which entries.")] = False,
    suppressed: Annotated[bool, typer.Option("--suppressed", help="Only answers suppressed as too small (\"fewer "
                                                                  "than k\").")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Entries matching every given criterion, newest first.

    Every criterion is checked first: one that cannot match anything (a mistyped
    action, time or subject, a dataset no department registered) is an error.
    """
    async def go() -> list[IndexedEntry]:
        wanted = criteria.checked(subject, dataset, case, decision, action, since, until, alerts=alerts,
                                  agency=agency)
        async with _client(gateway, ca, cert, key) as client:
            found = await client.search(**vars(wanted), before=before, suppressed=suppressed, limit=limit)
            if not found and wanted.dataset:
                # Entries may name a dataset that is gone (or never was: refused requests are logged too),
                # so only an empty answer for a name nobody registers is a mistake.
                registered = sorted(d.decl.qualified_name for d in await client.list_datasets())
                if wanted.dataset not in registered:
                    raise NotFound(f"no dataset '{wanted.dataset}' is registered and no entry names it "
                                   f"(registered: {', '.join(registered) or 'none'})")
            return found

    _print_entries(_run(lambda: asyncio.run(go())), as_json)


VkeyOpt = Annotated[Path, typer.Option("--vkey", envvar="FEDGATE_LOG_VKEY",
                                       help="The gateway's pinned log verifier key (log-signing.vkey).")]


@audit_app.command("proof")
def audit_proof(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt, vkey: VkeyOpt,
                index: Annotated[int, typer.Argument(min=0, help="Entry index.")],
                size: Annotated[int, typer.Option(min=0, help="Tree size (0: latest).")] = 0,
                as_json: JsonOpt = False) -> None:
    """Fetch an entry's inclusion proof and check it against the signed checkpoint."""
    async def go() -> Any:
        async with _client(gateway, ca, cert, key) as client:
            proof = await client.inclusion_proof(index, size)
        return proof, check_inclusion(proof.index, proof.body, list(proof.hashes), proof.checkpoint, read_vkey(vkey))

    proof, cp = _run(lambda: asyncio.run(go()))
    out = {"index": proof.index, "size": cp.size, "leaf_hash": proof.leaf_hash.hex(),
           "proof": [h.hex() for h in proof.hashes], "root": cp.root_hash.hex(), "verified": True,
           "entry": AuditEntry.from_canonical(proof.body).to_dict()}
    if as_json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    console.print(entries_table([(proof.index, AuditEntry.from_canonical(proof.body))]))
    console.print(f"leaf hash {out['leaf_hash']}\nproof ({len(out['proof'])} hashes):")
    for h in out["proof"]:
        console.print(f"  {h}")
    console.print(f"[green]OK:[/] entry {proof.index} is included in the signed tree of size {cp.size}, "
                  f"root {out['root']}")


@audit_app.command("check-bundle")
def audit_check_bundle(bundle: Annotated[Path, typer.Argument(help="A proof bundle the console downloaded.")],
                       vkey: VkeyOpt, as_json: JsonOpt = False) -> None:
    """Check an entry's proof bundle offline, against your pinned log key (never the key inside the bundle).

    Exit 0 when the entry is in the signed tree; exit 1 with what failed otherwise.
    """
    from fedgate.console.audit_views import check_entry, read_bundle

    def go() -> Any:
        try:
            data = bundle.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {bundle}: {exc.strerror}") from None
        return check_entry(read_bundle(data), read_vkey(vkey))

    try:
        proven = go()
    except FedgateError as exc:
        if as_json:
            print(json.dumps({"ok": False, "error": exc.diagnostics()}, ensure_ascii=False))
        else:
            err_console.print(f"[bold red]FAIL:[/] {escape(exc.diagnostics())}", soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"ok": True, "index": proven.proof.index, "size": proven.checkpoint.size,
                          "root": proven.checkpoint.root_hash.hex(), "entry": proven.entry.to_dict()},
                         ensure_ascii=False, indent=2))
        return
    console.print(entries_table([(proven.proof.index, proven.entry)]))
    console.print(f"[green]OK:[/] entry {proven.proof.index} is included in the signed tree of size "
                  f"{proven.checkpoint.size}, root {proven.checkpoint.root_hash.hex()}")


SealKeyOpt = Annotated[Path, typer.Option("--seal-key", envvar="FEDGATE_OFFICER_SEAL_KEY",
                                          help="The security officers' private seal key (officer-seal.key).")]


@audit_app.command("open")
def audit_open(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt, vkey: VkeyOpt, seal_key: SealKeyOpt,
               index: Annotated[int, typer.Argument(min=0, help="Entry index.")],
               as_json: JsonOpt = False) -> None:
    """Open an entry's sealed filters with the officers' key, once its inclusion in the signed log is proven.

    The seal key is `--seal-key` (`--key` is your TLS key, as in every command).
    """
    async def go() -> Any:
        opener = OpenKey.load(seal_key)
        async with _client(gateway, ca, cert, key) as client:
            return await client.open_entry(index, read_vkey(vkey), opener)

    opened = _run(lambda: asyncio.run(go()))
    if as_json:
        print(json.dumps({"index": opened.index, "size": opened.tree_size, "verified": True,
                          "entry": opened.entry.to_dict(),
                          "filters": [{"dataset": f.dataset, "role": f.role, "redacted": f.redacted,
                                       "filter": f.text} for f in opened.filters]}, ensure_ascii=False, indent=2))
        return
    console.print(entries_table([(opened.index, opened.entry)]))
    console.print(f"[green]OK:[/] entry {opened.index} is included in the signed tree of size {opened.tree_size}; "
                  "its sealed filters open and match their logged digests:")
    for f in opened.filters:
        where = f"{f.role} {f.dataset}" if f.role else f.dataset
        console.print(f"  {escape(where)}: {escape(f.redacted)}  →  {escape(f.text)}", highlight=False,
                      soft_wrap=True)


@audit_app.command("verify")
def audit_verify(
    vkey: VkeyOpt,
    gateway: Annotated[str, typer.Option("--gateway", envvar="FEDGATE_GATEWAY", help="Gateway host:port.")] = "",
    ca: Annotated[Path | None, typer.Option("--ca", envvar="FEDGATE_CA")] = None,
    cert: Annotated[Path | None, typer.Option("--cert", envvar="FEDGATE_CERT")] = None,
    key: Annotated[Path | None, typer.Option("--key", envvar="FEDGATE_KEY")] = None,
    db: Annotated[str, typer.Option(help="Read the store directly (SQLAlchemy URL or SQLite path) "
                                         "instead of asking a gateway.")] = "",
    state: Annotated[Path | None, typer.Option(help="Where the last verified checkpoint and leaf hashes are kept "
                                                    "(default: ~/.local/state/fedgate/audit/<gateway or db>).")] = None,
    no_state: Annotated[bool, typer.Option("--no-state", help="Do not read or update the trusted state.")] = False,
    witness_keys: Annotated[Path | None, typer.Option(
        "--witness-keys", envvar="FEDGATE_WITNESS_KEYS",
        help="Pinned department witness keys, one per line (each adapter's data_dir/witness.vkey).")] = None,
    witnesses: Annotated[int | None, typer.Option(
        "--witnesses", min=0, help="How many pinned witnesses must have cosigned a checkpoint covering the "
                                   "newest query entry (default: 1 with --witness-keys, else 0).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay the whole log against its signed checkpoints and the last verified state.

    Exit 0 when the log verifies (the trusted state then moves forward); exit 1
    naming the first bad index when an entry was altered, dropped, reordered or
    truncated, or a checkpoint was signed with another key.
    """
    from fedgate.cli.audit_snapshot import verify_store  # SQLAlchemy and the gateway's store schema

    where = db or gateway
    if not where:
        raise typer.BadParameter("give --gateway (with --ca/--cert/--key) or --db")
    state_dir = None if no_state else (state or Path.home() / ".local/state/fedgate/audit"
                                       / "".join(c if c.isalnum() else "_" for c in where))

    if witnesses and witness_keys is None:
        raise typer.BadParameter("--witnesses needs --witness-keys (the departments' witness.vkey lines)")
    quorum = witnesses if witnesses is not None else (1 if witness_keys else 0)

    def go() -> Any:
        pinned = read_vkey(vkey)
        pinned_witnesses = read_witness_keys(witness_keys) if witness_keys else []
        trusted = TrustedState.load(state_dir) if state_dir else None
        if db:
            report = verify_store(db, pinned, trusted, pinned_witnesses, quorum)
        else:
            if not (ca and cert and key):
                raise typer.BadParameter("--gateway needs --ca, --cert and --key")

            async def remote() -> Any:
                async with _client(gateway, ca, cert, key) as client:
                    return await client.verify_log(pinned, trusted, pinned_witnesses, quorum)
            report = asyncio.run(remote())
        if state_dir:
            TrustedState(report.latest_note, report.leaf_hashes).save(state_dir)
        return report

    try:
        report = go()
    except FedgateError as exc:
        if as_json:
            print(json.dumps({"ok": False, "bad_index": getattr(exc, "index", None), "error": str(exc)},
                             ensure_ascii=False))
        else:
            err_console.print(f"[bold red]FAIL:[/] {escape(exc.diagnostics())}", soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"ok": True, "size": report.size, "root": report.root.hex(),
                          "checkpoints_checked": report.checkpoints_checked,
                          "witnessed_by": list(report.witnessed_by)}))
    else:
        console.print(f"[green]OK:[/] {report.size} entries verified against {report.checkpoints_checked} "
                      f"signed checkpoints; root {report.root.hex()}")
        if report.witnessed_by:
            console.print(f"witnessed up to the newest query by: {escape(', '.join(report.witnessed_by))}")


PurposeOpt = Annotated[str, typer.Option("--purpose", help="Why you ask (required, audited).")]
CaseOpt = Annotated[str, typer.Option("--case", help="Case number, 督查事项编号 (required, audited).")]
FilterOpt = Annotated[str, typer.Option("--filter",
                                        help="e.g. \"status in ('吊销', '注销') and amount_fen >= 100000\"")]
LeftSideArg = Annotated[str, typer.Argument(help="department.dataset.key_field, e.g. hrss.subsidies.uscc")]
MODE_HELP = f"Match protocol, one of {', '.join(protocols.names())}: keyed is fast, ecdh shares no key at all."
ModeOpt = Annotated[str, typer.Option(help=MODE_HELP)]
LeftFilterOpt = Annotated[str, typer.Option("--left-filter", help="Filter on the left dataset.")]
RightFilterOpt = Annotated[str, typer.Option("--right-filter", help="Filter on the right dataset.")]


@query_app.command("count")
def query_count(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
                dataset: Annotated[str, typer.Argument(help="department.dataset, e.g. hrss.subsidies")],
                purpose: PurposeOpt, case: CaseOpt, filter: FilterOpt = "", as_json: JsonOpt = False) -> None:
    """Live row count of one dataset, asked of its department with a logged, signed ticket."""
    async def go() -> RowCount:
        async with _client(gateway, ca, cert, key) as client:
            return await client.count_rows(dataset, purpose, case, filter)

    rows, index = _run(lambda: asyncio.run(go()))
    if as_json:
        # Below its threshold a count is only "fewer than k": rows is null and fewer_than says k.
        below = rows.k if isinstance(rows, FewerThan) else None
        # A noisy count says so, with its ε (null: exact).
        epsilon = rows.epsilon if isinstance(rows, NoisyCount) else None
        within = rows.within() if isinstance(rows, NoisyCount) else None
        print(json.dumps({"dataset": dataset, "rows": None if below else rows, "fewer_than": below,
                          "epsilon": epsilon, "within_95": within, "audit_index": index}))
    elif isinstance(rows, FewerThan):
        console.print(f"{dataset}: {rows} rows (fewer than {rows.k}: suppressed by safeguard min_aggregate; "
                      f"audit entry #{index})")
    elif isinstance(rows, NoisyCount):
        console.print(f"{dataset}: about {int(rows):,} rows ({noisy_note(rows.epsilon, rows.within())}; "
                      f"differential privacy, ε charged to your agency's budget; audit entry #{index})")
    else:
        console.print(f"{dataset}: {rows:,} rows (audit entry #{index})")


@query_app.command("disclose")
def query_disclose(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
                   dataset: Annotated[str, typer.Argument(help="department.dataset")],
                   fields: Annotated[list[str], typer.Option("--field", help="Field to see (repeatable).")],
                   purpose: PurposeOpt, case: CaseOpt, filter: FilterOpt = "",
                   limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20, as_json: JsonOpt = False) -> None:
    """Fields of the filtered rows, plaintext or masked by the department as policy allows."""
    async def go() -> Disclosure:
        async with _client(gateway, ca, cert, key) as client:
            return await client.disclose(dataset, fields, purpose, case, filter, limit)

    result = _run(lambda: asyncio.run(go()))
    if as_json:
        print(json.dumps({"fields": [vars(f) for f in result.fields], "rows": result.rows,
                          "matched_rows": result.matched_rows, "audit_index": result.audit_index,
                          **row_limit_json(result.row_limit)}, ensure_ascii=False, indent=2))
        return
    table = RichTable(*(f"{f.name}\n{f.level} {f.form}" for f in result.fields),
                      title=f"{dataset}: {len(result.rows)} of {result.matched_rows:,} matching rows "
                            f"(audit entry #{result.audit_index})")
    for row in result.rows:
        table.add_row(*(escape(v) if v is not None else "[dim]—[/]" for v in row))
    console.print(table)
    _print_shortened(result.row_limit, "matching rows")


def _noisy_json(epsilon: float, within: int) -> dict[str, float | int]:
    """A noisy answer's ε and its 95 % error bound, for --json (nothing for an exact one)."""
    return {"epsilon": epsilon, "within_95": within} if epsilon > 0 else {}


def _print_shortened(limit: RowLimit | None, noun: str) -> None:
    if (line := row_limit_line(limit, noun)) is not None:
        console.print(line, soft_wrap=True, highlight=False)


def _side(spec: str, filter: str) -> Side:
    dataset, sep, key = spec.rpartition(".")
    if not sep or "." not in dataset:
        raise typer.BadParameter("write a side as department.dataset.key_field, e.g. hrss.subsidies.uscc "
                                 f"(got {spec!r})")
    return Side(dataset, key, filter)


@query_app.command("match")
def query_match(
    gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt, left: LeftSideArg,
    right: Annotated[str, typer.Argument(help="department.dataset.key_field, e.g. samr.companies.uscc")],
    purpose: PurposeOpt, case: CaseOpt,
    mode: ModeOpt = protocols.DEFAULT, left_filter: LeftFilterOpt = "", right_filter: RightFilterOpt = "",
    disclose: Annotated[list[str], typer.Option("--disclose", help="Field of matched LEFT rows to see "
                                                                  "(repeatable).")] = [],
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Which left rows have a key that also appears on the right: the count, or masked matched rows."""
    left_side, right_side = _side(left, left_filter), _side(right, right_filter)

    async def go(progress: Progress | None) -> MatchResult:
        async with _client(gateway, ca, cert, key) as client:
            return await client.match(left=left_side, right=right_side, purpose=purpose, case_number=case, mode=mode,
                                      disclose=disclose, limit=limit, on_report=_progress_reporter(progress))

    result = _streamed(go, as_json)
    if as_json:
        print(json.dumps({
            "left": vars(result.left), "right": vars(result.right), "cardinality": result.cardinality,
            "fewer_than": result.fewer_than or None, **_noisy_json(result.epsilon, result.within()),
            "distinct_matches": result.distinct_matches, "fields": [vars(f) for f in result.fields],
            "rows": result.rows, "audit_index": result.audit_index, **row_limit_json(result.row_limit)},
            ensure_ascii=False, indent=2))
        return
    console.print(match_table(result))
    if result.fields:
        console.print(rows_table(result.fields, result.rows, f"{len(result.rows):,} of {result.cardinality:,} "
                                                             f"matched rows of {result.left.dataset}"))
        _print_shortened(result.row_limit, "matched rows")


def _streamed(go: Callable[[Progress | None], Coroutine[Any, Any, T]], quiet: bool) -> T:
    """Run a streaming query: a spinner line per phase and department on stderr, unless `quiet` (for --json)."""
    if quiet:
        return _run(lambda: asyncio.run(go(None)))
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err_console, transient=True) as bar:
        return _run(lambda: asyncio.run(go(bar)))


def _progress_reporter(progress: Any) -> Callable[[ProgressReport], None] | None:
    """A progress callback that shows one spinner line per side (stage, rows done of the total, rate, time
    left) and one per later phase."""
    if progress is None:
        return None
    tasks: dict[str, Any] = {}
    board = ProgressBoard(time.monotonic())

    def report(event: ProgressReport) -> None:
        key, line = board.update(event, time.monotonic())
        if key not in tasks:
            tasks[key] = progress.add_task(line, total=None)
        progress.update(tasks[key], description=line)

    return report


KeyBitsOpt = Annotated[int, typer.Option("--key-bits", min=2048, max=8192,
                                         help="Size of the fresh Paillier key made for this query (kept in "
                                              "memory here; only its public half is sent).")]


@query_app.command("sum")
def query_sum(
    gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
    values: Annotated[str, typer.Argument(help="The value holder, department.dataset.key_field, "
                                               "e.g. hrss.subsidies.uscc")],
    other: Annotated[str, typer.Argument(help="The set to look keys up in, e.g. samr.companies.uscc")],
    purpose: PurposeOpt, case: CaseOpt,
    field: Annotated[list[str], typer.Option("--field", help="Integer field of VALUES to total (repeatable).")],
    mode: ModeOpt = protocols.DEFAULT,
    values_filter: Annotated[str, typer.Option("--values-filter", help="Filter on the value holder.")] = "",
    other_filter: Annotated[str, typer.Option("--other-filter", help="Filter on the other dataset.")] = "",
    key_bits: KeyBitsOpt = 2048,
    as_json: JsonOpt = False,
) -> None:
    """Totals of integer fields over the value holder's rows whose key is in the other set, decrypted here."""
    values_side, other_side = _side(values, values_filter), _side(other, other_filter)

    async def go(progress: Progress | None) -> SumResult:
        pair = await asyncio.to_thread(SupervisorKey.generate, key_bits)
        async with _client(gateway, ca, cert, key) as client:
            return await client.intersection_sum(values=values_side, value_fields=field, other=other_side,
                                                 purpose=purpose, case_number=case, mode=mode, key=pair,
                                                 on_report=_progress_reporter(progress))

    result = _streamed(go, as_json)
    if as_json:
        print(json.dumps({"values": vars(result.values), "other": vars(result.other),
                          "cardinality": result.cardinality, "fewer_than": result.fewer_than or None,
                          "distinct_matches": result.distinct_matches,
                          "totals": result.totals, "audit_index": result.audit_index,
                          **_noisy_json(result.epsilon, result.within()),
                          **({"totals_within_95": {f: result.within(f) for f in result.totals}}
                             if result.epsilon > 0 else {})},
                         ensure_ascii=False, indent=2))
        return
    console.print(sum_table(result))


@query_app.command("compare")
def query_compare(
    gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt, left: LeftSideArg,
    right: Annotated[str, typer.Argument(help="department.dataset.key_field, e.g. tax.insured_employees.uscc")],
    purpose: PurposeOpt, case: CaseOpt,
    left_value: Annotated[str, typer.Option("--left-value", help="Integer field x of LEFT.")],
    right_value: Annotated[str, typer.Option("--right-value", help="Integer field y of RIGHT.")],
    weights: Annotated[str, typer.Option(help="a:b, flag a·x > b·y; e.g. 5:6 for x > 1.2·y.")] = "1:1",
    mode: ModeOpt = protocols.DEFAULT, left_filter: LeftFilterOpt = "", right_filter: RightFilterOpt = "",
    disclose: Annotated[list[str], typer.Option("--disclose", help="Field of flagged LEFT rows to see "
                                                                  "(repeatable).")] = [],
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    key_bits: KeyBitsOpt = 2048,
    as_json: JsonOpt = False,
) -> None:
    """Flag the matched pairs where a·x > b·y (only the flags are learnt), and show flagged rows masked."""
    a, sep, b = weights.partition(":")
    if not sep or not a.strip().isdigit() or not b.strip().isdigit():
        raise typer.BadParameter(f"write weights as a:b with positive integers, e.g. 5:6 (got {weights!r})")
    pair_weights = (int(a), int(b))
    left_side, right_side = _side(left, left_filter), _side(right, right_filter)

    async def go(progress: Progress | None) -> CompareResult:
        pair = await asyncio.to_thread(SupervisorKey.generate, key_bits)
        async with _client(gateway, ca, cert, key) as client:
            return await client.compare(left=left_side, left_value=left_value, right=right_side,
                                        right_value=right_value, purpose=purpose, case_number=case,
                                        weights=pair_weights, mode=mode, disclose=disclose, limit=limit, key=pair,
                                        on_report=_progress_reporter(progress))

    result = _streamed(go, as_json)
    if as_json:
        print(json.dumps({"left": vars(result.left), "right": vars(result.right), "pairs": result.pairs,
                          "flagged_pairs": result.flagged, "fields": [vars(f) for f in result.fields],
                          "rows": result.rows, "audit_index": result.audit_index,
                          **row_limit_json(result.row_limit)}, ensure_ascii=False, indent=2))
        return
    console.print(compare_table(result, left_value, right_value, pair_weights))
    if result.fields:
        available = result.row_limit.available if result.row_limit else len(result.rows)
        console.print(rows_table(result.fields, result.rows, f"{len(result.rows):,} of {available:,} flagged rows "
                                                             f"of {result.left.dataset}"))
        _print_shortened(result.row_limit, "flagged rows")


policy_app = typer.Typer(help="Check and reload access policy.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(
    subject: Annotated[str, typer.Argument(help="e.g. supervisor/dcb/alice (a SPIFFE path) or a role")],
    domain: Annotated[str, typer.Argument(help="the subject's agency or department, e.g. dcb")],
    obj: Annotated[str, typer.Argument(metavar="OBJECT", help="dataset or field, e.g. hrss.pensions.name")],
    action: Annotated[str, typer.Argument(help="register, list, count, filter, match, sum, compare, "
                                               "disclose.plain, disclose.masked, audit.read, audit.read.own, policy.reload")],
    level: Annotated[str, typer.Option(help="The object's level (L1..L4), or * for none.")] = "*",
    policy_dir: Annotated[Path | None, typer.Option(help="Directory with model.conf, policy.csv and levels.toml "
                                                         "(default: the shipped policy).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide one request against the policy files, printing the decision and the rule."""
    from fedgate.gateway.policy import Policy  # casbin

    def go() -> Any:
        directory = policy_dir or policies_dir()
        return Policy.from_dir(directory, Levels.from_file(directory / "levels.toml")).decide(
            subject, domain, obj, action, level)

    decision = _run(go)
    if as_json:
        print(json.dumps({"allowed": decision.allowed, "rule": decision.rule}, ensure_ascii=False))
    else:
        verdict = "[green]allow[/]" if decision.allowed else "[red]deny[/]"
        console.print(f"{verdict}  {escape(decision.rule)}")
    raise typer.Exit(0 if decision.allowed else 2)


@policy_app.command("reload")
def policy_reload(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt) -> None:
    """Make the gateway load its policy files again (audited; the old rules stay if the new ones fail)."""
    async def go() -> PolicyVersion:
        async with _client(gateway, ca, cert, key) as client:
            return await client.reload_policy()

    rules, digest = _run(lambda: asyncio.run(go()))
    console.print(f"policy reloaded: {rules} rules, digest {digest[:16]}…")


budget_app = typer.Typer(help="Privacy budgets (differential privacy) spent per agency, dataset and period.",
                         no_args_is_help=True)
app.add_typer(budget_app, name="budget")


@budget_app.command("show")
def budget_show(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt, as_json: JsonOpt = False) -> None:
    """ε spent and left per agency, dataset and period: every agency's for officers, your agency's otherwise."""
    async def go() -> list[BudgetUse]:
        async with _client(gateway, ca, cert, key) as client:
            return await client.budgets()

    uses = _run(lambda: asyncio.run(go()))
    if as_json:
        print(json.dumps([u._asdict() for u in uses], ensure_ascii=False))
        return
    table = RichTable("agency", "dataset", "period", "ε spent", "ε budget", "ε left")
    for u in uses:
        table.add_row(u.agency, u.dataset, u.period, f"{u.spent:g}", f"{u.budget:g}", f"{max(u.budget - u.spent, 0):g}")
    console.print(table if uses else "no privacy budget spent yet")


StoreOpt = Annotated[list[Path], typer.Option("--store", help="A span store (spans.db), or a directory searched "
                                                              "for them; repeatable. Default: the data_dir of "
                                                              "every gateway/adapter .toml here and in "
                                                              "fedgate-demo, and spans.db files below here.")]
ConfigsOpt = Annotated[list[Path], typer.Option("--config", help="A gateway's or adapter's .toml: read the span "
                                                                 "store in its data_dir; repeatable.")]


def _span_stores(store: list[Path], config: list[Path]) -> list[Path]:
    """The span stores named (or found by default); NotFound says what was searched and what to pass."""
    found = span_stores.find(store, config)
    if not found.stores:
        raise NotFound(f"no span store found; looked at {'; '.join(found.searched)}. "
                       f"{span_stores.how_to_point(capital=True)}")
    return found.stores


@trace_app.command("show")
def trace_show(trace_id: Annotated[str, typer.Argument(help="32 hex characters (from an audit entry).")],
               store: StoreOpt = [], config: ConfigsOpt = []) -> None:
    """One trace as a tree, merged from the gateway's and the adapters' span stores."""
    def go() -> Any:
        stores = _span_stores(store, config)
        spans = load_trace(stores, trace_id.strip().lower())
        if not spans:
            raise NotFound(f"no spans of trace {trace_id.strip()[:64]} in {len(stores)} span store(s): "
                           f"{', '.join(map(str, stores))}. If the query ran elsewhere, "
                           f"{span_stores.how_to_point()}")
        return spans

    console.print(render_tree(_run(go)))


@trace_app.command("list")
def trace_list(store: StoreOpt = [], config: ConfigsOpt = [],
               limit: Annotated[int, typer.Option(min=1)] = 20) -> None:
    """The most recent traces in the span stores."""
    table = RichTable("trace id", "root span", "start (UTC)", "spans")
    for t in _run(lambda: list_traces(_span_stores(store, config), limit)):
        table.add_row(t.trace_id, t.root_name,
                      dt.datetime.fromtimestamp(t.start_ns / 1e9, dt.UTC).isoformat(timespec="seconds"),
                      str(t.span_count))
    console.print(table)


department_app = typer.Typer(help="A department's data office: every request for its data, subject reports.",
                             no_args_is_help=True)
app.add_typer(department_app, name="department")


@department_app.command("requests")
def department_requests(
    gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
    config: Annotated[Path | None, typer.Option("--config", help="The department's adapter TOML: its data_dir "
                                                                 "holds the disclosure log.")] = None,
    log: Annotated[Path | None, typer.Option("--log", help="The disclosure log itself (disclosures.db), "
                                                           "instead of --config.")] = None,
    since: Annotated[str, typer.Option(help="Inclusive: the forms of `audit search --since`.")] = "",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most gateway entries to read.")] = 10_000,
    flagged: Annotated[bool, typer.Option("--flagged", help="Only requests the two records disagree on.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every request for this department's data, from the gateway's log and its own, reconciled.

    Runs with the department's own certificate (--cert): the gateway returns the entries about its
    datasets only. The disclosure log is read locally and read-only. A request in one record and
    not the other is flagged; exit code 2 if any is.
    """
    from fedgate.adapters.config import AdapterConfig
    from fedgate.cli.department_view import View, department_table, read_view

    def go() -> View:
        department = identity_from_pem(cert.read_bytes())
        if department.role is not Role.DEPARTMENT:
            raise InvalidInput(f"--cert is {department}, not a department's certificate; run this with the "
                               "department's own")
        if (config is None) == (log is None):
            raise InvalidInput("give the adapter's configuration (--config) or its disclosure log (--log)")
        path = log if log is not None else AdapterConfig.load(config).data_dir / "disclosures.db"  # type: ignore[arg-type]
        start = criteria.point_in_time(since, "since", dt.datetime.now(dt.UTC))

        async def remote() -> View:
            async with _client(gateway, ca, cert, key) as client:
                return await read_view(client, department.org, path, start, limit)
        return asyncio.run(remote())

    view = _run(go)
    shown = view.flagged if flagged else view.requests
    if as_json:
        print(json.dumps({"department": view.department, "since": view.since, "truncated": view.truncated,
                          "requests": [r.to_json() for r in shown]}, ensure_ascii=False, indent=2))
    else:
        console.print(department_table(shown, view.department))
        if view.truncated:
            err_console.print(f"only the newest {limit:,} entries were read: requests before {view.since} are "
                              "not shown; narrow with --since")
    if view.flagged:
        raise typer.Exit(2)


@query_app.command("collect")
def query_collect(
    gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
    query_id: Annotated[str, typer.Argument(help="The held request's query id (32 hex digits).")],
    wait: Annotated[int, typer.Option(min=0, help="Seconds to wait for the departments' decision (0: ask once).")] = 0,
) -> None:
    """Collect the answer to a request held for approval: the same request, sent again once approved.

    Exit 3 while it still waits; the answer is printed as the original command prints it. A request is
    collected once.
    """
    held = _run(lambda: HeldLocally.load(query_id))

    async def state() -> HeldRequest:
        async with _client(gateway, ca, cert, key) as client:
            return await client.held_request(query_id)

    deadline = time.monotonic() + wait
    while wait:
        h = _run(lambda: asyncio.run(state()))
        if h.state != "pending" or time.monotonic() >= deadline:
            break
        time.sleep(min(5.0, max(0.5, deadline - time.monotonic())))
    token = _collecting.set(held)
    try:
        code = app(args=list(held.argv), standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    finally:
        _collecting.reset(token)
    if code in (0, None):
        held.forget()
    elif code != HELD_EXIT:
        raise typer.Exit(code)
    else:
        raise typer.Exit(HELD_EXIT)


approvals_app = typer.Typer(help="A department's approvals of requests its own rules hold (with its certificate).",
                            no_args_is_help=True)
app.add_typer(approvals_app, name="approvals")
ApproverKeyOpt = Annotated[Path, typer.Option("--approver-key", envvar="FEDGATE_APPROVER_KEY",
                                              help="Your approver key (PEM; its .vkey beside it names you).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: kept in the audit log, shown to the supervisor.")]


def _new_signing_key(path: Path, name: str, what: str) -> Path:
    """Create an Ed25519 signing key at `path` (0600) named `name`, never over an existing one; its .vkey's path."""
    if path.exists():
        raise InvalidInput(f"{path} exists: {what} is never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    load_or_create(path, name)
    return vkey_path(path)


def _department_of(cert: Path) -> str:
    who = identity_from_pem(cert.read_bytes())
    if who.role is not Role.DEPARTMENT:
        raise InvalidInput(f"--cert is {who}, not a department's certificate: approvals are the department's")
    return who.org


@approvals_app.command("keygen")
def approvals_keygen(name: Annotated[str, typer.Argument(help="The approver's name, e.g. hrss-zhang.")],
                     out: Annotated[Path, typer.Option("--out", help="Directory for NAME.key and NAME.vkey.")]
                     = Path(".")) -> None:
    """Create an approver's signing key (NAME.key, 0600) and verifier key (NAME.vkey, for [approvals] keys)."""
    vkey = _run(lambda: _new_signing_key(out / f"{name}.key", name, "an approver key"))
    console.print(f"approver key {out / (name + '.key')}; list {vkey} under [approvals] keys in the adapter "
                  "configuration")


@approvals_app.command("list")
def approvals_list(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
                   everything: Annotated[bool, typer.Option("--all", help="Also those decided, collected or "
                                                                        "expired (last 30 days).")] = False,
                   as_json: JsonOpt = False) -> None:
    """Requests held for this department's approval."""
    department = _run(lambda: _department_of(cert))

    async def go() -> list[HeldRequest]:
        async with _client(gateway, ca, cert, key) as client:
            return await client.held_requests(everything)

    items = _run(lambda: asyncio.run(go()))
    if as_json:
        print(json.dumps([held_summary(h, department) for h in items], ensure_ascii=False, indent=2))
    else:
        console.print(held_table(items, department))


@approvals_app.command("show")
def approvals_show(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
                   query_id: Annotated[str, typer.Argument(help="The held request's query id.")],
                   as_json: JsonOpt = False) -> None:
    """One held request as the approver inspects it: who, why, which fields in which form, how many rows."""
    department = _run(lambda: _department_of(cert))

    async def go() -> tuple[HeldRequest, list[RegisteredDataset]]:
        async with _client(gateway, ca, cert, key) as client:
            return await client.held_request(query_id), await client.list_datasets(department)

    h, datasets = _run(lambda: asyncio.run(go()))
    summary = held_summary(h, department)
    summary["rows"] = {d.decl.qualified_name: d.live_row_count if d.live_row_count is not None else d.decl.row_count
                       for d in datasets if d.decl.qualified_name in h.entry.datasets}
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    for name, value in summary.items():
        console.print(f"[bold]{name}[/]: {escape(json.dumps(value, ensure_ascii=False))}", highlight=False)


def _decide(gateway: str, ca: Path, cert: Path, key: Path, query_id: str, approver_key: Path, decision: str,
            reason: str) -> HeldRequest:
    department = _department_of(cert)
    signer = ed25519_key(approver_key, "approver key")
    name = read_vkey(vkey_path(approver_key)).name

    async def go() -> HeldRequest:
        async with _client(gateway, ca, cert, key) as client:
            h = await client.held_request(query_id)
            note = h.sign(department, decision, name, signer, int(time.time()), h.expires_at - int(time.time()))
            return await client.decide(query_id, note, reason)
    return asyncio.run(go())


@approvals_app.command("approve")
def approvals_approve(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt, approver_key: ApproverKeyOpt,
                      query_id: Annotated[str, typer.Argument(help="The held request's query id.")],
                      reason: ReasonOpt = "") -> None:
    """Approve a held request: your signature on its logged entry, appended to the audit log."""
    h = _run(lambda: _decide(gateway, ca, cert, key, query_id, approver_key, "approve", reason))
    missing = sum(n.missing for n in h.needs)
    console.print(f"request {query_id}: {h.state}" + (f" ({missing} approval(s) still missing)" if missing else ""))


@approvals_app.command("deny")
def approvals_deny(gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt, approver_key: ApproverKeyOpt,
                   query_id: Annotated[str, typer.Argument(help="The held request's query id.")],
                   reason: ReasonOpt = "") -> None:
    """Deny a held request: it is never served; the supervisor sees your reason."""
    h = _run(lambda: _decide(gateway, ca, cert, key, query_id, approver_key, "deny", reason))
    console.print(f"request {query_id}: {h.state}")


@app.command("console")
def console_cmd(
    gateway: GatewayOpt, ca: CaOpt, cert: CertOpt, key: KeyOpt,
    listen: Annotated[str, typer.Option(help="host:port for the browser (loopback by default: the console acts "
                                             "with your certificate; port 0 picks a free one).")]
    = "127.0.0.1:8443",
    vkey: Annotated[Path | None, typer.Option("--vkey", envvar="FEDGATE_LOG_VKEY",
                                              help="Officers: the gateway's pinned log verifier key.")] = None,
    state: Annotated[Path | None, typer.Option(help="Officers: where verified log state is kept (default: as "
                                                    "`audit verify` keeps it for this gateway).")] = None,
    witness_keys: Annotated[Path | None, typer.Option("--witness-keys", envvar="FEDGATE_WITNESS_KEYS",
                                                      help="Officers: pinned department witness keys.")] = None,
    witnesses: Annotated[int | None, typer.Option(
        "--witnesses", min=0, help="Officers: how many pinned witnesses must have cosigned a checkpoint covering "
                                   "the newest query entry for a verification to pass (default: 1 with "
                                   "--witness-keys, else 0).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Departments: the adapter's TOML.")] = None,
    approver_key: Annotated[Path | None, typer.Option("--approver-key", envvar="FEDGATE_APPROVER_KEY",
                                                      help="Departments: your approver key, to approve or "
                                                           "deny in the browser.")] = None,
    crl: Annotated[Path | None, typer.Option("--crl", help="The CA's revocation list (PEM): a browser "
                                                           "certificate on it is refused.")] = None,
    ready_file: ReadyOpt = None,
) -> None:
    """A web console for a security officer or a department, on your own machine, with your own certificate.

    The browser must present your certificate (import it, and trust the fedgate CA); every page is
    an audited request to the gateway under your identity. An officer's certificate opens the audit
    pages, a department's its requests, approvals and subject reports.
    """
    from fedgate.console.serve import serve
    from fedgate.console.settings import ConsoleSettings

    def go() -> None:
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit():
            raise InvalidInput(f"--listen {listen!r} is not host:port")
        state_dir = state or Path.home() / ".local/state/fedgate/audit" / "".join(
            c if c.isalnum() else "_" for c in gateway)
        if witnesses and witness_keys is None:
            raise InvalidInput("--witnesses needs --witness-keys (the departments' witness.vkey lines)")
        settings = ConsoleSettings(gateway, TlsFiles(ca, cert, key), host.strip("[]"), int(port), vkey,
                                   state_dir if vkey else None, witness_keys, witnesses, config, approver_key, crl)
        asyncio.run(serve(settings, ready_file))

    _setup_logging()
    _run(go)


@department_app.command("subject-report")
def department_subject_report(
    identifier: Annotated[str, typer.Argument(help="The resident ID or USCC asked about, or - to read it from "
                                                   "stdin (kept out of the shell history and process list). "
                                                   "Only ever hashed: never stored or logged.")],
    config: Annotated[Path, typer.Option("--config", help="The department's adapter TOML: its data_dir holds "
                                                          "the subject-use store and its key.")],
    dataset: Annotated[str, typer.Option(help="Only this dataset of the department's (default: all).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Which cases received or used one subject's records: when, for which agency, in what form.

    Read from the adapter's own store, locally (no gateway, no certificate). Entries of covert cases are
    held back as the adapter TOML's subject_reports rules say; the report is itself recorded, with a keyed
    hash of the subject and how many entries each rule held back.
    """
    from fedgate.adapters.config import AdapterConfig
    from fedgate.adapters.subject_report import SubjectReport, make_report
    from fedgate.cli.subject_report import report_table

    def go() -> SubjectReport:
        raw = sys.stdin.readline().strip() if identifier == "-" else identifier
        return make_report(AdapterConfig.load(config), raw, dataset)

    report = _run(go)
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
        return
    console.print(report_table(report))
    if report.tell_withheld and report.withheld:
        console.print(f"{report.withheld} entr{'y' if report.withheld == 1 else 'ies'} of covert cases held back "
                      "under the department's rules")


def main() -> None:
    # `kill -USR1 <pid>` writes every thread's stack to stderr: how an operator (or a test) sees where a
    # server or the demo is stuck, without stopping it.
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    app()
