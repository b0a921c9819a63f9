"""Run the console: uvicorn on the owner's loopback, mutual TLS, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import uvicorn

from fedgate.console.app import create_app
from fedgate.console.https import ClientCertH11Protocol, server_context
from fedgate.console.settings import ConsoleSettings
from fedgate.core.errors import ConfigError
from fedgate.server.serving import write_ready_file
from fedgate.server.tls import check_own

log = logging.getLogger(__name__)


async def serve(settings: ConsoleSettings, ready_file: Path | None = None) -> None:
    """Serve the console until signalled; the ready file gets {pid, port, url} once it listens."""
    check_own(settings.tls)
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, http=ClientCertH11Protocol,
                            lifespan="on", access_log=False,  # URLs hold search criteria: never logged
                            log_level="warning", server_header=False, timeout_graceful_shutdown=5)
    config.load()
    # uvicorn builds its context from file names only; ours also checks the CA's revocation list.
    config.ssl = server_context(str(settings.tls.ca), str(settings.tls.cert), str(settings.tls.key),
                                str(settings.crl) if settings.crl else None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            raise ConfigError(f"{settings.host}:{settings.port}", "the console could not listen on this address "
                              "(is another process on the port?)")
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    url = f"https://{host}:{port}/"
    log.info("console for %s at %s", settings.owner(), url)
    print(f"fedgate console at {url} (your browser must present your certificate)", flush=True)
    write_ready_file(ready_file, port=port, url=url)
    await task
