"""`fedgate demo` as a user runs it: separate processes, real certificates, clean shutdown."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import support

ROWS = "300"


def _pids(workdir: Path) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in (workdir / "run").glob("*.ready.json")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_demo_runs_and_exits_0(tmp_path: Path) -> None:
    # Wide enough that no table title wraps in the middle of what is asserted below.
    result = subprocess.run([sys.executable, "-m", "fedgate", "demo", "--workdir", str(tmp_path), "--rows", ROWS],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for name in ("subsidies", "pensions", "companies", "insured_employees", "deaths", "allowances", "vehicles"):
        assert name in out
    # The pension rows: held by hrss's own rule, in its queue, approved by a named approver, then collected.
    assert "rule 'pension-rows-need-approval' needs 1 approval(s)" in out
    assert "hrss's queue: supervisor/dcb/zhangwei asks for" in out and "hrss.pensions.name:masked" in out
    assert "approved by hrss-zhang (signed note, audit entry #" in out and "request approved" in out
    assert "5 rows served under entry #" in out
    # A subject report on a planted over-claimer, agreeing with the demo's queries, naming it only masked.
    assert "Subject report by hrss's data office on planted over-claimer" in out
    assert "exactly the demo's queries on it ✓" in out
    truth = json.loads((tmp_path / "ground_truth.json").read_text(encoding="utf-8"))
    assert not [u for u in truth["overclaim"]["usccs"] if u in out]
    assert "all servers stopped cleanly" in out
    assert (tmp_path / "ground_truth.json").exists()
    pids = _pids(tmp_path)
    assert len(pids) == 6  # gateway + five departments
    assert not [p for p in pids if _alive(p)]


def test_demo_ctrl_c_stops_every_server(tmp_path: Path) -> None:
    # Ctrl-C as at a terminal: a run started in the background by a non-interactive shell (CI under nohup ... &)
    # inherits SIGINT ignored, and Python then leaves it ignored in the demo too.
    proc = subprocess.Popen([sys.executable, "-m", "fedgate", "demo", "--workdir", str(tmp_path), "--rows", ROWS,
                             "--keep-running"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    seen = ""
    while "press Ctrl-C" not in seen:
        line = proc.stdout.readline()
        assert line and time.monotonic() < deadline, f"demo never came up:\n{seen}"
        seen += line
    pids = _pids(tmp_path)
    assert len(pids) == 6 and all(_alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # every thread's stack (faulthandler, fedgate.cli.commands.main)
        time.sleep(2)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        rest, _ = proc.communicate()
        pytest.fail(f"the demo did not stop within 60 s of Ctrl-C; its output and stacks:\n{seen}{rest}")
    assert proc.returncode == 0, seen + rest
    assert "all servers stopped cleanly" in rest
    assert not [p for p in pids if _alive(p)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    from fedgate.demo.runner import run_demo

    workdir = tmp_path_factory.mktemp("demo")
    # 1000 rows: enough revoked/deregistered companies to pass the minimum set size of 100.
    return workdir, run_demo(workdir, rows=1000, say=lambda _: None, show=lambda _: None)


def test_demo_query_is_one_trace_across_gateway_and_adapter(demo) -> None:
    from fedgate.server.trace_store import load_trace

    workdir, result = demo
    assert len(result.counts) == 7 and all(reg == live for _, reg, live, _ in result.counts)
    # The trace id came from the query's audit entry; its spans come from two processes' stores.
    assert len(result.trace_id) == 32
    spans = load_trace(sorted(workdir.rglob("spans.db")), result.trace_id)
    services = {s.service for s in spans}
    # The latest count asks samr for its revoked and deregistered companies.
    assert services == {"fedgate-gateway", "fedgate-adapter-samr"}
    names = {s.name for s in spans}
    assert {"audit.append_intent", "ticket.issue", "ticket.verify", "source.count",
            "/fedgate.v1.QueryService/CountRows", "/fedgate.v1.AdapterService/CountRows"} <= names
    by_id = {s.span_id: s for s in spans}
    adapter_server = next(s for s in spans if s.service == "fedgate-adapter-samr"
                          and s.name == "/fedgate.v1.AdapterService/CountRows")
    assert by_id[adapter_server.parent_span_id].service == "fedgate-gateway"


def _demo_identifiers(workdir: Path) -> set[str]:
    """Every resident ID and USCC in the demo data, canonical and as written."""
    import csv
    import sqlite3

    from fedgate.crypto.ids import normalise

    found: set[str] = set()
    values: list[str] = []
    for path in (workdir / "data").rglob("*.csv"):
        with path.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                values += [row[k] for k in row if k in ("uscc", "resident_id", "legal_rep_id", "owner_id")]
    for path in (workdir / "data").rglob("*.db"):
        db = sqlite3.connect(path)
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            cols = [c[1] for c in db.execute(f"PRAGMA table_info({table})")]
            for col in set(cols) & {"uscc", "legal_rep_id", "owner_id", "resident_id"}:
                values += [v for (v,) in db.execute(f"SELECT {col} FROM {table}")]
        db.close()
    for v in values:
        found.add(v)
        for kind in ("resident_id", "uscc"):
            try:
                found.add(normalise(kind, v))
            except Exception:
                pass
    return {v for v in found if len(v) >= 15}


def test_no_demo_identifier_in_audit_log_spans_disclosure_logs_or_server_logs(demo) -> None:
    workdir, _ = demo
    ids = _demo_identifiers(workdir)
    assert len(ids) > 1000
    # Everything fedgate itself wrote: the gateway's stores (audit, registry, spans), each
    # adapter's disclosure log, subject uses and spans, and every server's log. Not data/: that is the departments' own.
    scanned = [p for d in ("gateway-data", "adapter-data", "logs", "run") for p in (workdir / d).rglob("*")
               if p.is_file()]
    names = {p.name for p in scanned}
    assert {"audit.db", "registry.db", "spans.db", "disclosures.db", "subject_uses.db", "gateway.log"} <= names
    leaks = support.identifier_leaks(scanned, ids)
    assert not leaks, f"demo identifiers found in {sorted(set(leaks))}"


def test_demo_shows_graded_disclosure(demo) -> None:
    _, result = demo
    forms = [(f.name, f.form) for f in result.disclosed.fields]
    assert forms == [("name", "masked"), ("monthly_amount_fen", "masked"), ("last_paid_on", "plaintext")]
    for name, amount, _ in result.disclosed.rows:
        assert "*" in name and "*" in amount
    assert result.closed_companies > 0
    assert result.l4_refusal.startswith("PERMISSION_DENIED") and "resident_id" in result.l4_refusal


def test_demo_matching_scenarios_equal_ground_truth(demo) -> None:
    from fedgate.client.gateway import MatchResult

    _, result = demo
    assert len(result.scenarios) == 4
    for scenario, got, expected in result.scenarios:
        assert isinstance(got, MatchResult), f"{scenario.title}: {got}"
        if scenario.disclose:  # rows disclosed: exact
            assert got.epsilon == 0 and got.cardinality == expected, scenario.title
        else:  # a cardinality alone, of L4 keys: noisy (the shipped levels.toml), within its bound
            assert got.epsilon == 0.1 and abs(got.cardinality - expected) <= got.within(1 - 1e-9), scenario.title
            assert got.left.rows == got.right.rows == 0  # the sides' exact counts are withheld
    first = result.scenarios[0][1]
    assert len(first.rows) == 5 and all("*" in row[0] for row in first.rows)


def test_demo_pension_rows_wait_for_hrss_approval_then_are_collected(demo) -> None:
    from fedgate.demo.runner import DEMO_CASE, DEMO_PURPOSE

    _, result = demo
    a = result.approval
    assert len(a.query_id) == 32 and "'pension-rows-need-approval'" in a.rule
    # The queue line hrss's approver read: who asks, why, and which of its fields in which form.
    assert (a.queued["purpose"], a.queued["case_number"], a.queued["kind"]) == (DEMO_PURPOSE, DEMO_CASE, "disclose")
    assert a.queued["fields"] == ["hrss.pensions.last_paid_on:plaintext", "hrss.pensions.monthly_amount_fen:masked",
                                  "hrss.pensions.name:masked"]
    assert a.state == "approved" and a.decide_index > a.held_index
    # Collected once, under the entry logged when it was held: the rows the graded disclosure shows.
    assert result.disclosed is a.collected and a.collected.audit_index == a.held_index


def test_demo_subject_report_lists_exactly_the_demo_queries_on_an_overclaimer(demo) -> None:
    workdir, result = demo
    s = result.subject
    assert s.ok, (s.report.entries, s.expected)
    assert [(kind, disclosed) for _, kind, _, disclosed in s.expected] == [
        ("count", False), ("match", False), ("sum", False), ("compare", True)]
    assert len({query_id for query_id, _, _, _ in s.expected}) == 4
    truth = json.loads((workdir / "ground_truth.json").read_text(encoding="utf-8"))
    (uscc,) = [u for u in truth["overclaim"]["usccs"] if (u[:6], u[-4:]) == (s.masked[:6], s.masked[-4:])]
    assert "*" in s.masked and uscc not in s.masked
