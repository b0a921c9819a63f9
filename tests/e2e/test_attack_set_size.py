"""Issue 14 (1), attacked end to end: a curious supervisor, default policy, demo data, real servers.

Each test runs the singling-out attack as a determined supervisor would and
asserts what the attacker concludes is wrong or absent: complement counts with
bisection, zero against "suppressed", a padded filter, a one-pair comparison,
and bisection over the comparison weights.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import support
from fedgate.client.gateway import FewerThan, GatewayClient, Side
from fedgate.core.errors import RemoteCallFailed
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.demo.datagen import generate
from fedgate.core.identity import Identity, Role
from fedgate.server import pki
from fedgate.server.tls import TlsFiles

ROWS = 1000
WHY = ("核查养老金发放", "DC-2026-214")
ABSENT = "查无此人"
OTHER_AGENCY = Identity(Role.SUPERVISOR, "nao", "dave")


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("attack-set-size")
    departments = generate(workdir, rows=ROWS, seed=17)
    return workdir, departments, json.loads((workdir / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def key() -> SupervisorKey:
    return SupervisorKey.generate()


async def _deploy(servers, demo_data, codes: tuple[str, ...]):
    workdir, departments, _ = demo_data
    gw = await servers.gateway(workdir / f"gateway-{'-'.join(codes)}")
    await servers.demo_adapters(gw, workdir, departments, codes)
    return gw


def _client(servers, gw, who=support.SUPERVISOR) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, who), timeout=120)


def _csv(workdir: Path, dept: str, name: str) -> list[dict[str, str]]:
    with (workdir / "data" / dept / f"{name}.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _quoted(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _target(workdir: Path) -> dict[str, str]:
    """A pensioner whose name is unique in the pensions and who is in the death records (the secret to learn)."""
    pensions = _csv(workdir, "hrss", "pensions")
    dead = {r["name"] for r in _csv(workdir, "civil", "deaths")}
    names = [r["name"] for r in pensions]
    return next(r for r in pensions if names.count(r["name"]) == 1 and r["name"] in dead)


async def _answer(ask: Callable[[], Awaitable[object]]) -> object:
    """What the attacker sees: the answer, or the refusal's code (its text is the same whatever the data)."""
    try:
        return await ask()
    except RemoteCallFailed as exc:
        return ("refused", exc.code)


async def _bisect(probe: Callable[[int], Awaitable[bool | None]], lo: int, hi: int) -> tuple[int, int]:
    """The attacker's bisection for the largest T with probe(T) true; returns it and how many probes answered."""
    answered = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        bit = await probe(mid)
        answered += bit is not None
        lo, hi = (mid, hi) if bit else (lo, mid - 1)
    return lo, answered


async def test_complement_counts_and_their_bisection_recover_nothing(servers, demo_data) -> None:
    workdir, _, _ = demo_data
    target = _target(workdir)
    name, amount = target["name"], int(target["monthly_amount_fen"])
    gw = await _deploy(servers, demo_data, ("hrss",))
    async with _client(servers, gw) as c:
        whole, _ = await c.count_rows("hrss.pensions", *WHY)
        # Membership by complement: N minus count(not name = X) would be 1 for a member, 0 otherwise.
        present = await _answer(lambda: c.count_rows("hrss.pensions", *WHY, filter=f"not name = '{name}'"))
        absent = await _answer(lambda: c.count_rows("hrss.pensions", *WHY, filter=f"not name = '{ABSENT}'"))

        async def complement_probe(t: int) -> bool | None:
            got = await _answer(lambda: c.count_rows(
                "hrss.pensions", *WHY, filter=f"not (name = '{name}' and monthly_amount_fen >= {t})"))
            return None if isinstance(got, tuple) else got[0] == whole - 1  # type: ignore[index]

        async def direct_probe(t: int) -> bool | None:
            got = await _answer(lambda: c.count_rows(
                "hrss.pensions", *WHY, filter=f"name = '{name}' and monthly_amount_fen >= {t}"))
            rows = None if isinstance(got, tuple) else got[0]  # type: ignore[index]
            return None if rows is None or isinstance(rows, FewerThan) else rows >= 1

        by_complement, complement_answers = await _bisect(complement_probe, 0, 1_000_000)
        by_count, count_answers = await _bisect(direct_probe, 0, 1_000_000)
        # A match side can be a complement too: its row count is in the result.
        side = await _answer(lambda: c.match(left=Side("hrss.pensions", "resident_id", f"not name = '{name}'"),
                                             right=Side("hrss.pensions", "resident_id"), purpose=WHY[0],
                                             case_number=WHY[1]))
    assert present == absent == ("refused", "FAILED_PRECONDITION")
    assert complement_answers == 0 and count_answers == 0  # not one probe told the attacker anything
    assert by_complement != amount and by_count != amount  # the bisection's conclusion is wrong
    assert side == ("refused", "FAILED_PRECONDITION")


async def test_zero_and_a_suppressed_count_are_the_same_answer(servers, demo_data) -> None:
    workdir, _, _ = demo_data
    name = _target(workdir)["name"]
    gw = await _deploy(servers, demo_data, ("hrss",))
    async with _client(servers, gw) as c:
        present, _ = await c.count_rows("hrss.pensions", *WHY, filter=f"name = '{name}'")
        absent, _ = await c.count_rows("hrss.pensions", *WHY, filter=f"name = '{ABSENT}'")
    # name is L3 (min_aggregate 5): one row and no row both read "fewer than 5", never 1 or 0.
    assert present == absent == FewerThan(5)


async def test_a_padded_filter_does_not_single_out_a_death(servers, demo_data) -> None:
    workdir, _, _ = demo_data
    target = _target(workdir)
    dead = {r["name"] for r in _csv(workdir, "civil", "deaths")}
    pensions = _csv(workdir, "hrss", "pensions")
    alive = next(r for r in pensions if r["name"] not in dead and r["name"] != target["name"])
    # 150 other pensioners none of whom is in the death records: the padding that passes min_set_size (100).
    padding = [r["name"] for r in pensions if r["name"] not in dead and r["name"] != alive["name"]][:150]
    gw = await _deploy(servers, demo_data, ("hrss", "civil"))
    answers = []
    # One agency asking both would be refused its second match by the department's difference check (the two
    # left sets differ by two rows: tests/e2e/test_attack_differencing.py); here each padded query is judged
    # alone, so each person is asked about by a supervisor of a different agency.
    pki.init_dir(servers.certs, [OTHER_AGENCY])
    for person, who in ((target, support.SUPERVISOR), (alive, OTHER_AGENCY)):
        async with _client(servers, gw, who) as c:
            got = await c.match(left=Side("hrss.pensions", "resident_id",
                                          f"name = '{person['name']}' or name in ({_quoted(padding)})"),
                                right=Side("civil.deaths", "resident_id"), purpose=WHY[0], case_number=WHY[1],
                                disclose=["name"])
            answers.append((got.cardinality, got.fewer_than, got.rows))
    # The dead target would have matched once, the living one never: the answers are the same.
    assert answers[0] == answers[1] == (0, 10, [])  # resident_id is L4: "fewer than 10", nothing disclosed


def _tax_usccs(workdir: Path) -> list[str]:
    db = sqlite3.connect(workdir / "data" / "tax" / "tax.db")
    try:
        return [u for (u,) in db.execute("SELECT uscc FROM insured_employees")]
    finally:
        db.close()


async def test_a_one_pair_comparison_is_refused(servers, demo_data, key) -> None:
    workdir, _, _ = demo_data
    subsidies = [r["uscc"] for r in _csv(workdir, "hrss", "subsidies")]
    tax = _tax_usccs(workdir)
    target = next(u for u in subsidies if u in tax and subsidies.count(u) == 1 and tax.count(u) == 1)
    # Disjoint padding on each side: the sides pass min_set_size, and only the target's pair matches.
    left_pad = [u for u in subsidies if u != target][:120]
    right_pad = [u for u in tax if u != target and u not in left_pad][:120]
    assert not set(left_pad) & set(right_pad)
    gw = await _deploy(servers, demo_data, ("hrss", "tax"))
    async with _client(servers, gw) as c:
        got = await _answer(lambda: c.compare(
            left=Side("hrss.subsidies", "uscc", f"uscc = '{target}' or uscc in ({_quoted(left_pad)})"),
            left_value="claimed_insured",
            right=Side("tax.insured_employees", "uscc", f"uscc = '{target}' or uscc in ({_quoted(right_pad)})"),
            right_value="insured_employees", purpose=WHY[0], case_number=WHY[1], key=key))
    assert got == ("refused", "FAILED_PRECONDITION")  # one pair < min_aggregate 5 (L3): no flag computed


async def test_bisecting_the_comparison_weights_is_refused_and_audited(servers, demo_data, key) -> None:
    workdir, _, truth = demo_data
    gw = await _deploy(servers, demo_data, ("hrss", "tax"))
    refusals: list[object] = []
    async with _client(servers, gw) as c:
        async def probe(a: int) -> bool | None:
            # Is claimed_insured·a > insured_employees·100 for the pairs? The attacker chooses a.
            got = await _answer(lambda: c.compare(
                left=Side("hrss.subsidies", "uscc"), left_value="claimed_insured",
                right=Side("tax.insured_employees", "uscc"), right_value="insured_employees",
                purpose=WHY[0], case_number=WHY[1], weights=(a, 100), key=key))
            if isinstance(got, tuple):
                refusals.append(got)
                return None
            return bool(got.flagged)  # type: ignore[attr-defined]

        ratio, answered = await _bisect(probe, 1, 1000)
        allowed = await c.compare(left=Side("hrss.subsidies", "uscc"), left_value="claimed_insured",
                                  right=Side("tax.insured_employees", "uscc"), right_value="insured_employees",
                                  purpose=WHY[0], case_number=WHY[1], weights=(2, 2), key=key)
    assert answered == 0 and refusals and set(refusals) == {("refused", "PERMISSION_DENIED")}
    assert ratio == 1  # the bisection ran to its floor: it learnt nothing
    assert allowed.pairs == truth["overclaim"]["compared_rows"]  # 2:2 is 1:1, which the policy allows
    async with _client(servers, gw, support.OFFICER) as c:
        # The module's tests share one gateway log: its earlier one-pair comparison is a FAILED_PRECONDITION.
        denied = [e for _, e in await c.search(action="query.compare", limit=50)
                  if e.decision == "deny" and e.status == "PERMISSION_DENIED"]
    # Every refused probe is in the log, with the weights asked for and the rule that was missing.
    assert len(denied) == len(refusals), [(e.decision, e.reason) for e in denied]
    assert all("compare.weights" in e.reason + e.rule for e in denied), [(e.reason, e.rule) for e in denied]
