"""Issue 14, part 3: a supervisor repeating one count to average its noise away runs out of privacy budget first.

Against real servers with the SHIPPED DP policy (levels.toml): `amount_fen` is L3, so a count filtered on it
is answered with discrete Laplace noise of ε 0.25 (scale 4), out of a budget of ε 1.0 per agency, dataset and
month. alice and bob, two supervisors of one agency, take turns asking `amount_fen >= 11000` (truly 10 rows):
together they get four noisy answers, then every further one is refused. Four draws of scale-4 noise leave
their average's standard error at √2·4/√4 ≈ 2.8: the attackers cannot pin the count to ±1. carol, of another
agency, has her own budget; an unfiltered count (the dataset's public size) stays exact and free.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import support
from deployment import Deployment, deployed
from fedgate.client.gateway import GatewayClient, MatchResult, NoisyCount, Side, SumResult
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.classification import default_levels
from fedgate.core.errors import RemoteCallFailed
from fedgate.core.identity import Identity, Role
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.gateway.budget import period_of
from fedgate.server import pki
from fedgate.server.tls import TlsFiles

ALICE = support.SUPERVISOR  # supervisor/dcb/alice
BOB = Identity(Role.SUPERVISOR, "dcb", "bob")
CAROL = Identity(Role.SUPERVISOR, "nao", "carol")
WHY = ("核查", "DP-1")
PROBE = "amount_fen >= 11000"
TRUTH = 10
L3 = default_levels().dp_for("hrss.subsidies", "L3")
T = TypeVar("T")


def _client(d: Deployment, who: Identity) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{d.gateway.port}", TlsFiles.in_dir(d.certs, who))


async def _colleagues_take_turns(d: Deployment, ask: Callable[[GatewayClient], Awaitable[T]],
                                 turns: int = 8) -> tuple[list[T], list[str]]:
    """bob and alice (one agency) take turns asking the same question; their answers, and the refusals'
    details (each must be the budget's RESOURCE_EXHAUSTED)."""
    answers: list[T] = []
    refusals: list[str] = []
    async with _client(d, ALICE) as alice, _client(d, BOB) as bob:
        for turn in range(turns):
            try:
                answers.append(await ask(alice if turn % 2 else bob))
            except RemoteCallFailed as exc:
                assert exc.code == "RESOURCE_EXHAUSTED", exc
                refusals.append(exc.details)
    return answers, refusals


async def _average_away(d: Deployment) -> tuple[list[NoisyCount], list[str]]:
    """alice and bob take turns repeating the count, twice as often as the budget allows."""
    answers, refusals = await _colleagues_take_turns(
        d, lambda c: c.count_rows("hrss.subsidies", *WHY, PROBE))
    counts = [a.rows for a in answers]
    assert all(isinstance(c, NoisyCount) and c.epsilon == L3.epsilon for c in counts), counts
    return counts, refusals  # type: ignore[return-value]


async def _others(d: Deployment) -> tuple[NoisyCount, int]:
    async with _client(d, CAROL) as carol, _client(d, ALICE) as alice:
        theirs = (await carol.count_rows("hrss.subsidies", *WHY, PROBE)).rows
        public = (await alice.count_rows("hrss.subsidies", *WHY)).rows
    assert isinstance(theirs, NoisyCount) and isinstance(public, int)
    return theirs, public


async def _entries(d: Deployment) -> list[AuditEntry]:
    async with _client(d, support.OFFICER) as officer:
        return [e.entry for e in await officer.search(action="query.count", limit=10_000)]


def test_averaging_a_noisy_count_runs_out_of_budget_before_it_pins_the_truth(tmp_path: Path) -> None:
    assert L3.noisy and L3.epsilon == 0.25 and L3.budget == 1.0  # the shipped default this test attacks
    with deployed(tmp_path, noisy=True) as d:
        pki.init_dir(d.certs, [BOB, CAROL])
        answers, refusals = asyncio.run(_average_away(d))

        # The budget is the agency's, not each supervisor's: two colleagues get budget/ε answers in all.
        assert len(answers) == round(L3.budget / L3.epsilon) == 4
        renews = period_of("month", dt.datetime.now(dt.UTC))[1].isoformat()
        assert all(f"privacy budget for dataset hrss.subsidies used up until {renews}" in r for r in refusals)
        # What the attackers learned: four draws of scale 1/ε. Their average's standard error stays above 1,
        # so ±1 of the truth is out of reach; and the answers are noise, not the count (all four exact: p≈2e-4).
        assert math.sqrt(2) / L3.epsilon / math.sqrt(len(answers)) > 2.5
        assert any(a != TRUTH for a in answers), answers
        assert all(a >= 0 for a in answers)

        theirs, public = asyncio.run(_others(d))
        assert public == 20 and not isinstance(public, NoisyCount)  # unfiltered: the public size, exact

        entries = asyncio.run(_entries(d))
        dcb = [e for e in entries if e.subject in (ALICE.spiffe_id, BOB.spiffe_id)]
        charged = [dict(e.result_sizes) for e in dcb if e.status == "OK" and "dp_epsilon_micro" in dict(e.result_sizes)]
        assert [s["dp_epsilon_micro"] for s in charged] == [250_000] * 4
        assert sorted(s["dp_epsilon_left_micro"] for s in charged) == [0, 250_000, 500_000, 750_000]
        assert len([e for e in dcb if e.status == "RESOURCE_EXHAUSTED"]) == 4
        nao = [dict(e.result_sizes) for e in entries if e.subject == CAROL.spiffe_id and e.status == "OK"]
        assert [s.get("dp_epsilon_left_micro") for s in nao] == [750_000]  # carol's agency: its own budget

        out = d.fedgate("query", "count", "hrss.subsidies", "--purpose", WHY[0], "--case", WHY[1], "--filter", PROBE,
                        "--json", who=CAROL)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["epsilon"] == L3.epsilon

        # `fedgate budget show`: every agency's use for an officer, its own agency's for a supervisor.
        shown = d.fedgate("budget", "show", "--json", who=support.OFFICER)
        assert shown.returncode == 0, shown.stderr
        rows = {(r["agency"], r["dataset"]): r for r in json.loads(shown.stdout)}
        assert rows[("dcb", "hrss.subsidies")]["spent"] == rows[("dcb", "hrss.subsidies")]["budget"] == 1.0
        assert rows[("nao", "hrss.subsidies")]["spent"] == 0.5
        own = d.fedgate("budget", "show", "--json", who=BOB)
        assert own.returncode == 0, own.stderr
        assert {r["agency"] for r in json.loads(own.stdout)} == {"dcb"}
        table = d.fedgate("budget", "show", who=CAROL)
        assert table.returncode == 0 and "hrss.subsidies" in table.stdout and "0.5" in table.stdout, table.stdout


# --- sums and match cardinalities (noisy under the same policy) ---

TARGET, KNOWN = 5, (6, 7)           # support.uscc(i) has amount_fen 1000·i in hrss.subsidies
SUM_BOUND = 50_000                  # amount_fen's declared bounds: 0..50000 (support.SUBSIDIES_DECL)


def _leave_out(*companies: int) -> str:
    return "not uscc in (" + ", ".join(f"'{support.uscc(i)}'" for i in companies) + ")"


async def _sum_attack(d: Deployment, who: Identity) -> tuple[list[object], list[str]]:
    """Past the difference check: the total over every company, then without the target and two companies
    whose amounts the attacker knows (3 rows apart: k = 3 here), alternately until the budget refuses."""
    key = SupervisorKey.generate()
    answers: list[object] = []
    refusals: list[str] = []
    async with _client(d, who) as c:
        for turn in range(8):
            other = Side("samr.companies", "uscc", "" if turn % 2 == 0 else _leave_out(TARGET, *KNOWN))
            try:
                answers.append(await c.intersection_sum(values=Side("hrss.subsidies", "uscc"),
                                                        value_fields=["amount_fen"], other=other,
                                                        purpose=WHY[0], case_number=WHY[1], key=key))
            except RemoteCallFailed as exc:
                assert exc.code == "RESOURCE_EXHAUSTED", exc
                refusals.append(exc.details)
    return answers, refusals


def _recovered(answers: list[object]) -> float:
    """The attacker's estimate of the target's amount: mean(all) − mean(without) − the known amounts."""
    totals = [a.totals["amount_fen"] for a in answers]  # type: ignore[attr-defined]
    whole, without = totals[0::2], totals[1::2]
    return sum(whole) / len(whole) - sum(without) / len(without) - sum(1000 * i for i in KNOWN)


def test_differencing_noisy_sums_recovers_nothing_and_the_budget_bounds_the_averaging(tmp_path: Path) -> None:
    # min_set_size 3: the two sets differ by 3 rows, so the difference check (k = 3) lets the pair through,
    # and only the noise stands between the attacker and the target's amount.
    with deployed(tmp_path, safeguards="min_set_size = 3\n", noisy=True) as d:
        answers, refusals = asyncio.run(_sum_attack(d, ALICE))
        assert len(answers) == 4 and len(refusals) == 4  # ε 0.25 per answer out of 1.0, on each dataset
        first = answers[0]
        assert isinstance(first, SumResult)
        # Each of the answer's two numbers (cardinality, total) gets half of its ε.
        assert first.epsilon == L3.epsilon / 2 and first.sensitivity == {"amount_fen": SUM_BOUND}
        # The sides' own counts would be exact: withheld.
        assert (first.values.rows, first.other.rows, first.distinct_matches) == (0, 0, 0)
        truth = 1000 * TARGET
        recovered = _recovered(answers)
        # Noise of scale 50000/0.125 = 400,000 fen on each total: the attacker's estimate is not the amount
        # (equal by chance with probability about 1e-6) and its standard error dwarfs every amount there is.
        assert recovered != truth
        assert math.sqrt(2) * SUM_BOUND / first.epsilon > 100 * truth
        assert first.within("amount_fen") > 20 * SUM_BOUND  # what the supervisor is told about the error

        # The officer's record: the exact cardinality, ε spent on the answer; never the noise.
        entries = asyncio.run(_sum_entries(d))
        ok = [dict(e.result_sizes) for e in entries if e.status == "OK"]
        assert sorted(s["cardinality"] for s in ok) == [11, 11, 14, 14]
        assert all(s["dp_epsilon_micro"] == 250_000 for s in ok)
        assert all(dict(e.params)["noise_epsilon_micro"] == "125000" for e in entries if e.status == "OK")
        assert all(dict(e.params)["bounds.left.hrss.subsidies"] == f"amount_fen:0:{SUM_BOUND}"
                   for e in entries if e.status == "OK")


def test_the_same_sum_attack_on_exact_answers_recovers_the_amount(tmp_path: Path) -> None:
    """The control: with every aggregate exact, the very same queries give the target's amount away."""
    with deployed(tmp_path, safeguards="min_set_size = 3\n", noisy=False) as d:
        answers, refusals = asyncio.run(_sum_attack(d, ALICE))
    assert len(answers) == 8 and not refusals
    assert _recovered(answers) == 1000 * TARGET


async def _sum_entries(d: Deployment) -> list[AuditEntry]:
    async with _client(d, support.OFFICER) as officer:
        return [e.entry for e in await officer.search(action="query.sum", limit=1000)]


async def _repeat_match(d: Deployment) -> tuple[list[MatchResult], list[str]]:
    return await _colleagues_take_turns(d, lambda c: c.match(
        left=Side("hrss.subsidies", "uscc"), right=Side("samr.companies", "uscc"), purpose=WHY[0],
        case_number=WHY[1]))


def test_averaging_a_noisy_match_cardinality_runs_out_of_budget(tmp_path: Path) -> None:
    with deployed(tmp_path, safeguards="min_set_size = 3\n", noisy=True) as d:
        pki.init_dir(d.certs, [BOB, CAROL])
        answers, refusals = asyncio.run(_repeat_match(d))
        # What the CLI tells a supervisor of another agency: the ε and how far the answer may be off.
        shown = d.fedgate("query", "match", "hrss.subsidies.uscc", "samr.companies.uscc", "--purpose", WHY[0],
                          "--case", WHY[1], "--json", who=CAROL)
        assert shown.returncode == 0, shown.stderr
        got = json.loads(shown.stdout)
        assert (got["epsilon"], got["within_95"], got["left"]["rows"]) == (L3.epsilon, 12, 0)
        summed = d.fedgate("query", "sum", "hrss.subsidies.uscc", "samr.companies.uscc", "--field", "amount_fen",
                           "--purpose", WHY[0], "--case", WHY[1], who=CAROL)
        assert summed.returncode == 0, summed.stderr
        assert "noisy, ε 0.125" in summed.stdout and "clamped to ±50,000 a row" in summed.stdout, summed.stdout
    assert len(answers) == 4 and len(refusals) == 4  # two colleagues, one agency budget
    assert all(a.epsilon == L3.epsilon for a in answers)
    # The exact cardinality is 14; the sides' counts and the distinct matches would each give it away.
    assert all((a.left.rows, a.right.rows, a.left.tokens, a.right.tokens, a.distinct_matches) == (0, 0, 0, 0, 0)
               for a in answers)
    assert any(a.cardinality != 14 for a in answers)  # all four exact by chance: p ≈ 2e-4
    assert math.sqrt(2) / L3.epsilon / math.sqrt(len(answers)) > 2.5
