"""`fedgate demo`: data, certificates, a gateway and every department adapter on loopback.

Each server is a separate process with its own certificate; the demo talks to
them only over mTLS, as a supervisor would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import RenderableType
from rich.table import Table

from fedgate.server import pki
from fedgate.core.classification import default_levels
from fedgate.client.gateway import (CompareResult, Disclosure, FewerThan, GatewayClient, NoisyCount, MatchResult, Side,
                                    SumResult)
from fedgate.core.datasets import RegisteredDataset
from fedgate.demo.datagen import DemoDepartment, generate
from fedgate.demo.department_steps import (Approval, SubjectCheck, Use, approval_lines, approved_disclosure,
                                           approver_key, served_by_department, subject_report, subject_table,
                                           with_approval_rule)
from fedgate.demo.deployment import Deployment, DepartmentSpec, GatewaySpec
from fedgate.core.errors import FailedPrecondition, RemoteCallFailed
from fedgate.core.identity import GATEWAY, Identity, Role
from fedgate.client.audit_verify import TrustedState
from fedgate.client.render import datasets_table, rows_table
from fedgate.server.signing_key import read_vkey
from fedgate.server.tls import TlsFiles, secure_channel
from fedgate.server.trace_store import load_trace, render_tree

SUPERVISOR = Identity(Role.SUPERVISOR, "dcb", "zhangwei")
OFFICER = Identity(Role.OFFICER, "audit", "liqiang")


def demo_specs(departments: Sequence[DemoDepartment],
               certs: Path = Path("certs")) -> tuple[GatewaySpec, tuple[DepartmentSpec, ...]]:
    """The demo's gateway and adapters, with paths relative to the demo's folder."""
    # Filter literals are sealed to the officers' key (`fedgate certs init` wrote it beside the certificates).
    gateway = GatewaySpec.in_dir(Path("gateway-data"), certs, options={"officer_seal_key": certs / "officer-seal.pub"})
    return gateway, tuple(DepartmentSpec.in_dir(d.code, d.datasets, certs, display_name=d.display_name,
                                                data_dir=Path("adapter-data") / d.code) for d in departments)


DEMO_PURPOSE = "演示：核对各部门数据集规模"
DEMO_CASE = "DEMO-2026-001"


@dataclass
class DemoResult:
    departments: tuple[DemoDepartment, ...]
    datasets: list[RegisteredDataset]
    counts: list[tuple[str, int, int | FewerThan, int]] = field(default_factory=list)  # dataset, registered, live, index
    disclosed: Disclosure | None = None
    closed_companies: int | FewerThan = 0
    l4_refusal: str = ""
    scenarios: list[tuple[Scenario, MatchResult | str, int]] = field(default_factory=list)
    closed_total: SumResult | str = ""
    overclaim: CompareResult | str = ""
    # question, answer, ground truth, and True (equal) / False (differs) / None (refused, e.g. by a safeguard)
    checks: list[tuple[str, str, str, bool | None]] = field(default_factory=list)
    verified_size: int = 0
    approval: Approval | None = None
    subject: SubjectCheck | None = None
    trace_id: str = ""
    trace_services: set[str] = field(default_factory=set)
    exit_codes: dict[str, int | None] = field(default_factory=dict)


def disclosure_table(dataset: str, got: Disclosure) -> Table:
    table = Table(*(f"{f.name}\n{f.level} → {f.form}" for f in got.fields),
                  title=f"{dataset}: first {len(got.rows)} of {got.matched_rows:,} rows, "
                        "masked by the department as policy allows")
    for row in got.rows:
        table.add_row(*(v if v is not None else "—" for v in row))
    return table


@dataclass(frozen=True)
class Scenario:
    """A supervision question (docs/architecture.md), answered by private matching."""

    title: str
    left: tuple[str, str, str]
    right: tuple[str, str, str]
    mode: str
    truth_path: tuple[str, ...]
    disclose: list[str] = field(default_factory=list)

    def expected(self, truth: dict[str, object]) -> int:
        value: Any = truth  # parsed JSON
        for key in self.truth_path:
            value = value[key]
        return int(value)


SCENARIOS = (
    Scenario("稳岗补贴 → 吊销/注销企业 (subsidies to closed companies)",
             ("hrss.subsidies", "uscc", ""), ("samr.companies", "uscc", "status in ('吊销', '注销')"),
             "keyed", ("subsidies_to_closed_companies", "rows"), ["uscc", "company_name", "amount_fen"]),
    Scenario("养老金 → 死亡记录 (pensions vs deaths)",
             ("hrss.pensions", "resident_id", ""), ("civil.deaths", "resident_id", ""),
             "ecdh", ("pensions_to_deceased", "pensioners_in_deaths")),
    Scenario("低保 → 机动车 (allowances vs vehicles)",
             ("civil.allowances", "resident_id", ""), ("vehicle.vehicles", "owner_id", ""),
             "ecdh", ("allowance_vehicle_owners", "count")),
    Scenario("低保 → 企业法人 (allowances vs company reps)",
             ("civil.allowances", "resident_id", ""), ("samr.companies", "legal_rep_id", ""),
             "keyed", ("allowance_company_reps", "count")),
)


CLOSED = "status in ('吊销', '注销')"


async def homomorphic_checks(client: GatewayClient, result: DemoResult, truth: dict[str, object]) -> None:
    """The two Paillier questions of docs/architecture.md: a subsidy total and the over-claimers, beside the ground truth."""
    try:
        result.closed_total = await client.intersection_sum(
            values=Side("hrss.subsidies", "uscc"), value_fields=["amount_fen"],
            other=Side("samr.companies", "uscc", CLOSED), purpose=DEMO_PURPOSE, case_number=DEMO_CASE)
    except RemoteCallFailed as exc:
        result.closed_total = str(exc)
    try:
        result.overclaim = await client.compare(
            left=Side("hrss.subsidies", "uscc"), left_value="claimed_insured",
            right=Side("tax.insured_employees", "uscc"), right_value="insured_employees", purpose=DEMO_PURPOSE,
            case_number=DEMO_CASE, disclose=["uscc", "company_name", "claimed_insured"], limit=100)
    except RemoteCallFailed as exc:
        result.overclaim = str(exc)
    closed: dict[str, int] = truth["subsidies_to_closed_companies"]  # type: ignore[assignment]
    over: dict[str, object] = truth["overclaim"]  # type: ignore[assignment]
    got_total = result.closed_total
    result.checks.append((
        "稳岗补贴 → 吊销/注销企业: total amount_fen (intersection-sum)",
        sum_text(got_total) if isinstance(got_total, SumResult) else f"refused: {got_total}",
        f"{closed['amount_fen']:,} over {closed['rows']:,} rows",
        agrees(got_total.totals["amount_fen"], closed["amount_fen"], got_total.within("amount_fen", CHECKED))
        and agrees(got_total.cardinality, closed["rows"], got_total.within(confidence=CHECKED))
        if isinstance(got_total, SumResult) else None))
    mask = default_levels().mask_for("uscc", "string", "L3")
    expected_masks = sorted(mask.apply(u) for u in over["usccs"])  # type: ignore[attr-defined]
    got = result.overclaim
    if isinstance(got, CompareResult):
        got_masks = sorted({row[0] or "" for row in got.rows})
        text = (f"{len(got.flagged)} of {got.pairs:,} pairs flagged, "
                f"{len(got_masks)} companies: {', '.join(got_masks[:2])}, …")
        ok: bool | None = (len(got.flagged), got.pairs) == (over["flagged_rows"], over["compared_rows"]) and \
            got_masks == sorted(set(expected_masks))
    else:
        text, ok = f"refused: {got}", None
    result.checks.append(("稳岗补贴 claimed_insured > 税务 insured_employees (flag-only comparison)", text,
                          f"{over['flagged_rows']} rows of {over['companies']} planted over-claimers, "
                          f"{over['tied_rows']:,} ties not flagged", ok))


async def overclaimer_report(workdir: Path, address: str, officer: TlsFiles, result: DemoResult,
                             truth: dict[str, Any]) -> SubjectCheck:
    """hrss's subject report on one planted over-claimer, beside the demo's own queries that covered its record."""
    mask = default_levels().mask_for("uscc", "string", "L3")
    match = result.scenarios[0][1] if result.scenarios else ""
    matched = {row[0] for row in match.rows} if isinstance(match, MatchResult) else set()
    # One whose masked form the match's rows do not show: that answer surely did not disclose it.
    usccs: list[str] = truth["overclaim"]["usccs"]
    uscc = next((u for u in usccs if mask.apply(u) not in matched), usccs[0])
    masked = mask.apply(uscc)
    # The demo's answers from hrss.subsidies, by audit index: kind, and whether the record's rows left.
    answered: dict[int, tuple[str, bool]] = {index: ("count", False) for name, _, _, index in result.counts
                                             if name == "hrss.subsidies"}
    if isinstance(match, MatchResult):
        answered[match.audit_index] = ("match", masked in matched)
    if isinstance(result.closed_total, SumResult):
        answered[result.closed_total.audit_index] = ("sum", False)
    if isinstance(result.overclaim, CompareResult):
        answered[result.overclaim.audit_index] = ("compare", masked in {row[0] for row in result.overclaim.rows})
    # Every query the demo asked of hrss.subsidies, from the log: its first entry per query id is the intent.
    async with GatewayClient(address, officer) as client:
        logged = sorted(await client.search(case_number=DEMO_CASE, limit=1000))
    asked: dict[str, tuple[int, str]] = {}
    for index, entry in logged:
        if entry.action.startswith("query.") and "hrss.subsidies" in entry.datasets and entry.query_id:
            asked.setdefault(entry.query_id, (index, entry.action.removeprefix("query.")))
    served = served_by_department(workdir, {q for q, (i, _) in asked.items() if i in answered})
    # A query refused to the supervisor (a safeguard on the combined answer) may still have used hrss's side.
    expected: list[Use] = [(q, kind, DEMO_CASE, answered[i][1] if i in answered else None)
                           for q, (i, kind) in asked.items() if i in answered or q in served]
    return subject_report(workdir, uscc, masked, expected)


def checks_table(checks: list[tuple[str, str, str, bool | None]]) -> Table:
    table = Table("question", "answer (decrypted by the supervisor's client)", "ground truth", "",
                  title="Homomorphic cross-checks (Paillier under a key only the supervisor holds)")
    for question, got, truth, ok in checks:
        table.add_row(question, got, truth, {True: "✓", False: "✗", None: ""}[ok])
    return table


def scenarios_table(rows: list[tuple[Scenario, MatchResult | str, int]]) -> Table:
    table = Table("question", "mode", "left rows\n(invalid)", "right\nrows", "matched", "truth", "",
                  title="Private matching (no department sees another's data; the gateway sees no identifier)")
    for s, got, expected in rows:
        if isinstance(got, str):
            table.add_row(s.title, s.mode, "", "", f"refused: {got}", f"{expected:,}", "")
            continue
        # A noisy answer withholds the sides' exact counts.
        sides = (("withheld", "withheld") if got.epsilon > 0 else
                 (f"{got.left.rows:,} ({got.left.invalid_identifiers})", f"{got.right.rows:,}"))
        table.add_row(s.title, s.mode, *sides, cardinality_text(got), f"{expected:,}",
                      "✓" if agrees(got.cardinality, expected, got.within(CHECKED)) else "✗")
    return table


def matched_rows_table(s: Scenario, got: MatchResult) -> Table:
    table = Table(*(f"{f.name}\n{f.level} → {f.form}" for f in got.fields),
                  title=f"{s.title}: first {len(got.rows)} of {got.cardinality:,} matched rows")
    for row in got.rows:
        table.add_row(*(v if v is not None else "—" for v in row))
    return table


# A noisy answer "agrees" with the ground truth when within this confidence's error bound: a miss is a one
# in a billion chance, not noise; the summary states the 95 % bound (SHOWN).
CHECKED = 1 - 1e-9
SHOWN = 0.95


def agrees(got: int, truth: int, within: int) -> bool:
    """Whether an answer is the truth (exact: within 0) or within its noise's error bound."""
    return abs(got - truth) <= within


def noisy_text(value: int, epsilon: float, within: int, unit: str = "") -> str:
    """A noisy answer as the supervisor got it: its ε and how far from the truth it may be."""
    return (f"about {value:,}{unit} (noisy, ε {epsilon:g}: within ±{within:,}{unit} of the truth "
            f"at {SHOWN:.0%})")


def count_text(count: int | FewerThan) -> str:
    """A count as the supervisor got it, saying which kind of answer it is: exact, noisy (differential
    privacy, with its ε and error bound: levels.toml dp), or "< k" when a safeguard suppressed it."""
    if isinstance(count, FewerThan):
        return str(count)
    if isinstance(count, NoisyCount):
        return noisy_text(count, count.epsilon, count.within(SHOWN))
    return f"{count:,} (exact)"


def cardinality_text(got: MatchResult) -> str:
    if got.fewer_than:
        return f"< {got.fewer_than}"
    if got.epsilon > 0:
        return noisy_text(got.cardinality, got.epsilon, got.within(SHOWN))
    return f"{got.cardinality:,} (exact)"


def sum_text(got: SumResult) -> str:
    if got.fewer_than:
        return f"fewer than {got.fewer_than} rows: no total"
    if got.epsilon > 0:
        return (f"{noisy_text(got.totals['amount_fen'], got.epsilon, got.within('amount_fen', SHOWN), ' fen')} "
                f"over {noisy_text(got.cardinality, got.epsilon, got.within(confidence=SHOWN), ' rows')}")
    return f"{got.totals['amount_fen']:,} over {got.cardinality:,} rows (exact)"


def counts_table(counts: list[tuple[str, int, int | FewerThan, int]]) -> Table:
    table = Table("dataset", "registered rows", "live count", "audit entry", title="Live row counts (signed tickets)")
    for name, registered, live, index in counts:
        table.add_row(name, f"{registered:,}", count_text(live), f"#{index}")
    return table


async def _check_health(address: str, tls: TlsFiles, server: Identity) -> None:
    async with secure_channel(address, tls, server) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise FailedPrecondition(f"{server} at {address} reports {reply.status}")


def _wait_for_interrupt(address: str, certs: Path, say: Callable[[str], None]) -> None:
    files = TlsFiles.in_dir(certs, SUPERVISOR)
    try:
        # Inside the try: a Ctrl-C right after the prompt is the normal way out too.
        say("servers keep running; as the demo supervisor, in another shell:\n"
            f"  export FEDGATE_GATEWAY={address} FEDGATE_CA={files.ca} FEDGATE_CERT={files.cert} "
            f"FEDGATE_KEY={files.key}\n  fedgate datasets\n"
            "press Ctrl-C (or send SIGTERM) to stop them")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("stopping")


class _TermAsInterrupt:
    """SIGTERM (systemd, `docker stop`, CI runners) ends the demo as Ctrl-C does: servers stopped in order.

    The servers run in sessions of their own, so a signal to the demo reaches only
    the demo; without this, SIGTERM would kill it at once and leave them all running.
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _TermAsInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    @staticmethod
    def _handle(signum: int, frame: object) -> None:
        # Once: a second SIGTERM must not interrupt the orderly stop the first one started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)


def run_demo(workdir: Path, rows: int = 10_000, seed: int = 20261129,
             say: Callable[[str], None] = print,
             show: Callable[[RenderableType], None] = print,
             keep_running: bool = False) -> DemoResult:
    """Run the whole demo; every server process is stopped on return, Ctrl-C and SIGTERM included.

    With `keep_running`, the servers stay up after the scenarios until Ctrl-C
    (or SIGTERM), so the CLI can be pointed at them.
    """
    with _TermAsInterrupt():
        return _run_demo(workdir, rows, seed, say, show, keep_running)


def _run_demo(workdir: Path, rows: int, seed: int, say: Callable[[str], None],
              show: Callable[[RenderableType], None], keep_running: bool) -> DemoResult:
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"generating demo data ({rows} rows per dataset, seed {seed}) in {workdir}")
    departments = generate(workdir, rows=rows, seed=seed)
    certs = workdir / "certs"
    pki.init_dir(certs, [Identity.department(d.code) for d in departments] + [SUPERVISOR, OFFICER])
    supervisor_tls = TlsFiles.in_dir(certs, SUPERVISOR)
    officer_tls = TlsFiles.in_dir(certs, OFFICER)
    officer_state = workdir / "officer-state"

    gateway_spec, department_specs = demo_specs(departments)
    deployment = Deployment(workdir, gateway_spec, with_approval_rule(department_specs))
    approver = approver_key(workdir)
    result = DemoResult(departments, [])
    try:
        deployment.start_gateway()
        address = deployment.address
        say(f"gateway up on {address}")
        deployment.start_adapters(timeout=60)
        say(f"{len(departments)} department adapters up and registered")

        async def check_and_list() -> list[RegisteredDataset]:
            await _check_health(address, supervisor_tls, GATEWAY)
            for dept in departments:
                await _check_health(f"127.0.0.1:{deployment.procs[dept.code].port}", supervisor_tls,
                                    Identity.department(dept.code))
            async with GatewayClient(address, supervisor_tls) as client:
                return await client.list_datasets()

        result.datasets = asyncio.run(check_and_list())
        show(datasets_table(result.datasets))

        async def count_all() -> None:
            async with GatewayClient(address, supervisor_tls) as client:
                for item in result.datasets:
                    name = item.decl.qualified_name
                    live, index = await client.count_rows(name, DEMO_PURPOSE, DEMO_CASE)
                    result.counts.append((name, item.decl.row_count, live, index))

        asyncio.run(count_all())
        show(counts_table(result.counts))

        async def graded_disclosure() -> None:
            async with GatewayClient(address, supervisor_tls) as client:
                closed, _ = await client.count_rows("samr.companies", DEMO_PURPOSE, DEMO_CASE,
                                                    filter="status in ('吊销', '注销')")
                result.closed_companies = closed
                try:
                    await client.disclose("hrss.pensions", ["resident_id"], DEMO_PURPOSE, DEMO_CASE, limit=5)
                except RemoteCallFailed as exc:
                    result.l4_refusal = str(exc)

        asyncio.run(graded_disclosure())
        # hrss's own rule holds its pension rows for its approval: held, approved, then collected.
        result.approval = asyncio.run(approved_disclosure(
            address, supervisor_tls, officer_tls, certs, approver,
            {"dataset": "hrss.pensions", "fields": ["name", "monthly_amount_fen", "last_paid_on"],
             "purpose": DEMO_PURPOSE, "case_number": DEMO_CASE, "limit": 5}))
        result.disclosed = result.approval.collected

        truth = json.loads((workdir / "ground_truth.json").read_text(encoding="utf-8"))

        async def scenarios() -> None:
            async with GatewayClient(address, supervisor_tls) as client:
                for s in SCENARIOS:
                    try:
                        got: MatchResult | str = await client.match(
                            left=Side(*s.left), right=Side(*s.right), purpose=DEMO_PURPOSE, case_number=DEMO_CASE,
                            mode=s.mode, disclose=s.disclose, limit=5)
                    except RemoteCallFailed as exc:  # e.g. a safeguard on a small demo
                        got = str(exc)
                    result.scenarios.append((s, got, s.expected(truth)))

        asyncio.run(scenarios())
        show(scenarios_table(result.scenarios))
        for s, got, _ in result.scenarios:
            if isinstance(got, MatchResult) and got.rows:
                show(matched_rows_table(s, got))

        async def cross_checks() -> None:
            async with GatewayClient(address, supervisor_tls, timeout=600) as client:
                await homomorphic_checks(client, result, truth)

        asyncio.run(cross_checks())
        show(checks_table(result.checks))
        if isinstance(result.overclaim, CompareResult) and result.overclaim.rows:
            show(rows_table(result.overclaim.fields, result.overclaim.rows,
                            f"hrss.subsidies: the {len(result.overclaim.rows)} flagged rows, masked by the "
                            "department as policy allows"))
        for line in approval_lines(result.approval):
            say(line)
        if result.disclosed:
            show(disclosure_table("hrss.pensions", result.disclosed))
        say(f"revoked or deregistered companies (samr.companies, filter on an L1 field): {count_text(result.closed_companies)}")
        say(f"asking for the L4 field hrss.pensions.resident_id is refused: {result.l4_refusal}")

        async def verify_and_find_trace() -> tuple[int, str]:
            vkey = read_vkey(workdir / "gateway-data" / "log-signing.vkey")
            async with GatewayClient(address, officer_tls) as client:
                report = await client.verify_log(vkey, TrustedState.load(officer_state))
                TrustedState(report.latest_note, report.leaf_hashes).save(officer_state)
                found = await client.search(case_number=DEMO_CASE, action="query.count", decision="allow",
                                            limit=1)
            return report.size, found[0][1].trace_id if found else ""

        result.subject = asyncio.run(overclaimer_report(workdir, address, officer_tls, result, truth))
        show(subject_table(result.subject))
        result.verified_size, result.trace_id = asyncio.run(verify_and_find_trace())
        say(f"security officer: audit log verified, {result.verified_size} entries, every checkpoint signed "
            f"by the pinned gateway key (state kept in {officer_state})")
        if keep_running:
            _wait_for_interrupt(address, certs, say)
    finally:
        # Adapters first, so none of them is left talking to a gateway that is gone. A SIGTERM
        # arriving now must not cut this short (the handler ignores any after the first).
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        result.exit_codes = deployment.stop()
    unclean = deployment.unclean()
    if unclean:
        raise unclean
    # A refusal (a safeguard on a small demo) is not a wrong answer; a different answer is.
    wrong = [s.title for s, got, expected in result.scenarios
             if isinstance(got, MatchResult) and not agrees(got.cardinality, expected, got.within(CHECKED))]
    wrong += [question for question, _, _, ok in result.checks if ok is False]
    if result.subject is not None and not result.subject.ok:
        wrong.append(f"subject report on {result.subject.masked}")
    if wrong:
        raise FailedPrecondition(f"answers differ from the generator's ground truth: {'; '.join(wrong)}")
    # Spans are flushed when the servers stop, so the trace is read afterwards.
    spans = load_trace(sorted(workdir.rglob("spans.db")), result.trace_id) if result.trace_id else []
    if spans:
        result.trace_services = {s.service for s in spans}
        say(f"trace {result.trace_id} of the latest query, from the gateway's and the adapter's span stores "
            f"(`fedgate trace show {result.trace_id} --store {workdir}`):")
        show(render_tree(spans))
    return result


__all__ = ["run_demo", "DemoResult", "SUPERVISOR", "OFFICER"]
