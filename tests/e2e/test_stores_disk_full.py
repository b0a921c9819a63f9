"""A department whose disk is full: an honest UNAVAILABLE for the supervisor, the real cause in its own log."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

import support
from fedgate.client.gateway import GatewayClient
from fedgate.core.errors import RemoteCallFailed
from fedgate.server.tls import TlsFiles

WHY = {"purpose": "核查稳岗补贴发放", "case_number": "DC-2026-120"}


async def test_a_full_disk_at_a_department_is_unavailable_not_a_denial_and_its_log_says_why(
        servers, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gw = await servers.gateway(tmp_path / "gw")
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    hrss = await servers.adapter("hrss", gw, support.SUBSIDIES_DECL.format(path=csv))
    # A full disk, simulated where root cannot ignore it: SQLite refuses to grow the file past
    # max_page_count. The pragma holds per connection, so it is set on the adapter's own one.
    conn: sqlite3.Connection = hrss.disclosures._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")

    caplog.set_level(logging.INFO)
    supervisor = TlsFiles.in_dir(servers.certs, support.SUPERVISOR)
    async with GatewayClient(f"127.0.0.1:{gw.port}", supervisor) as client:
        failure = None
        # The first records still fit in the file's free space; the disk is "full" once they do not.
        for _ in range(300):
            try:
                assert (await client.count_rows("hrss.subsidies", **WHY))[0] == 20
            except RemoteCallFailed as exc:
                failure = exc
                break
        assert failure is not None, "the disclosure log never filled up"
        assert failure.code == "UNAVAILABLE", failure
        assert "department 'hrss' could not record the request in its disclosure log" in failure.details
        assert "disk" not in failure.details and str(hrss.disclosures.path) not in failure.details

        # The adapter's own log names the real cause, not a failed ROLLBACK that hides it.
        messages = [r.getMessage() for r in caplog.records if r.name.startswith("fedgate.adapters")]
        assert any("database or disk is full" in m for m in messages), messages
        assert not any("cannot rollback" in m for m in messages), messages

        # Audited as an error of the department, not as a policy denial.
        async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER)) as officer:
            outcome = (await officer.search(case_number=WHY["case_number"], limit=1))[0][1]
        assert (outcome.status, outcome.decision) == ("UNAVAILABLE", "error")
        assert "disclosure log" in outcome.reason and "disk" not in outcome.reason

        # Room on the disk again: the department serves again, with no restart.
        conn.execute("PRAGMA max_page_count=1073741823")
        assert (await client.count_rows("hrss.subsidies", **WHY))[0] == 20
