"""The `fedgate` command: parse, call the library, render. No logic lives here."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from fedgate.datasets import RegisteredDataset
from fedgate.errors import FedgateError
from fedgate.identity import Identity, Role
from fedgate.tls import TlsFiles

app = typer.Typer(help="fedgate: privacy-preserving federated data-sharing gateway (可用不可见).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
certs_app = typer.Typer(help="Private CA and party certificates.", no_args_is_help=True)
gateway_app = typer.Typer(help="Run the gateway.", no_args_is_help=True)
adapter_app = typer.Typer(help="Run a department adapter.", no_args_is_help=True)
app.add_typer(certs_app, name="certs")
app.add_typer(gateway_app, name="gateway")
app.add_typer(adapter_app, name="adapter")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

GatewayOpt = Annotated[str, typer.Option("--gateway", envvar="FEDGATE_GATEWAY", help="Gateway host:port.")]
CaOpt = Annotated[Path, typer.Option("--ca", envvar="FEDGATE_CA", help="CA certificate (PEM).")]
CertOpt = Annotated[Path, typer.Option("--cert", envvar="FEDGATE_CERT", help="Your certificate (PEM).")]
KeyOpt = Annotated[Path, typer.Option("--key", envvar="FEDGATE_KEY", help="Your private key (PEM).")]
ReadyOpt = Annotated[Path | None, typer.Option("--ready-file", help="Write {pid, port} here as JSON once serving.")]


def _run(fn: Callable[[], T]) -> T:
    """The one place a FedgateError becomes a message and exit code 1."""
    try:
        return fn()
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
    from fedgate import pki

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


@gateway_app.command("serve")
def gateway_serve(
    config: Annotated[Path, typer.Option("--config", help="gateway.toml")],
    ready_file: ReadyOpt = None,
) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    from fedgate.gateway.config import GatewayConfig
    from fedgate.gateway.server import serve

    _setup_logging()
    _run(lambda: asyncio.run(serve(GatewayConfig.load(config), ready_file)))


@adapter_app.command("serve")
def adapter_serve(
    config: Annotated[Path, typer.Option("--config", help="The department's adapter TOML.")],
    ready_file: ReadyOpt = None,
) -> None:
    """Run a department adapter: check its sources, serve, register with the gateway."""
    from fedgate.adapters.config import AdapterConfig
    from fedgate.adapters.server import serve

    _setup_logging()
    _run(lambda: asyncio.run(serve(AdapterConfig.load(config), ready_file)))


def datasets_table(datasets: list[RegisteredDataset]) -> RichTable:
    table = RichTable("department", "dataset", "rows", "level  field", title="Registered datasets")
    for item in datasets:
        d = item.decl
        fields = "\n".join(f"{f.level}  {f.name}" + (f"  [key: {f.key.value}]" if f.key else "")
                           for f in d.fields)
        table.add_row(f"{d.department}\n{item.department_display_name}", d.name, f"{d.row_count:,}",
                      escape(fields), end_section=True)
    return table


def datasets_json(datasets: list[RegisteredDataset]) -> list[dict[str, Any]]:
    return [
        {"department": i.decl.department, "department_display_name": i.department_display_name,
         "name": i.decl.name, "description": i.decl.description, "row_count": i.decl.row_count,
         "registered_at": i.registered_at.isoformat(),
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
    """List the datasets your certificate may see."""
    from fedgate.client import GatewayClient

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
    workdir: Annotated[Path, typer.Option(help="Where data, certificates, configs and logs go.")] = Path("fedgate-demo"),
    rows: Annotated[int, typer.Option(min=200, help="Rows per dataset.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the data generator.")] = 20261129,
    keep_running: Annotated[bool, typer.Option(help="Keep the servers up until Ctrl-C.")] = False,
) -> None:
    """Generate data and certificates, start a gateway and every department adapter, show the registry."""
    from fedgate.demo.runner import run_demo

    result = _run(lambda: run_demo(workdir, rows, seed, say=lambda m: console.print(f"• {m}", soft_wrap=True),
                                   on_datasets=lambda ds: console.print(datasets_table(ds)),
                                   keep_running=keep_running))
    console.print(f"• {len(result.datasets)} datasets from {len(result.departments)} departments; "
                  "all servers stopped cleanly")


def main() -> None:
    app()
