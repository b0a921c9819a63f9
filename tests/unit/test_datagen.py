"""Tests for fedgate.demo.datagen.

The ground truth is recomputed here with plain loops straight from the files,
independently of the generator's own recomputation.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import re
import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from fedgate.crypto.ids import IdKind, is_valid, normalise
from fedgate.demo import datagen
from fedgate.demo.datagen import DEPARTMENT_CODES, DemoDataset, DemoDepartment, generate
from fedgate.core.errors import InvalidIdentifier

ROWS = 500
SEED = 7


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("demo")
    generate(path, rows=ROWS, seed=SEED)
    return path


@pytest.fixture(scope="module")
def truth(out: pathlib.Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    return result


def all_datasets() -> list[tuple[str, DemoDataset]]:
    return [(f"{d.code}.{ds.name}", ds) for d in datagen.DEPARTMENTS for ds in d.datasets]


def read(out: pathlib.Path, ds: DemoDataset) -> list[dict[str, Any]]:
    path = out / ds.source["path"]
    if ds.source["kind"] == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute(f"SELECT * FROM {ds.source['table']}")]
    conn.close()
    return rows


def load(out: pathlib.Path, qualified: str) -> list[dict[str, Any]]:
    return read(out, dict(all_datasets())[qualified])


def canon(kind: str, raw: str) -> str | None:
    try:
        return normalise(kind, raw)
    except InvalidIdentifier:
        return None


def tree_bytes(root: pathlib.Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


# ---------------------------------------------------------------------------
# Declarations and files
# ---------------------------------------------------------------------------


def test_declarations(tmp_path: pathlib.Path) -> None:
    departments = generate(tmp_path, rows=ROWS, seed=SEED)
    assert departments == datagen.DEPARTMENTS
    assert tuple(d.code for d in departments) == DEPARTMENT_CODES
    assert all(isinstance(d, DemoDepartment) and d.display_name for d in departments)
    for _, ds in all_datasets():
        assert not pathlib.PurePosixPath(ds.source["path"]).is_absolute()
        assert ds.source["kind"] in ("csv", "sqlite")
        for f in ds.fields:
            assert f.type in ("string", "int", "date")
            assert f.level in ("L1", "L2", "L3", "L4")
            assert f.key in (None, "resident_id", "uscc", "plain")


@pytest.mark.parametrize(("qualified", "ds"), all_datasets(), ids=[q for q, _ in all_datasets()])
def test_declared_fields_are_the_columns(
    out: pathlib.Path, qualified: str, ds: DemoDataset
) -> None:
    path = out / ds.source["path"]
    declared = [f.name for f in ds.fields]
    if ds.source["kind"] == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh))
        assert header == declared
    else:
        conn = sqlite3.connect(path)
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({ds.source['table']})")]
        conn.close()
        assert columns == declared


def test_row_counts_and_value_ranges(out: pathlib.Path, truth: dict[str, Any]) -> None:
    for qualified, ds in all_datasets():
        records = read(out, ds)
        assert truth["datasets"][qualified]["rows"] == len(records)
        assert ROWS <= len(records) <= ROWS * 1.1, qualified
        for rec in records:
            for f in ds.fields:
                value = rec[f.name]
                if f.type == "int":
                    assert int(value) >= 0
                elif f.type == "date":
                    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)
    for rec in load(out, "hrss.subsidies"):
        assert 500_000 <= int(rec["amount_fen"]) <= 50_000_000
        assert rec["company_name"].endswith("公司")
    for rec in load(out, "hrss.pensions"):
        assert 150_000 <= int(rec["monthly_amount_fen"]) <= 600_000
        assert re.fullmatch(r"[\u4e00-\u9fff]{2,3}", rec["name"])
    for rec in load(out, "vehicle.vehicles"):
        assert re.fullmatch(r"浙A·([0-9A-HJ-NP-Z]{5}|[DF]\d{5})", rec["plate"])
    statuses = [r["status"] for r in load(out, "samr.companies")]
    assert set(statuses) == {"存续", "吊销", "注销"}
    assert 0.78 < statuses.count("存续") / len(statuses) < 0.92


def test_rows_below_minimum_are_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, rows=50)


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------


def test_same_seed_same_bytes(out: pathlib.Path, tmp_path: pathlib.Path) -> None:
    first = tree_bytes(out)
    # Regenerating over existing files must give the same bytes too.
    generate(tmp_path, rows=ROWS, seed=SEED)
    generate(tmp_path, rows=ROWS, seed=SEED)
    assert tree_bytes(tmp_path) == first


def test_same_bytes_under_another_hash_seed(out: pathlib.Path, tmp_path: pathlib.Path) -> None:
    path = os.pathsep.join(p for p in sys.path if p)
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": path}
    code = (
        "import pathlib, sys; from fedgate.demo.datagen import generate; "
        "generate(pathlib.Path(sys.argv[1]), rows=%d, seed=%d)"
    )
    subprocess.run([sys.executable, "-c", code % (ROWS, SEED), str(tmp_path)], env=env, check=True)
    assert tree_bytes(tmp_path) == tree_bytes(out)


def test_other_seed_other_data(out: pathlib.Path, tmp_path: pathlib.Path) -> None:
    generate(tmp_path, rows=ROWS, seed=SEED + 1)
    rel = "data/hrss/pensions.csv"
    assert (tmp_path / rel).read_bytes() != (out / rel).read_bytes()


# ---------------------------------------------------------------------------
# Identifiers
# ---------------------------------------------------------------------------


def test_identifiers_valid_except_planted(out: pathlib.Path, truth: dict[str, Any]) -> None:
    for qualified, ds in all_datasets():
        invalid = reformatted = 0
        for rec in read(out, ds):
            for f in ds.fields:
                if f.key is None:
                    continue
                raw = rec[f.name]
                if not is_valid(f.key, raw):
                    invalid += 1
                    # Planted invalid identifiers are well formed with a wrong check character.
                    with pytest.raises(InvalidIdentifier, match="check character does not match"):
                        normalise(f.key, raw)
                elif normalise(f.key, raw) != raw:
                    reformatted += 1
        assert truth["invalid_identifiers"][qualified] == invalid, qualified
        assert truth["datasets"][qualified]["invalid_identifiers"] == invalid, qualified
        assert truth["datasets"][qualified]["non_canonical_identifiers"] == reformatted, qualified
        if ds.source["kind"] == "sqlite":
            assert invalid == 0 and reformatted == 0, qualified
    planted = [q for q, n in truth["invalid_identifiers"].items() if n]
    assert sorted(planted) == ["civil.deaths", "hrss.pensions", "hrss.subsidies"]
    assert all(5 <= truth["invalid_identifiers"][q] <= 10 for q in planted)
    for qualified in ("hrss.subsidies", "hrss.pensions", "civil.deaths", "civil.allowances"):
        assert truth["datasets"][qualified]["non_canonical_identifiers"] > 0, qualified


def test_identifiers_unique_where_they_should_be(out: pathlib.Path) -> None:
    for qualified, column in [
        ("samr.companies", "uscc"),
        ("tax.insured_employees", "uscc"),
        ("hrss.pensions", "resident_id"),
        ("civil.deaths", "resident_id"),
        ("civil.allowances", "resident_id"),
    ]:
        kind = IdKind.USCC if column == "uscc" else IdKind.RESIDENT_ID
        values = [canon(kind, r[column]) or r[column] for r in load(out, qualified)]
        assert len(values) == len(set(values)), qualified


# ---------------------------------------------------------------------------
# Ground truth, recomputed with plain loops
# ---------------------------------------------------------------------------


def test_overclaim(out: pathlib.Path, truth: dict[str, Any]) -> None:
    insured: dict[str, int] = {}
    for rec in load(out, "tax.insured_employees"):
        insured[normalise("uscc", rec["uscc"])] = int(rec["insured_employees"])
    flagged_companies: set[str] = set()
    flagged_rows = compared = ties = by_one = 0
    subsidised: set[str] = set()
    for rec in load(out, "hrss.subsidies"):
        uscc = canon("uscc", rec["uscc"])
        if uscc is None:
            continue
        subsidised.add(uscc)
        assert uscc in insured, "every subsidised company has a tax record"
        compared += 1
        claimed = int(rec["claimed_insured"])
        if claimed > insured[uscc]:
            flagged_rows += 1
            flagged_companies.add(uscc)
            by_one += claimed == insured[uscc] + 1
        elif claimed == insured[uscc]:
            ties += 1
    gt = truth["overclaim"]
    assert len(flagged_companies) == 12
    assert gt["usccs"] == sorted(flagged_companies)
    assert gt["companies"] == 12
    assert gt["flagged_rows"] == flagged_rows
    assert gt["compared_rows"] == compared
    assert gt["tied_rows"] == ties
    assert ties >= 50, "enough x == y pairs to show that equality is not flagged"
    assert by_one >= 2, "x == y + 1 must appear and be flagged"
    registry = {normalise("uscc", r["uscc"]) for r in load(out, "samr.companies")}
    assert subsidised <= registry


def test_subsidies_to_closed_companies(out: pathlib.Path, truth: dict[str, Any]) -> None:
    status = {r["uscc"]: r["status"] for r in load(out, "samr.companies")}
    totals = {s: {"rows": 0, "companies": set(), "amount_fen": 0} for s in ("吊销", "注销")}
    for rec in load(out, "hrss.subsidies"):
        uscc = canon("uscc", rec["uscc"])
        if uscc is None or status[uscc] not in totals:
            continue
        t = totals[status[uscc]]
        t["rows"] += 1
        t["companies"].add(uscc)
        t["amount_fen"] += int(rec["amount_fen"])
    gt = truth["subsidies_to_closed_companies"]
    for s, t in totals.items():
        want = {"rows": t["rows"], "companies": len(t["companies"]), "amount_fen": t["amount_fen"]}
        assert gt["by_status"][s] == want
        assert t["rows"] > 0
    assert gt["rows"] == sum(t["rows"] for t in totals.values())
    assert gt["companies"] == sum(len(t["companies"]) for t in totals.values())
    assert gt["amount_fen"] == sum(t["amount_fen"] for t in totals.values())


def test_pensions_to_deceased(out: pathlib.Path, truth: dict[str, Any]) -> None:
    died: dict[str, str] = {}
    for rec in load(out, "civil.deaths"):
        rid = canon("resident_id", rec["resident_id"])
        if rid is not None:
            died[rid] = rec["died_on"]
    rows = amount = in_deaths = in_deaths_amount = ties = 0
    for rec in load(out, "hrss.pensions"):
        rid = canon("resident_id", rec["resident_id"])
        if rid is None or rid not in died:
            continue
        in_deaths += 1
        in_deaths_amount += int(rec["monthly_amount_fen"])
        if died[rid] < rec["last_paid_on"]:  # ISO dates compare as strings
            rows += 1
            amount += int(rec["monthly_amount_fen"])
        elif died[rid] == rec["last_paid_on"]:
            ties += 1
    gt = truth["pensions_to_deceased"]
    assert 30 <= rows <= 60
    assert ties > 0
    assert gt["rows"] == rows
    assert gt["monthly_amount_fen"] == amount
    assert gt["pensioners_in_deaths"] == in_deaths > rows
    assert gt["pensioners_in_deaths_monthly_amount_fen"] == in_deaths_amount


def test_invalid_identifiers_are_traps(out: pathlib.Path, truth: dict[str, Any]) -> None:
    # Matching raw strings without validation counts the copied invalid IDs too.
    deaths_raw = {r["resident_id"]: r["died_on"] for r in load(out, "civil.deaths")}
    naive = sum(
        1
        for r in load(out, "hrss.pensions")
        if r["resident_id"] in deaths_raw and deaths_raw[r["resident_id"]] < r["last_paid_on"]
        and not is_valid("resident_id", r["resident_id"])
    )
    assert naive >= 3
    # Invalid USCCs are registry codes with only the check character changed.
    registry_bodies = {r["uscc"][:17] for r in load(out, "samr.companies")}
    bad = [r["uscc"] for r in load(out, "hrss.subsidies") if not is_valid("uscc", r["uscc"])]
    assert len(bad) == truth["invalid_identifiers"]["hrss.subsidies"]
    assert all(b[:17] in registry_bodies for b in bad)


def test_allowance_cross_checks(out: pathlib.Path, truth: dict[str, Any]) -> None:
    vehicles: dict[str, int] = {}
    for rec in load(out, "vehicle.vehicles"):
        vehicles[rec["owner_id"]] = vehicles.get(rec["owner_id"], 0) + 1
    rep_of: dict[str, list[str]] = {}
    for rec in load(out, "samr.companies"):
        rep_of.setdefault(rec["legal_rep_id"], []).append(rec["status"])

    owners = reps = owned = represented = 0
    owner_ids: set[str] = set()
    rep_ids: set[str] = set()
    statuses: dict[str, int] = {"存续": 0, "吊销": 0, "注销": 0}
    for rec in load(out, "civil.allowances"):
        rid = canon("resident_id", rec["resident_id"])
        if rid is None:
            continue
        if rid in vehicles:
            owners += 1
            owner_ids.add(rid)
            owned += vehicles[rid]
        if rid in rep_of:
            reps += 1
            rep_ids.add(rid)
            represented += len(rep_of[rid])
            for s in rep_of[rid]:
                statuses[s] += 1
    gt = truth["allowance_vehicle_owners"]
    assert (gt["count"], gt["distinct"], gt["vehicles"]) == (owners, len(owner_ids), owned)
    assert 20 <= owners <= 40
    gt = truth["allowance_company_reps"]
    assert (gt["count"], gt["distinct"], gt["companies"]) == (reps, len(rep_ids), represented)
    assert gt["companies_by_status"] == statuses
    assert 10 <= reps <= 25


def test_ground_truth_header(truth: dict[str, Any]) -> None:
    assert truth["seed"] == SEED and truth["rows"] == ROWS
    assert set(truth["datasets"]) == {q for q, _ in all_datasets()}
    for key in (
        "overclaim",
        "subsidies_to_closed_companies",
        "pensions_to_deceased",
        "allowance_vehicle_owners",
        "allowance_company_reps",
    ):
        assert truth[key]["rule"]
