"""The demo's department-side steps: hrss approves a held disclosure, and reports on one over-claimer's record.

hrss declares a rule of its own in its adapter TOML: rows of its pensions
leave only with the approval of one of its approvers. The demo's graded
disclosure is therefore held; hrss reads its queue, its approver signs, and
the supervisor collects the answer. At the end, hrss's data office makes a
subject report for one planted over-claimer, from its adapter's own store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.markup import escape
from rich.table import Table

from fedgate.adapters.config import AdapterConfig
from fedgate.adapters.disclosure_log import read_disclosures
from fedgate.adapters.subject_report import SubjectReport, make_report
from fedgate.client.approvals import Collect, HeldForApproval, held_summary, minute_utc
from fedgate.client.gateway import Disclosure, GatewayClient
from fedgate.core.errors import FailedPrecondition
from fedgate.core.identity import Identity
from fedgate.demo.deployment import DepartmentSpec
from fedgate.server.signing_key import load_or_create
from fedgate.server.tls import TlsFiles

APPROVING = "hrss"
APPROVER = "hrss-zhang"
APPROVAL_RULE = "pension-rows-need-approval"
# Paths relative to the adapter TOML, which the demo writes into its working directory.
APPROVAL_TABLES = f"""
[approvals]
keys = ["approvers/{APPROVER}.vkey"]
ttl_hours = 72

[[rules]]
name = "{APPROVAL_RULE}"
effect = "approve"
kinds = ["disclose"]
datasets = ["pensions"]
forms = ["plaintext", "masked"]
approvers = 1
"""


def approver_key(workdir: Path) -> Ed25519PrivateKey:
    """hrss's approver's signing key, with the verifier key its adapter TOML names beside it."""
    return load_or_create(workdir / "approvers" / f"{APPROVER}.key", APPROVER)


def with_approval_rule(specs: Sequence[DepartmentSpec]) -> tuple[DepartmentSpec, ...]:
    """The demo's adapters, hrss with its approval rule and approver key."""
    return tuple(replace(s, tables=APPROVAL_TABLES) if s.code == APPROVING else s for s in specs)


@dataclass
class Approval:
    """What the demo saw of one held request, from the hold to the collected answer."""

    query_id: str = ""
    held_index: int = 0
    rule: str = ""
    expires: str = ""
    queued: dict[str, Any] = field(default_factory=dict)  # held_summary of the department's queue line
    state: str = ""  # after the decision: approved
    decide_index: int = 0  # the approval.decide entry in the audit log (0: not found)
    collected: Disclosure | None = None


async def approved_disclosure(address: str, supervisor: TlsFiles, officer: TlsFiles, certs: Path, key: Ed25519PrivateKey,
                              ask: dict[str, Any]) -> Approval:
    """Ask for `ask` (GatewayClient.disclose's arguments), expect it held; hrss approves; the supervisor collects."""
    out = Approval()
    try:
        async with GatewayClient(address, supervisor) as client:
            await client.disclose(**ask)
        raise FailedPrecondition(f"{ask['dataset']} rows were served without {APPROVING}'s approval")
    except HeldForApproval as exc:
        held = exc
    out.query_id = held.query_id
    async with GatewayClient(address, TlsFiles.in_dir(certs, Identity.department(APPROVING))) as dept:
        (h,) = [q for q in await dept.held_requests() if q.query_id == held.query_id]
        out.queued = held_summary(h, APPROVING)
        out.held_index, out.expires = h.entry_index, minute_utc(h.expires_at) + " UTC"
        out.rule = "; ".join(n.rule for n in h.needs)
        note = h.sign(APPROVING, "approve", APPROVER, key, int(time.time()), 600)
        out.state = (await dept.decide(h.query_id, note, "case file DEMO-2026-001 checked")).state
    async with GatewayClient(address, officer) as client:
        found = await client.search(action="approval.decide", decision="allow", limit=1)
        out.decide_index = found[0][0] if found else 0
    async with GatewayClient(address, supervisor, collect=Collect(held.query_id, held.nonces)) as client:
        out.collected = await client.disclose(**ask)
    return out


def approval_lines(a: Approval) -> list[str]:
    """The approval step, one line per actor."""
    q = a.queued
    supervisor = q["supervisor"].split("://", 1)[-1].split("/", 1)[-1]
    return [
        f"held: query {a.query_id} (audit entry #{a.held_index}): {a.rule}; expires {a.expires}",
        f"{APPROVING}'s queue: {supervisor} asks for {', '.join(q['fields'])} "
        f"({q['kind']}, limit {q['limit']}) for \"{q['purpose']}\" / {q['case_number']}",
        f"approved by {APPROVER} (signed note, audit entry #{a.decide_index}): request {a.state}",
        f"supervisor collects query {a.query_id}: "
        + (f"{len(a.collected.rows)} rows served under entry #{a.collected.audit_index}" if a.collected else "nothing"),
    ]


# One answer in a subject report, as the demo checks it: query id, kind, case, and whether the record left as
# rows (None: not checked, for a query refused to the supervisor after the department served its side).
Use = tuple[str, str, str, bool | None]


@dataclass
class SubjectCheck:
    """One over-claimer's subject report beside the demo's own queries that covered its record."""

    masked: str
    report: SubjectReport
    expected: list[Use]
    got: list[Use]  # the same of the report's entries

    @property
    def ok(self) -> bool:
        return len(self.got) == len(self.expected) and all(
            g[:3] == e[:3] and e[3] in (None, g[3]) for g, e in zip(self.got, self.expected))


def served_by_department(workdir: Path, answered: set[str], timeout_s: float = 10.0) -> set[str]:
    """The query ids hrss's own log records as served, once it records each of `answered` so.

    A matching side records its use, then `served`, as its session ends, which may be just after the
    supervisor has the answer.
    """
    log = hrss_config(workdir).data_dir / "disclosures.db"
    deadline = time.monotonic() + timeout_s
    while True:
        served = {d.query_id for d in read_disclosures(log) if d.decision == "served"}
        if answered <= served or time.monotonic() > deadline:
            return served
        time.sleep(0.05)


def hrss_config(workdir: Path) -> AdapterConfig:
    return AdapterConfig.load(workdir / f"adapter-{APPROVING}.toml")


def subject_report(workdir: Path, identifier: str, masked: str, expected: list[Use]) -> SubjectCheck:
    """hrss's report on `identifier` in hrss.subsidies, made from its adapter's store, beside `expected`."""
    report = make_report(hrss_config(workdir), identifier, "hrss.subsidies")
    got: list[Use] = [(e.query_id, e.kind, e.case_number, e.disclosed) for e in report.entries]
    return SubjectCheck(masked, report, expected, got)


def subject_table(check: SubjectCheck) -> Table:
    agrees = "exactly the demo's queries on it ✓" if check.ok else "NOT the demo's queries on it ✗"
    table = Table("time (UTC)", "agency", "case", "kind", "form",
                  title=f"Subject report by {APPROVING}'s data office on planted over-claimer {check.masked} "
                        f"(hrss.subsidies): {len(check.report.entries)} answers used its record, {agrees}")
    for e in check.report.entries:
        # The form without its explanation, to fit: "sum input (encrypted)" -> "sum input".
        form = e.form if e.disclosed else e.form.split(" (")[0]
        table.add_row(e.time.split("T")[-1][:8], escape(e.agency), escape(e.case_number), e.kind, escape(form))
    return table
