"""An adapter stopped while it serves a match still records how the session ended, then closes its log.

Run by `test_stores_shutdown.py` in a child pytest (this file's name keeps the
suite from collecting it): before the fix this scenario could end in a
segmentation fault, which must fail one test, not kill the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import support
from fedgate.client.gateway import GatewayClient, Side
from fedgate.demo.datagen import generate
from fedgate.server.tls import TlsFiles

WHY = ("停机测试", "DC-2026-112")


def _decisions(db: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [(q, d) for q, d in conn.execute("SELECT query_id, decision FROM disclosures ORDER BY id")]


async def test_an_adapter_stopped_mid_match_records_the_session_as_stopped_before_closing(
        servers, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from fedgate.adapters import matching as adapter_matching

    departments = generate(tmp_path, rows=1000, seed=5)
    gw = await servers.gateway(tmp_path / "gateway-data")
    adapters = await servers.demo_adapters(gw, tmp_path, departments, ("hrss", "samr"))
    calls: list[float] = []
    tokens_for = adapter_matching.tokens_for

    def slow_tokens(*args):  # type: ignore[no-untyped-def]
        calls.append(time.monotonic())
        time.sleep(0.05)  # a long match: 20 chunks a side
        return tokens_for(*args)

    monkeypatch.setattr(adapter_matching, "chunk_rows", lambda rows, parallelism: 50)
    monkeypatch.setattr(adapter_matching, "tokens_for", slow_tokens)
    client = GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR))
    query = asyncio.create_task(client.match(left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc"),
                                             purpose=WHY[0], case_number=WHY[1], mode="ecdh"))
    deadline = time.monotonic() + 60
    while len(calls) < 4 and time.monotonic() < deadline and not query.done():
        await asyncio.sleep(0.01)
    hrss = adapters["hrss"]
    assert hrss.sessions.active == 1, "the match never reached the adapter"

    await hrss.stop(0)  # what SIGTERM does, with no grace: the session is cancelled mid-stream

    with contextlib.suppress(Exception):
        await asyncio.wait_for(query, 60)
    await client.close()
    db = hrss.config.data_dir / "disclosures.db"
    records = _decisions(db)
    assert records, "the adapter recorded nothing"
    query_id = records[-1][0]
    assert [d for q, d in records if q == query_id] == ["admitted", "stopped"], records
