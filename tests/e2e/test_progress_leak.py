"""A refused match tells the supervisor nothing of the set it refused: progress carries no exact size."""

from __future__ import annotations

import sqlite3

import pytest

import support
from fedgate.client.gateway import GatewayClient, Side
from fedgate.demo.datagen import generate
from fedgate.core.errors import RemoteCallFailed
from fedgate.gateway.matching import PROGRESS_EVERY
from fedgate.server.tls import TlsFiles

ROWS = 1000
WHY = ("核查稳岗补贴发放对象", "DC-2026-101")


@pytest.mark.parametrize("mode", ["keyed", "ecdh"])
async def test_a_set_refused_as_too_small_leaks_its_size_through_no_progress_event(servers, tmp_path, mode) -> None:
    workdir = tmp_path / "demo"
    departments = generate(workdir, rows=ROWS, seed=7)
    # The adversary narrows one side to a handful of companies, below min_set_size (100 by default).
    db = sqlite3.connect(workdir / "data" / "samr" / "registry.db")
    status, small = db.execute("SELECT status, COUNT(*) FROM companies GROUP BY status ORDER BY COUNT(*) LIMIT 1"
                               ).fetchone()
    db.close()
    assert 0 < small < 100
    gw = await servers.gateway(workdir / "gateway-data")
    await servers.demo_adapters(gw, workdir, departments, ("hrss", "samr"))

    seen: list[tuple[str, str, int]] = []
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        with pytest.raises(RemoteCallFailed) as err:
            await c.match(left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc", f"status = '{status}'"),
                          purpose=WHY[0], case_number=WHY[1], mode=mode, on_progress=lambda *event: seen.append(event))
    assert "min_set_size" in str(err.value)
    assert seen, "the supervisor saw no progress at all: the test shows nothing"
    # Every count shown before the safeguards ran is coarse: a multiple of the progress step.
    assert all(count % PROGRESS_EVERY == 0 for _, _, count in seen), seen
    assert small not in [count for _, _, count in seen]
