"""Two gateway replicas sharing one audit log and registry on a real PostgreSQL, under load.

Each test works in a fresh PostgreSQL schema (dropped at the end), so helpers and
runs sharing the database never see each other's tables.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import support
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.client.gateway import GatewayClient
from fedgate.core.errors import RemoteCallFailed
from fedgate.gateway.audit_log import AuditLog
from fedgate.gateway.audit_store import AuditStore
from fedgate.gateway.config import GatewayConfig
from fedgate.gateway.server import Gateway, build_gateway
from fedgate.server.tls import TlsFiles

pytestmark = pytest.mark.postgres

WHY = ("副本测试", "DC-2026-812")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose tables all live in a schema of their own."""
    with support.private_pg_schema("fg_replicas") as url:
        yield url


async def _replica(servers, tmp_path: Path, name: str, url: str) -> Gateway:
    """A gateway replica: its own data_dir, the shared stores and the shared log signing key."""
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(support.gateway_toml(tmp_path / name, servers.certs).replace(
        "[tls]", f'registry_url = "{url}"\naudit_url = "{url}"\n'
                 f'signing_key = "{tmp_path / "log-signing.key"}"\npolicy_watch_s = 0\n\n[tls]'))
    gw = await build_gateway(GatewayConfig.load(cfg))
    servers.gateways.append(gw)
    return gw


def _entry(i: int) -> AuditEntry:
    return AuditEntry(utc_now(), "spiffe://fedgate/officer/a/b", "officer", "audit.read", "/m", "allow", "OK",
                      result_sizes=(("n", i),))


async def test_a_replica_starts_every_time_while_another_appends(servers, tmp_path: Path, pg_url: str) -> None:
    gw = await _replica(servers, tmp_path, "gw-a", pg_url)
    stop = asyncio.Event()
    appended = 0

    async def append_forever() -> None:
        nonlocal appended
        while not stop.is_set():
            await gw.audit_log.append(_entry(appended))
            appended += 1

    writer = asyncio.create_task(append_forever())
    failures: list[str] = []
    store = await asyncio.to_thread(AuditStore.open, pg_url)
    try:
        deadline = time.monotonic() + 60
        while appended < 5:  # a writer that failed must end the test, not hang it
            assert not writer.done() and time.monotonic() < deadline, "the other replica did not append"
            await asyncio.sleep(0.01)
        # The replica's start-up read of the log, many times, each racing the other replica's appends.
        for _ in range(60):
            try:
                replica = await AuditLog.open(store, gw.audit_log._key, gw.audit_log.origin)
            except Exception as exc:  # noqa: BLE001 - every failure is what this test counts
                failures.append(str(exc))
            else:
                # Bounded by the store, not by the other replica's in-memory size: that moves only when
                # the loop resumes after the commit, so a start-up read can see one entry more.
                assert replica.size <= await asyncio.to_thread(store.size)
        before = appended
        # And whole gateway replicas, started and stopped while the log grows.
        for i in range(4):
            try:
                b = await _replica(servers, tmp_path, f"gw-b{i}", pg_url)
            except Exception as exc:  # noqa: BLE001
                failures.append(str(exc))
            else:
                await servers.stop_gateway(b)
        assert appended > before, "the other replica did not append while replicas started"
    finally:
        stop.set()
        await writer
        store.close()
    assert failures == [], f"{len(failures)} of 64 starts failed, e.g. {failures[0]}"


async def test_two_replicas_under_concurrent_load_refuse_no_query(servers, tmp_path: Path, pg_url: str) -> None:
    a = await _replica(servers, tmp_path, "gw-a", pg_url)
    b = await _replica(servers, tmp_path, "gw-b", pg_url)
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    # The department registers with one replica; the other finds it in the shared registry.
    hrss = await servers.adapter("hrss", a, support.SUBSIDIES_DECL.format(path=csv))
    tls = TlsFiles.in_dir(servers.certs, support.SUPERVISOR)
    errors: list[str] = []
    served = 0

    async def supervisor(gw: Gateway, n: int) -> None:
        nonlocal served
        async with GatewayClient(f"127.0.0.1:{gw.port}", tls) as client:
            for i in range(12):
                try:
                    rows, _ = await client.count_rows("hrss.subsidies", WHY[0], f"{WHY[1]}-{n}-{i}")
                except RemoteCallFailed as exc:
                    errors.append(f"{exc.code}: {exc.details}")
                else:
                    assert rows == 20
                    served += 1

    await asyncio.gather(*(supervisor(gw, n) for n, gw in enumerate([a, b] * 5)))
    refusals = [d.reason for d in hrss.disclosures.disclosures() if d.decision == "refused"]
    assert errors == [], f"{len(errors)} of 120 queries failed, e.g. {errors[0]}"
    assert refusals == [], f"the department refused {len(refusals)} tickets, e.g. {refusals[0]}"
    assert served == 120
