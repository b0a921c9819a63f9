"""Departments report progress in every streaming query, and only to a gateway that asks for it."""

from __future__ import annotations

from typing import Any

import pytest

import support
from fedgate.adapters import matching as adapter_matching
from fedgate.client.gateway import GatewayClient, ProgressReport, Side
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.demo.datagen import generate
from fedgate.gateway import matching as gateway_matching
from fedgate.query import match as match_machine
from fedgate.server.tls import TlsFiles

ROWS = 1000
WHY = ("核查稳岗补贴发放对象", "DC-2026-116")
SUBSIDIES = Side("hrss.subsidies", "uscc")


@pytest.fixture
def fine_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps small enough for 1,000 demo rows to pass several."""
    monkeypatch.setattr(match_machine, "PROGRESS_EVERY", 100)
    monkeypatch.setattr(adapter_matching, "REPORT_EVERY", 50)


async def _deploy(servers: Any, tmp_path: Any, codes: tuple[str, ...]) -> GatewayClient:
    workdir = tmp_path / "demo"
    departments = generate(workdir, rows=ROWS, seed=11)
    gw = await servers.gateway(workdir / "gateway-data")
    await servers.demo_adapters(gw, workdir, departments, codes)
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.SUPERVISOR), timeout=120)


def _sides(reports: list[ProgressReport]) -> dict[str, list[ProgressReport]]:
    return {side: [r for r in reports if r.phase == side] for side in ("left", "right")}


@pytest.mark.usefixtures("fine_steps")
@pytest.mark.parametrize("kind", ["match-ecdh", "sum", "compare"])
async def test_each_side_reports_rows_blinded_against_its_published_row_count(servers, tmp_path, kind) -> None:
    reports: list[ProgressReport] = []
    key = SupervisorKey.generate() if kind != "match-ecdh" else None
    other = Side("samr.companies", "uscc") if kind != "compare" else Side("tax.insured_employees", "uscc")
    async with await _deploy(servers, tmp_path, ("hrss", other.dataset.split(".")[0])) as c:
        if kind == "match-ecdh":
            await c.match(left=SUBSIDIES, right=other, purpose=WHY[0], case_number=WHY[1], mode="ecdh",
                          on_report=reports.append)
        elif kind == "sum":
            await c.intersection_sum(values=SUBSIDIES, value_fields=["amount_fen"], other=other, purpose=WHY[0],
                                     case_number=WHY[1], key=key, on_report=reports.append)
        else:
            await c.compare(left=SUBSIDIES, left_value="claimed_insured", right=other,
                            right_value="insured_employees", purpose=WHY[0], case_number=WHY[1], key=key,
                            on_report=reports.append)
    for side, shown in _sides(reports).items():
        blinding = [r for r in shown if r.stage == "blinding" and r.rows_blinded]
        assert blinding, (side, shown)
        assert all(r.rows_blinded % 100 == 0 and 0 < r.rows_blinded <= r.dataset_rows for r in blinding), shown
        assert shown[-1].stage == "done" and not shown[-1].withheld
    if kind == "match-ecdh":
        assert any(r.stage == "re-blinding" and r.tokens_reblinded for r in reports), reports


@pytest.mark.usefixtures("fine_steps")
async def test_a_gateway_that_does_not_ask_for_reports_is_sent_none(servers, tmp_path, monkeypatch) -> None:
    # An older gateway: its MatchStart has no progress_reports, and it would refuse a message it does not know.
    start_message = gateway_matching._start_message

    def older(*args: Any) -> Any:
        msg = start_message(*args)
        msg.start.progress_reports = False
        return msg

    kinds: list[str] = []
    incoming = gateway_matching._incoming

    def recorded(side: Any, msg: Any) -> Any:
        kinds.append(msg.WhichOneof("msg"))
        return incoming(side, msg)

    monkeypatch.setattr(gateway_matching, "_start_message", older)
    monkeypatch.setattr(gateway_matching, "_incoming", recorded)
    reports: list[ProgressReport] = []
    async with await _deploy(servers, tmp_path, ("hrss", "samr")) as c:
        got = await c.match(left=SUBSIDIES, right=Side("samr.companies", "uscc"), purpose=WHY[0],
                            case_number=WHY[1], on_report=reports.append)
    assert got.cardinality > 0 and "own_tokens" in kinds and "progress" not in kinds
    # The gateway's own token counts still show how far each side is.
    assert any(r.tokens for r in _sides(reports)["left"]), reports
