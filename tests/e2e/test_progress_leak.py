"""Progress tells the supervisor nothing the answer withholds: no exact size of a refused set, and no count at
all of a noisy answer's filtered set."""

from __future__ import annotations

import csv
import sqlite3

import pytest

import support
from fedgate.adapters import matching as adapter_matching
from fedgate.client.gateway import GatewayClient, ProgressReport, Side
from fedgate.demo.datagen import generate
from fedgate.demo.deployment import policy_copy
from fedgate.query import match as match_machine
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


@pytest.mark.parametrize("mode", ["keyed", "ecdh"])
async def test_a_noisy_match_shows_the_same_progress_for_filtered_sets_of_different_sizes(
        servers, tmp_path, monkeypatch, mode) -> None:
    # A fine step, so coarse counts would give the sizes away at this scale: the noisy answer must show none.
    monkeypatch.setattr(match_machine, "PROGRESS_EVERY", 50)
    monkeypatch.setattr(adapter_matching, "REPORT_EVERY", 10)
    workdir = tmp_path / "demo"
    departments = generate(workdir, rows=ROWS, seed=7)
    with (workdir / "data" / "hrss" / "subsidies.csv").open(encoding="utf-8") as f:
        amounts = sorted(int(row["amount_fen"]) for row in csv.DictReader(f))
    # Two filters on an L3 field (a noisy answer under the shipped DP policy), sets some 300 rows apart.
    thresholds = (amounts[len(amounts) * 3 // 10], amounts[len(amounts) * 6 // 10])
    policies = support.with_test_rules(policy_copy(tmp_path / "noisy-policies"), noisy=True)
    gw = await servers.gateway(workdir / "gateway-data", settings=f'policy_dir = "{policies}"')
    await servers.demo_adapters(gw, workdir, departments, ("hrss", "samr"))

    shown: dict[str, list[list[tuple[object, ...]]]] = {"left": [], "right": []}
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR)) as c:
        for threshold in thresholds:
            reports: list[ProgressReport] = []
            result = await c.match(left=Side("hrss.subsidies", "uscc", f"amount_fen > {threshold}"),
                                   right=Side("samr.companies", "uscc"), purpose=WHY[0], case_number=WHY[1],
                                   mode=mode, on_report=reports.append)
            assert result.epsilon > 0 and result.left.rows == 0, "not a noisy answer: the test shows nothing"
            for side in shown:
                shown[side].append([(r.stage, r.tokens, r.rows_blinded, r.tokens_reblinded, r.dataset_rows,
                                     r.filtered, r.withheld) for r in reports if r.phase == side])
    left, right = shown["left"], shown["right"]
    # The filtered side: its stages, not one count; and the same stream whichever set it was.
    assert left[0] == left[1] and left[0], left
    assert all(r[6] and r[1:4] == (0, 0, 0) for r in left[0]), repr(left[0])
    # The unfiltered side still shows its rows against the row count `fedgate datasets` publishes.
    published = right[0][0][4]
    assert published > 0 and any(0 < rows <= published for _, _, rows, *_ in right[0]), right[0]
