"""Issue 14 (2), attacked end to end: differencing two answers whose row sets differ by one person.

A curious supervisor asks for an aggregate over a large set, then for the same
set without one person P: the difference of the answers would be P's
membership (or P's value). Each department keeps, per asking agency and
dataset, the row sets it answered, and refuses an answer whose set differs from
an earlier one by at least one and fewer than k rows. The attacker's second
answer never comes, so the subtraction cannot be made; a second supervisor of
the same agency fares no better; another agency is not affected (collusion
across agencies is differential privacy's job: docs/privacy.md). A dataset
joined with itself needs no second department: its department checks both sides
and the matched rows, so neither two self-joins one person apart, nor two whose
sides are far apart but whose matched rows are not, nor one whose own counts
would single a person out, can be subtracted. Real servers, demo data, the
default policy (answers exact, as the test deployment sets every level).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import support
from fedgate.adapters.server import Adapter
from fedgate.client.gateway import GatewayClient, Side
from fedgate.core.errors import InvalidIdentifier, RemoteCallFailed
from fedgate.core.identity import Identity, Role
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.crypto.ids import normalise
from fedgate.demo.datagen import generate
from fedgate.server import pki
from fedgate.server.tls import TlsFiles

ROWS = 1000
WHY = ("核查养老金发放", "DC-2026-310")
REFUSED = ("refused", "FAILED_PRECONDITION")
ALICE = support.SUPERVISOR                          # supervisor/dcb/alice
BOB = Identity(Role.SUPERVISOR, "dcb", "bob")       # the same agency
CAROL = Identity(Role.SUPERVISOR, "nao", "carol")   # another agency


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("attack-differencing")
    departments = generate(workdir, rows=ROWS, seed=23)
    return workdir, departments, json.loads((workdir / "ground_truth.json").read_text())


async def _deploy(servers, demo_data, codes: tuple[str, ...]):
    workdir, departments, _ = demo_data
    pki.init_dir(servers.certs, [BOB, CAROL])
    gw = await servers.gateway(workdir / f"gateway-{'-'.join(codes)}-{len(servers.gateways)}")
    adapters = await servers.demo_adapters(gw, workdir, departments, codes)
    return gw, adapters


def _client(servers, gw, who: Identity = ALICE) -> GatewayClient:
    return GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, who), timeout=120)


def _csv(workdir: Path, dept: str, name: str) -> list[dict[str, str]]:
    with (workdir / "data" / dept / f"{name}.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


async def _answer(ask: Callable[[], Awaitable[object]]) -> object:
    """What the attacker sees: the answer, or the refusal's code."""
    try:
        return await ask()
    except RemoteCallFailed as exc:
        return ("refused", exc.code)


def _split(workdir: Path) -> tuple[int, str]:
    """A threshold selecting about half the pensioners, and a pensioner above it with a unique name (P)."""
    pensions = _csv(workdir, "hrss", "pensions")
    amounts = sorted(int(r["monthly_amount_fen"]) for r in pensions)
    threshold = amounts[len(amounts) // 2]
    names = [r["name"] for r in pensions]
    target = next(r["name"] for r in pensions
                  if int(r["monthly_amount_fen"]) >= threshold and names.count(r["name"]) == 1)
    return threshold, target


def _refusals(adapter: Adapter) -> list[str]:
    return [d.reason for d in adapter.disclosures.disclosures() if d.decision in ("refused", "stopped")
            and "safeguard difference" in d.reason]


async def test_two_counts_one_person_apart_cannot_be_subtracted(servers, demo_data) -> None:
    workdir, _, _ = demo_data
    threshold, target = _split(workdir)
    gw, adapters = await _deploy(servers, demo_data, ("hrss",))
    base = f"monthly_amount_fen >= {threshold}"
    async with _client(servers, gw) as alice:
        whole = (await alice.count_rows("hrss.pensions", *WHY, filter=base)).rows
        without = await _answer(lambda: alice.count_rows("hrss.pensions", *WHY, filter=f"{base} and not name = "
                                                         f"'{target}'"))
        # With a name that is not in the set, the set is the same under another filter: refused as well,
        # or answered-against-refused would itself tell whether the target is in the set.
        absent = await _answer(lambda: alice.count_rows("hrss.pensions", *WHY, filter=f"{base} and not name = "
                                                        "'查无此人'"))
        repeat = (await alice.count_rows("hrss.pensions", *WHY, filter=base)).rows
        # Legitimate varied work: sets at least k = min_aggregate (5) rows apart are answered.
        lower = (await alice.count_rows("hrss.pensions", *WHY, filter=f"monthly_amount_fen >= {threshold - 50_000}"))
        upper = (await alice.count_rows("hrss.pensions", *WHY, filter=f"monthly_amount_fen >= {threshold + 50_000}"))
    assert isinstance(whole, int) and whole >= 100
    assert without == absent == REFUSED  # whole − count(without P) would be P's membership: never answered
    assert repeat == whole  # the same query again is answered, the same
    assert isinstance(lower.rows, int) and isinstance(upper.rows, int) and upper.rows < whole < lower.rows
    assert len(_refusals(adapters["hrss"])) == 2  # each refusal is in the department's own log


async def _split_by_two(servers, demo_data, second: Identity) -> tuple[object, object, Adapter]:
    """Alice counts a large set; `second` counts the same set without P. Both answers, and the department."""
    workdir, _, _ = demo_data
    threshold, target = _split(workdir)
    gw, adapters = await _deploy(servers, demo_data, ("hrss",))
    base = f"monthly_amount_fen >= {threshold}"
    async with _client(servers, gw, ALICE) as alice:
        whole = (await alice.count_rows("hrss.pensions", *WHY, filter=base)).rows
    async with _client(servers, gw, second) as other:
        without = await _answer(lambda: other.count_rows("hrss.pensions", *WHY, filter=f"{base} and not name = "
                                                         f"'{target}'"))
    return whole, without, adapters["hrss"]


async def test_the_split_across_two_supervisors_of_one_agency_is_refused(servers, demo_data) -> None:
    whole, without, hrss = await _split_by_two(servers, demo_data, BOB)
    assert isinstance(whole, int)
    assert without == REFUSED  # one agency is one adversary, whichever of its supervisors asks
    assert len(_refusals(hrss)) == 1


async def test_another_agency_is_not_affected(servers, demo_data) -> None:
    """A documented limitation: two agencies colluding can subtract; differential privacy covers that."""
    whole, without, hrss = await _split_by_two(servers, demo_data, CAROL)
    assert isinstance(whole, int) and without != REFUSED
    assert whole - without.rows == 1  # type: ignore[attr-defined]  # what the check does NOT stop (docs/privacy.md)
    assert _refusals(hrss) == []


async def test_match_sides_one_person_apart_cannot_be_subtracted(servers, demo_data) -> None:
    workdir, _, _ = demo_data
    threshold, target = _split(workdir)
    gw, adapters = await _deploy(servers, demo_data, ("hrss", "civil"))
    base = f"monthly_amount_fen >= {threshold}"
    deaths = Side("civil.deaths", "resident_id")

    def match(c: GatewayClient, left: str) -> Callable[[], Awaitable[object]]:
        return lambda: c.match(left=Side("hrss.pensions", "resident_id", left), right=deaths, purpose=WHY[0],
                               case_number=WHY[1])

    async with _client(servers, gw) as alice:
        first = await _answer(match(alice, base))
        without = await _answer(match(alice, f"{base} and not name = '{target}'"))
        # Legitimate: a left set at least min_set_size (100) rows away from the first.
        other = await _answer(match(alice, f"monthly_amount_fen < {threshold}"))
    assert REFUSED not in (first, other)
    assert without == REFUSED  # first − without would be whether P died
    assert len(_refusals(adapters["hrss"])) == 1


async def test_sums_one_company_apart_cannot_be_subtracted(servers, demo_data) -> None:
    workdir, _, truth = demo_data
    subsidies = _csv(workdir, "hrss", "subsidies")
    amounts = sorted(int(r["amount_fen"]) for r in subsidies)
    threshold = amounts[len(amounts) // 3]
    usccs = [r["uscc"] for r in subsidies]
    target = next(r["uscc"] for r in subsidies if int(r["amount_fen"]) >= threshold and usccs.count(r["uscc"]) == 1)
    gw, adapters = await _deploy(servers, demo_data, ("hrss", "samr"))
    key = SupervisorKey.generate()
    base = f"amount_fen >= {threshold}"

    def total(c: GatewayClient, values: str) -> Callable[[], Awaitable[object]]:
        return lambda: c.intersection_sum(values=Side("hrss.subsidies", "uscc", values), value_fields=["amount_fen"],
                                          other=Side("samr.companies", "uscc"), purpose=WHY[0], case_number=WHY[1],
                                          key=key)

    async with _client(servers, gw) as alice:
        first = await _answer(total(alice, base))
        without = await _answer(total(alice, f"{base} and not uscc = '{target}'"))
        whole = await _answer(total(alice, ""))  # unfiltered: the whole dataset, always far from a filtered set
    assert REFUSED not in (first, whole)
    assert without == REFUSED  # first − without would be the target company's subsidy
    assert len(_refusals(adapters["hrss"])) == 1


# --- A dataset joined with itself: one department holds both sides ---------------------------------------------


def _cuts(rows: list[dict[str, str]], field: str, *quantiles: float) -> list[int]:
    amounts = sorted(int(r[field]) for r in rows)
    return [amounts[int(len(amounts) * q)] for q in quantiles]


def _valid(kind: str, value: str) -> bool:
    try:
        normalise(kind, value)
    except InvalidIdentifier:
        return False
    return True


def _unique_subsidy(subsidies: list[dict[str, str]], low: int, high: int) -> tuple[str, int]:
    """A company with one subsidy row, its amount in [low, high), its code written canonically: (code, amount)."""
    codes = [normalise("uscc", r["uscc"]) if _valid("uscc", r["uscc"]) else r["uscc"] for r in subsidies]
    return next((r["uscc"], int(r["amount_fen"])) for r, code in zip(subsidies, codes, strict=True)
                if low <= int(r["amount_fen"]) < high and codes.count(code) == 1 and r["uscc"] == code)


def _self_sum(c: GatewayClient, key: SupervisorKey, values: str, other: str) -> Callable[[], Awaitable[object]]:
    return lambda: c.intersection_sum(values=Side("hrss.subsidies", "uscc", values), value_fields=["amount_fen"],
                                      other=Side("hrss.subsidies", "uscc", other), purpose=WHY[0],
                                      case_number=WHY[1], key=key)


def _self_match(c: GatewayClient, left: str, right: str) -> Callable[[], Awaitable[object]]:
    return lambda: c.match(left=Side("hrss.pensions", "resident_id", left),
                           right=Side("hrss.pensions", "resident_id", right), purpose=WHY[0], case_number=WHY[1])


def _total(answer: object) -> int:
    return answer.totals["amount_fen"]  # type: ignore[attr-defined, no-any-return]


def _learned_nothing(first: object, second: object, truth: int, value: Callable[[object], int]) -> bool:
    """The attacker's subtraction fails: the second answer never came, or first − second is not the truth."""
    assert first != REFUSED
    return second == REFUSED or value(first) - value(second) != truth


@pytest.mark.parametrize("differs", ["values", "other"])
async def test_self_join_sums_one_company_apart_cannot_be_subtracted(servers, demo_data, differs: str) -> None:
    """values = other = hrss.subsidies, one company (in both sides' sets) left out of one side the second time."""
    workdir, _, _ = demo_data
    subsidies = _csv(workdir, "hrss", "subsidies")
    low, high = _cuts(subsidies, "amount_fen", 1 / 3, 5 / 6)
    target, amount = _unique_subsidy(subsidies, low, high)
    gw, adapters = await _deploy(servers, demo_data, ("hrss",))
    key = SupervisorKey.generate()
    values, other = f"amount_fen >= {low}", f"amount_fen < {high}"  # ~667 and ~833 rows, ~500 rows apart
    without = f" and not uscc = '{target}'"
    async with _client(servers, gw) as alice:
        first = await _answer(_self_sum(alice, key, values, other))
        second = await _answer(_self_sum(alice, key, values + without * (differs == "values"),
                                         other + without * (differs == "other")))
    assert first != REFUSED and _total(first) > amount
    assert _learned_nothing(first, second, amount, _total)  # first − second would be the company's subsidy
    assert second == REFUSED and _refusals(adapters["hrss"])  # by the difference check, in hrss's own log


@pytest.mark.parametrize("differs", ["left", "right"])
async def test_self_join_matches_one_person_apart_cannot_be_subtracted(servers, demo_data, differs: str) -> None:
    workdir, _, _ = demo_data
    pensions = _csv(workdir, "hrss", "pensions")
    low, high = _cuts(pensions, "monthly_amount_fen", 1 / 3, 5 / 6)
    names = [r["name"] for r in pensions]
    target = next(r["name"] for r in pensions
                  if low <= int(r["monthly_amount_fen"]) < high and names.count(r["name"]) == 1)
    gw, adapters = await _deploy(servers, demo_data, ("hrss",))
    sides = {"left": f"monthly_amount_fen >= {low}", "right": f"monthly_amount_fen < {high}"}
    without = {s: text + f" and not name = '{target}'" * (s == differs) for s, text in sides.items()}
    async with _client(servers, gw) as alice:
        first = await _answer(_self_match(alice, sides["left"], sides["right"]))
        second = await _answer(_self_match(alice, without["left"], without["right"]))
    assert first != REFUSED and first.cardinality >= 100  # type: ignore[attr-defined]
    # The target is in both sides' sets: first − second = 1 would say "P's pension is in [low, high)".
    assert _learned_nothing(first, second, 1, lambda a: a.cardinality)  # type: ignore[attr-defined]
    assert second == REFUSED and _refusals(adapters["hrss"])


async def test_self_join_sums_with_sides_far_apart_cannot_be_subtracted(servers, demo_data) -> None:
    """A tracker no side check sees: values = W both times (a repeat), other = W padded with one band of
    amounts, then W without the target padded with another. Each side's rows are 200 or more rows from every
    other side's; the matched rows are W, then W less the target, so first − second would be its subsidy."""
    workdir, _, _ = demo_data
    subsidies = _csv(workdir, "hrss", "subsidies")
    q40, q60, q80 = _cuts(subsidies, "amount_fen", 0.4, 0.6, 0.8)
    target, amount = _unique_subsidy(subsidies, q40, q60)
    gw, adapters = await _deploy(servers, demo_data, ("hrss",))
    key = SupervisorKey.generate()
    w = f"amount_fen >= {q40} and amount_fen < {q60}"
    async with _client(servers, gw) as alice:
        first = await _answer(_self_sum(alice, key, w, f"({w}) or (amount_fen >= {q60} and amount_fen < {q80})"))
        second = await _answer(_self_sum(alice, key, w, f"({w} and not uscc = '{target}') or amount_fen >= {q80}"))
        again = await _answer(_self_sum(alice, key, w, f"({w}) or (amount_fen >= {q60} and amount_fen < {q80})"))
    assert _learned_nothing(first, second, amount, _total)
    assert second == REFUSED and len(_refusals(adapters["hrss"])) == 1
    assert again != REFUSED and _total(again) == _total(first)  # the same self-join again is answered, the same


async def test_one_self_join_cannot_tell_membership(servers, demo_data) -> None:
    """One match whose right side is its left side without P, padded far apart: |left| − invalid − cardinality,
    all in the one answer, would be 1 exactly when P's pension is in the band."""
    workdir, _, _ = demo_data
    pensions = _csv(workdir, "hrss", "pensions")
    q40, q60, q80 = _cuts(pensions, "monthly_amount_fen", 0.4, 0.6, 0.8)
    names = [r["name"] for r in pensions]
    target = next(r["name"] for r in pensions
                  if q40 <= int(r["monthly_amount_fen"]) < q60 and names.count(r["name"]) == 1)
    gw, adapters = await _deploy(servers, demo_data, ("hrss",))
    band = f"monthly_amount_fen >= {q40} and monthly_amount_fen < {q60}"
    async with _client(servers, gw) as alice:
        answer = await _answer(_self_match(alice, band, f"({band} and not name = '{target}') or "
                                                       f"monthly_amount_fen >= {q80}"))
    if answer != REFUSED:
        unmatched = answer.left.rows - answer.left.invalid_identifiers - answer.cardinality  # type: ignore[attr-defined]
        assert unmatched != 1
    assert answer == REFUSED and len(_refusals(adapters["hrss"])) == 1


async def test_ordinary_self_joins_are_answered(servers, demo_data) -> None:
    """A filtered side against the whole dataset (a plain total), the whole against a band, and the same again."""
    workdir, _, _ = demo_data
    subsidies = _csv(workdir, "hrss", "subsidies")
    (low,) = _cuts(subsidies, "amount_fen", 1 / 3)
    gw, adapters = await _deploy(servers, demo_data, ("hrss",))
    key = SupervisorKey.generate()
    band = f"amount_fen >= {low}"
    async with _client(servers, gw) as alice:
        plain = await _answer(_self_sum(alice, key, band, ""))
        whole = await _answer(_self_sum(alice, key, "", band))
        again = await _answer(_self_sum(alice, key, band, ""))
    truth = sum(int(r["amount_fen"]) for r in subsidies if int(r["amount_fen"]) >= low and _valid("uscc", r["uscc"]))
    assert plain != REFUSED and _total(plain) == truth
    assert whole != REFUSED and again != REFUSED and _total(again) == truth
    assert _refusals(adapters["hrss"]) == []
