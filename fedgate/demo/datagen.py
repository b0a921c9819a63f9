"""Seeded synthetic data for five departments of one city, with planted anomalies.

``generate(out_dir, rows, seed)`` writes CSV and SQLite files under
``out_dir/data/<department>/`` and ``out_dir/ground_truth.json``. The same seed
gives the same bytes. Identifiers are realistic: resident IDs carry real
Hangzhou (and a few other) region codes, plausible birth dates and a correct
MOD 11-2 check character; USCCs are ``91`` + a Hangzhou region code + an
organisation code with its GB 11714 check character + the GB 32100 check
character.

What is planted (the scenarios of the design document):

1. ``overclaim``: exactly 12 subsidised companies claim more insured employees
   in ``hrss.subsidies`` than ``tax.insured_employees`` records; two of them by
   exactly one. Every other subsidy row claims at most the tax figure, and
   a third or more claim exactly it, so "equal is not flagged" is exercised.
2. ``subsidies_to_closed_companies``: a few percent of subsidised companies
   are revoked (吊销) or deregistered (注销) in ``samr.companies``.
3. ``pensions_to_deceased``: 30-60 pensioners appear in ``civil.deaths`` with
   a death date before their last pension payment; 15-30 more appear there
   but died on or after it (a tie counts as not flagged).
4. ``allowance_vehicle_owners`` / ``allowance_company_reps``: some minimum
   allowance (低保) recipients own vehicles or are the legal representative
   of a registered company.
5. Normalisation: about 3 % of identifiers in the CSV files (a quarter of the
   planted anomaly rows) are written as people type them: full-width digits,
   lower-case letters, spaces, tabs, ideographic spaces, hyphens. They match
   after ``fedgate.crypto.ids`` normalisation.
6. Invalid identifiers: 5-10 identifiers with a wrong check character in each
   of ``hrss.subsidies``, ``hrss.pensions`` and ``civil.deaths``. They are
   traps: invalid pension IDs are copied into the death records with an
   earlier death date, and invalid USCCs are real registry codes with the last
   character changed, claiming more employees than the tax record. A system
   that matches without validating (or on the first 17 characters) counts
   them; an honest one reports them as invalid and counts nothing.

The ground truth is recomputed from the files as written (not from the plan),
on canonical identifiers, with rows whose identifier is invalid left out.
"""

from __future__ import annotations

import csv
import datetime
import json
import pathlib
import random
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedgate.crypto.ids import (
    USCC_ALPHABET,
    IdKind,
    make_resident_id,
    make_uscc,
    normalise,
    org_code_check_char,
)
from fedgate.demo.deployment import DatasetSpec, FieldSpec, fields
from fedgate.core.errors import InvalidIdentifier

__all__ = [
    "DEPARTMENTS",
    "DEPARTMENT_CODES",
    "DemoDataset",
    "DemoDepartment",
    "DemoField",
    "generate",
]


# The adapters' declarations: the deployment helper's types, under the names tests and callers know.
DemoField = FieldSpec
DemoDataset = DatasetSpec


@dataclass(frozen=True)
class DemoDepartment:
    code: str
    display_name: str
    datasets: tuple[DemoDataset, ...]


DEPARTMENT_CODES: tuple[str, ...] = ("hrss", "samr", "tax", "civil", "vehicle")


def _declare(source: str, description: str, columns: str) -> DemoDataset:
    """A declaration from one line each: "csv data/<dept>/<name>.csv" or "sqlite <path> <table>", and
    the fields as `fields` reads them (the CSV header and SQLite columns follow their order)."""
    kind, path, *table = source.split()
    name = table[0] if table else pathlib.PurePosixPath(path).stem
    return DemoDataset(name, description, {"kind": kind, "path": path, **({"table": table[0]} if table else {})},
                       fields(columns))


DEPARTMENTS: tuple[DemoDepartment, ...] = (
    DemoDepartment("hrss", "人力资源和社会保障局", (
        _declare("csv data/hrss/subsidies.csv", "稳岗补贴发放记录 (job-stabilisation subsidy payments)",
                 "uscc:string:L3:uscc company_name:string:L2 amount_fen:int:L3:0..2000000 claimed_insured:int:L3:0..30000 paid_on:date:L2"),
        _declare("csv data/hrss/pensions.csv", "养老金发放名册 (pension payments)",
                 "resident_id:string:L4:resident_id name:string:L3 monthly_amount_fen:int:L3:0..600000 last_paid_on:date:L2"))),
    DemoDepartment("samr", "市场监督管理局", (
        _declare("sqlite data/samr/registry.db companies", "市场主体登记信息 (company registry)",
                 "uscc:string:L2:uscc name:string:L1 status:string:L1 legal_rep_id:string:L4:resident_id "
                 "registered_on:date:L1"),)),
    DemoDepartment("tax", "税务局", (
        _declare("sqlite data/tax/tax.db insured_employees",
                 "社会保险费征缴参保人数 (insured employees per company and quarter)",
                 "uscc:string:L3:uscc insured_employees:int:L3:0..20000 period:string:L2"),)),
    DemoDepartment("civil", "民政局", (
        _declare("csv data/civil/deaths.csv", "死亡登记 (death records)",
                 "resident_id:string:L4:resident_id name:string:L3 died_on:date:L3"),
        _declare("csv data/civil/allowances.csv", "最低生活保障对象 (minimum-allowance recipients)",
                 "resident_id:string:L4:resident_id name:string:L3 monthly_amount_fen:int:L3:0..135000 district:string:L2"))),
    DemoDepartment("vehicle", "公安交通管理局", (
        _declare("sqlite data/vehicle/vehicles.db vehicles", "机动车登记信息 (vehicle registry)",
                 "owner_id:string:L4:resident_id plate:string:L3 model:string:L2 registered_on:date:L2"),)),
)

# ---------------------------------------------------------------------------
# Plan parameters
# ---------------------------------------------------------------------------

_MIN_ROWS = 200
# The data is a snapshot taken on this day; fixed so output never depends on the clock.
_SNAPSHOT = datetime.date(2026, 11, 28)
_PAYDAY = datetime.date(2026, 11, 15)  # pensions are paid on the 15th
_PERIOD = "2026-Q3"
_ACTIVE, _REVOKED, _DEREGISTERED = "存续", "吊销", "注销"
_CLOSED = (_REVOKED, _DEREGISTERED)
_OVERCLAIMERS = 12
_REFORMAT_RATE = 0.03
_REFORMAT_RATE_PLANTED = 0.25

# ---------------------------------------------------------------------------
# Vocabulary (real region codes, common names)
# ---------------------------------------------------------------------------

# GB/T 2260 codes: Hangzhou districts and counties (330103/330104 were merged
# away in 2021 but still appear in older IDs), plus places people move from.
_BIRTH_REGIONS: tuple[tuple[str, int], ...] = (
    ("330102", 8), ("330103", 6), ("330104", 6), ("330105", 7), ("330106", 8),
    ("330108", 4), ("330109", 7), ("330110", 7), ("330122", 3), ("330127", 3),
    ("330182", 3), ("330183", 3), ("330185", 3), ("330203", 2), ("330302", 2),
    ("330381", 2), ("330402", 2), ("330602", 2), ("330702", 2), ("341222", 2),
    ("342401", 1), ("360121", 1), ("410105", 1), ("430102", 1), ("510107", 1),
    ("110105", 1), ("310115", 1), ("320505", 1),
)
_COMPANY_REGIONS = (
    "330100", "330102", "330105", "330106", "330108", "330109",
    "330110", "330111", "330112", "330113", "330114",  # keep the 2021 districts last
)
# Hangzhou's April 2021 reform merged 330103/330104 away and created 330113/330114.
_DISTRICT_REFORM = datetime.date(2021, 4, 9)
_OLD_COMPANY_REGIONS = ("330103", "330104")
_EXTERNAL_COMPANY_REGIONS = ("330203", "330302", "330402", "330602", "310115", "320505")
_DISTRICTS = (
    "上城区", "拱墅区", "西湖区", "滨江区", "萧山区", "余杭区", "临平区",
    "钱塘区", "富阳区", "临安区", "桐庐县", "淳安县", "建德市",
)

# Roughly in order of frequency, so earlier surnames get larger weights.
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董"
    "袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟"
    "熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_SURNAME_CUM_WEIGHTS = tuple(
    sum(1.0 / (i + 8) for i in range(n + 1)) for n in range(len(_SURNAMES))
)
_MALE_CHARS = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆旭宁龙林阳建国峰亮成志文东海晨博然轩睿泽子豪思远振荣"
_FEMALE_CHARS = "芳娜敏静丽艳娟霞秀英玲桂兰萍红婷雪琳燕颖慧倩洁晶莉梅琴云悦欣怡佳雨涵萱梓诗琪晓蕾月凤"

_TRADE_CHARS = "恒源华信鼎盛博远金泰宏达嘉禾瑞丰锦程天成新宇中海誉德兴旺永安聚力创联卓越汇通正元乾坤银河东方明辉润福凯昌荣光耀星"
_INDUSTRIES = (
    "机械制造", "电子科技", "网络科技", "信息技术", "贸易", "建筑工程", "装饰工程",
    "餐饮管理", "物流", "纺织", "服饰", "新材料", "生物医药", "食品", "环保科技",
    "建材", "汽车服务", "文化传媒", "教育咨询", "家居用品", "包装材料", "电器",
    "五金", "农业开发", "物业管理", "酒店管理", "印刷", "化工", "医疗器械", "智能装备",
)
_COMPANY_FORMS = (("有限公司", 14), ("有限责任公司", 3), ("股份有限公司", 1))

_FUEL_MODELS = (
    "大众朗逸", "丰田卡罗拉", "日产轩逸", "本田雅阁", "别克英朗", "吉利帝豪", "哈弗H6",
    "长安CS75", "大众帕萨特", "丰田凯美瑞", "本田思域", "宝马3系", "奔驰C级",
    "奥迪A4L", "马自达阿特兹", "荣威i5", "五菱宏光", "传祺GS4",
)
_NEV_MODELS = (
    "比亚迪秦PLUS", "比亚迪宋PLUS", "比亚迪海豚", "特斯拉Model 3", "特斯拉Model Y",
    "五菱宏光MINIEV", "理想L7", "蔚来ES6", "小鹏P7", "埃安S", "零跑C11", "极氪001",
)
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # plates never use I or O

_FULL_WIDTH_OFFSET = 0xFEE0  # ASCII '!'..'~' to U+FF01..U+FF5E


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


@dataclass
class _Person:
    rid: str
    name: str
    birth: datetime.date


@dataclass
class _Company:
    uscc: str
    name: str
    status: str
    rep: str
    registered_on: datetime.date
    insured: int


@dataclass
class _Row:
    """A row to write; ``planted`` rows are reformatted more often."""

    values: list[Any]
    planted: bool = False
    invalid: bool = False


@dataclass
class _World:
    rng: random.Random
    rids: set[str] = field(default_factory=set)
    usccs: set[str] = field(default_factory=set)
    company_names: set[str] = field(default_factory=set)
    plates: set[str] = field(default_factory=set)

    def date(self, lo: datetime.date, hi: datetime.date) -> datetime.date:
        return lo + datetime.timedelta(days=self.rng.randint(0, (hi - lo).days))

    def person(self, born_from: datetime.date, born_to: datetime.date) -> _Person:
        rng = self.rng
        regions = [r for r, _ in _BIRTH_REGIONS]
        weights = [w for _, w in _BIRTH_REGIONS]
        while True:
            seq = rng.randint(1, 999)
            birth = self.date(born_from, born_to)
            rid = make_resident_id(rng.choices(regions, weights)[0], birth, seq)
            if rid not in self.rids:
                break
        self.rids.add(rid)
        # GB 11643: an odd sequence number is a man, an even one a woman.
        chars = _MALE_CHARS if seq % 2 else _FEMALE_CHARS
        surname = rng.choices(_SURNAMES, cum_weights=_SURNAME_CUM_WEIGHTS)[0]
        given = "".join(rng.choice(chars) for _ in range(1 if rng.random() < 0.3 else 2))
        return _Person(rid, surname + given, birth)

    def uscc(self, region: str, registered_on: datetime.date) -> str:
        rng = self.rng
        while True:
            if registered_on < datetime.date(2015, 10, 1):
                org8 = str(rng.randint(10_000_000, 79_999_999))
            else:
                # Codes issued with the USCC reform start with MA.
                org8 = "MA" + "".join(rng.choice(USCC_ALPHABET) for _ in range(6))
            code = make_uscc("91" + region + org8 + org_code_check_char(org8))
            if code not in self.usccs:
                self.usccs.add(code)
                return code

    def company_name(self) -> str:
        rng = self.rng
        forms = [f for f, _ in _COMPANY_FORMS]
        weights = [w for _, w in _COMPANY_FORMS]
        while True:
            prefix = "杭州" if rng.random() < 0.85 else "浙江"
            trade = rng.choice(_TRADE_CHARS) + rng.choice(_TRADE_CHARS)
            name = prefix + trade + rng.choice(_INDUSTRIES) + rng.choices(forms, weights)[0]
            if trade[0] != trade[1] and name not in self.company_names:
                self.company_names.add(name)
                return name

    def plate(self, new_energy: bool) -> str:
        rng = self.rng
        while True:
            if new_energy:
                tail = rng.choice("DF") + "".join(rng.choice("0123456789") for _ in range(5))
            else:
                tail = "".join(
                    rng.choice(_PLATE_LETTERS) if rng.random() < 0.2 else rng.choice("0123456789")
                    for _ in range(5)
                )
            plate = "浙A·" + tail
            if plate not in self.plates:
                self.plates.add(plate)
                return plate


def generate(
    out_dir: pathlib.Path, rows: int = 10_000, seed: int = 20261129
) -> tuple[DemoDepartment, ...]:
    """Write the demo data and ``ground_truth.json`` under ``out_dir``; return the declarations.

    ``rows`` is the size of each dataset (at least 200, so every planted
    anomaly fits). The same ``seed`` writes the same bytes.
    """
    if rows < _MIN_ROWS:
        raise ValueError(f"rows must be at least {_MIN_ROWS}, got {rows}")
    out_dir = pathlib.Path(out_dir)
    w = _World(random.Random(seed))

    companies = _make_companies(w, rows)
    subsidies, tax = _make_subsidies_and_tax(w, rows, companies)
    pensions, deaths = _make_pensions_and_deaths(w, rows)
    allowances, vehicles = _make_allowances_and_vehicles(w, rows, companies)

    _write_csv(w, out_dir, "subsidies", subsidies, IdKind.USCC)
    _write_csv(w, out_dir, "pensions", pensions, IdKind.RESIDENT_ID)
    _write_csv(w, out_dir, "deaths", deaths, IdKind.RESIDENT_ID)
    _write_csv(w, out_dir, "allowances", allowances, IdKind.RESIDENT_ID)
    _write_sqlite(
        out_dir,
        "companies",
        [[c.uscc, c.name, c.status, c.rep, c.registered_on.isoformat()] for c in companies],
    )
    _write_sqlite(out_dir, "insured_employees", tax)
    _write_sqlite(out_dir, "vehicles", vehicles)

    truth = _ground_truth(out_dir, rows, seed)
    (out_dir / "ground_truth.json").write_text(
        json.dumps(truth, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return DEPARTMENTS


def _make_companies(w: _World, rows: int) -> list[_Company]:
    rng = w.rng
    companies: list[_Company] = []
    reps: list[str] = []
    for _ in range(rows):
        registered_on = w.date(datetime.date(1995, 1, 1), datetime.date(2026, 6, 30))
        if registered_on >= _DISTRICT_REFORM:
            region = rng.choice(_COMPANY_REGIONS)
        elif rng.random() < 0.15:
            region = rng.choice(_OLD_COMPANY_REGIONS)
        else:
            region = rng.choice(_COMPANY_REGIONS[:-2])
        r = rng.random()
        status = _ACTIVE if r < 0.85 else _REVOKED if r < 0.93 else _DEREGISTERED
        # Some people represent several companies.
        if reps and rng.random() < 0.05:
            rep = rng.choice(reps)
        else:
            rep = w.person(datetime.date(1956, 1, 1), datetime.date(2000, 12, 31)).rid
            reps.append(rep)
        insured = max(1, min(20_000, int(rng.lognormvariate(2.8, 1.1))))
        if status == _DEREGISTERED:
            insured = 0 if rng.random() < 0.8 else rng.randint(1, 5)
        elif status == _REVOKED:
            insured = rng.randint(0, 8)
        uscc = w.uscc(region, registered_on)
        companies.append(_Company(uscc, w.company_name(), status, rep, registered_on, insured))
    return companies


def _make_subsidies_and_tax(
    w: _World, rows: int, companies: list[_Company]
) -> tuple[list[_Row], list[list[Any]]]:
    rng = w.rng
    n_invalid = rng.randint(5, 10)
    # Subsidies go mostly to active companies; a few closed ones of each kind slip through.
    quota = max(3, rows // 110)
    candidates: list[_Company] = []
    for status in _CLOSED:
        pool = [c for c in companies if c.status == status]
        candidates += rng.sample(pool, min(quota, len(pool)))
    active = [c for c in companies if c.status == _ACTIVE]
    rng.shuffle(active)
    candidates += active

    subsidised: list[_Company] = []
    per_company: list[int] = []
    remaining = rows - n_invalid
    for c in candidates:
        if remaining == 0:
            break
        n = min(remaining, rng.choice((1, 1, 2, 2, 2, 3)))
        remaining -= n
        c.insured = max(c.insured, 1)
        subsidised.append(c)
        per_company.append(n)
    taken = {c.uscc for c in subsidised}
    rest = [c for c in companies if c.uscc not in taken]
    if remaining > 0 or len(subsidised) < _OVERCLAIMERS + 20 or len(rest) < n_invalid:
        raise ValueError(f"rows={rows} is too small to plant the subsidy anomalies")

    overclaimers = rng.sample(range(len(subsidised)), _OVERCLAIMERS)
    by_one = set(overclaimers[:2])  # x = y + 1 must be flagged
    overclaim_set = set(overclaimers)

    out: list[_Row] = []
    for idx, (c, n) in enumerate(zip(subsidised, per_company)):
        for k in range(n):
            if idx in overclaim_set and (k == 0 or rng.random() < 0.5):
                extra = 1 if idx in by_one else rng.randint(1, max(2, c.insured // 3))
                claimed = c.insured + extra
            elif rng.random() < 0.25:
                claimed = c.insured
            else:
                claimed = rng.randint(max(1, c.insured * 7 // 10), c.insured)
            planted = idx in overclaim_set or c.status != _ACTIVE
            out.append(_Row(_subsidy_values(w, c, claimed), planted=planted))

    # Traps: real codes with a wrong check character, overclaiming, half of them closed.
    closed_rest = [c for c in rest if c.status in _CLOSED]
    active_rest = [c for c in rest if c.status == _ACTIVE]
    n_closed = min(len(closed_rest), n_invalid // 2)
    traps = rng.sample(closed_rest, n_closed) + rng.sample(active_rest, n_invalid - n_closed)
    for c in traps:
        values = _subsidy_values(w, c, c.insured + rng.randint(5, 50))
        values[0] = _corrupt_check_char(rng, c.uscc, USCC_ALPHABET)
        out.append(_Row(values, invalid=True))
    rng.shuffle(out)

    # Tax records every subsidised company, the trap companies and most others,
    # plus companies registered elsewhere that pay social insurance here.
    taxed = {c.uscc for c in subsidised} | {c.uscc for c in traps}
    tax = [
        [c.uscc, c.insured, _PERIOD]
        for c in companies
        if c.uscc in taxed or rng.random() < 0.88
    ]
    while len(tax) < rows:
        region = rng.choice(_EXTERNAL_COMPANY_REGIONS)
        code = w.uscc(region, w.date(datetime.date(2000, 1, 1), datetime.date(2026, 6, 30)))
        tax.append([code, max(1, int(rng.lognormvariate(2.8, 1.1))), _PERIOD])
    rng.shuffle(tax)
    return out, tax


def _subsidy_values(w: _World, c: _Company, claimed: int) -> list[Any]:
    rng = w.rng
    # Job-stabilisation refunds scale with headcount; clamp to 5,000-500,000 yuan.
    amount = claimed * rng.randint(300, 1500) * 100 + rng.randint(0, 99)
    amount = min(50_000_000, max(500_000, amount))
    paid_on = w.date(datetime.date(2026, 7, 1), datetime.date(2026, 11, 20))
    return [c.uscc, c.name, amount, claimed, paid_on.isoformat()]


def _make_pensions_and_deaths(w: _World, rows: int) -> tuple[list[_Row], list[_Row]]:
    rng = w.rng
    n_pen_invalid = rng.randint(5, 10)
    n_mirrored = max(3, n_pen_invalid // 2)
    n_death_invalid = rng.randint(max(5, n_mirrored), 10)
    n_deceased = rng.randint(30, 60)
    n_died_after = rng.randint(15, 30)

    def suspended_payday() -> datetime.date:
        month = rng.randint(0, 45)  # Jan 2023 .. Oct 2026
        return datetime.date(2023 + month // 12, month % 12 + 1, 15)

    def monthly() -> int:
        return int(rng.triangular(150_000, 600_000, 280_000))

    pensioners = [
        w.person(datetime.date(1936, 1, 1), datetime.date(1966, 6, 30))
        for _ in range(rows - n_pen_invalid)
    ]
    last_paid = [_PAYDAY if rng.random() < 0.93 else suspended_payday() for _ in pensioners]
    picked = rng.sample(range(len(pensioners)), n_deceased + n_died_after)
    deceased, died_after = picked[:n_deceased], picked[n_deceased:]
    planted = set(picked)

    deaths: list[_Row] = []
    for j, i in enumerate(deceased):
        p = pensioners[i]
        if j < 3:
            died = last_paid[i] - datetime.timedelta(days=1)  # the boundary: one day before
        elif rng.random() < 0.3:
            last_paid[i] = suspended_payday()
            died = last_paid[i] - datetime.timedelta(days=rng.randint(30, 90))
        else:
            died = last_paid[i] - datetime.timedelta(days=rng.randint(2, 1000))
        deaths.append(_Row([p.rid, p.name, died.isoformat()], planted=True))
    for j, i in enumerate(died_after):
        # Payment stopped after the death was reported: not an anomaly.
        p = pensioners[i]
        last_paid[i] = suspended_payday()
        died = last_paid[i] + datetime.timedelta(days=0 if j < 5 else rng.randint(1, 25))
        deaths.append(_Row([p.rid, p.name, died.isoformat()], planted=True))

    pensions = [
        _Row([p.rid, p.name, monthly(), paid.isoformat()], planted=i in planted)
        for i, (p, paid) in enumerate(zip(pensioners, last_paid))
    ]
    for k in range(n_pen_invalid):
        p = w.person(datetime.date(1936, 1, 1), datetime.date(1966, 6, 30))
        bad = _corrupt_check_char(rng, p.rid, "0123456789X")
        pensions.append(_Row([bad, p.name, monthly(), _PAYDAY.isoformat()], invalid=True))
        if k < n_mirrored:
            died = _PAYDAY - datetime.timedelta(days=rng.randint(30, 600))
            deaths.append(_Row([bad, p.name, died.isoformat()], invalid=True))
    for _ in range(n_death_invalid - n_mirrored):
        p = w.person(datetime.date(1925, 1, 1), datetime.date(1970, 12, 31))
        bad = _corrupt_check_char(rng, p.rid, "0123456789X")
        died = w.date(datetime.date(2015, 1, 1), _SNAPSHOT)
        deaths.append(_Row([bad, p.name, died.isoformat()], invalid=True))
    while len(deaths) < rows:
        p = w.person(datetime.date(1920, 1, 1), datetime.date(1975, 12, 31))
        died = w.date(datetime.date(2015, 1, 1), _SNAPSHOT)
        deaths.append(_Row([p.rid, p.name, died.isoformat()]))
    rng.shuffle(pensions)
    rng.shuffle(deaths)
    return pensions, deaths


def _make_allowances_and_vehicles(
    w: _World, rows: int, companies: list[_Company]
) -> tuple[list[_Row], list[list[Any]]]:
    rng = w.rng
    recipients = [
        w.person(datetime.date(1936, 1, 1), datetime.date(2008, 6, 30)) for _ in range(rows)
    ]
    owners_planted = rng.sample(range(rows), rng.randint(20, 40))
    reps_planted = rng.sample(range(rows), rng.randint(10, 25))
    planted = set(owners_planted) | set(reps_planted)
    allowances = [
        _Row(
            [p.rid, p.name, int(rng.triangular(30_000, 135_000, 80_000)), rng.choice(_DISTRICTS)],
            planted=i in planted,
        )
        for i, p in enumerate(recipients)
    ]

    vehicles: list[list[Any]] = []

    def add_vehicles(owner: _Person, n: int) -> None:
        adult = owner.birth.replace(year=owner.birth.year + 18, day=1)
        earliest = max(datetime.date(2005, 1, 1), adult)
        for _ in range(n):
            nev = rng.random() < 0.12
            model = rng.choice(_NEV_MODELS if nev else _FUEL_MODELS)
            registered = w.date(earliest, datetime.date(2026, 11, 20))
            vehicles.append([owner.rid, w.plate(nev), model, registered.isoformat()])

    for i in owners_planted:
        add_vehicles(recipients[i], 2 if rng.random() < 0.2 else 1)
    while len(vehicles) < rows:
        owner = w.person(datetime.date(1950, 1, 1), datetime.date(2006, 6, 30))
        add_vehicles(owner, min(rows - len(vehicles), 2 if rng.random() < 0.1 else 1))
    rng.shuffle(vehicles)

    targets = iter(rng.sample(range(len(companies)), 2 * len(reps_planted)))
    for i in reps_planted:
        for _ in range(2 if rng.random() < 0.25 else 1):
            companies[next(targets)].rep = recipients[i].rid
    return allowances, vehicles


def _corrupt_check_char(rng: random.Random, value: str, alphabet: str) -> str:
    return value[:17] + rng.choice([c for c in alphabet if c != value[17]])


_GROUPS = {IdKind.RESIDENT_ID: (6, 8, 4), IdKind.USCC: (2, 6, 9, 1)}


def _reformat(rng: random.Random, canonical: str, kind: IdKind) -> str:
    """Write a canonical identifier the way people and spreadsheets do."""
    parts: list[str] = []
    start = 0
    for size in _GROUPS[kind]:
        parts.append(canonical[start : start + size])
        start += size
    style = rng.randrange(5)
    if style == 0:
        text = "".join(chr(ord(c) + _FULL_WIDTH_OFFSET) for c in canonical)
    elif style == 1:
        text = " ".join(parts).lower()  # e.g. "110105 19491231 002x"
    elif style == 2:
        text = "-".join(parts)
    elif style == 3:
        text = " " + rng.choice(("\u3000", "\t", "\xa0")).join(parts) + "\u3000"
    else:
        text = "".join(
            chr(ord(c) + _FULL_WIDTH_OFFSET) if rng.random() < 0.5 else c.lower() for c in canonical
        ) + " "
    if text == canonical or normalise(kind, text) != canonical:
        raise AssertionError("reformatting must change the text but not the canonical value")
    return text


def _write_csv(
    w: _World, out_dir: pathlib.Path, dataset: str, rows: Sequence[_Row], kind: IdKind
) -> None:
    ds = _dataset(dataset)
    header = [f.name for f in ds.fields]
    path = out_dir / ds.source["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            values = list(row.values)
            rate = _REFORMAT_RATE_PLANTED if row.planted else _REFORMAT_RATE
            if not row.invalid and w.rng.random() < rate:
                values[0] = _reformat(w.rng, values[0], kind)
            writer.writerow(values)


_SQL_TYPES = {"string": "TEXT", "date": "TEXT", "int": "INTEGER"}
_PRIMARY_KEYS = {"companies": "uscc", "insured_employees": "uscc, period", "vehicles": "plate"}


def _write_sqlite(out_dir: pathlib.Path, dataset: str, rows: Iterable[Sequence[Any]]) -> None:
    ds = _dataset(dataset)
    path = out_dir / ds.source["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    table = ds.source["table"]
    columns = ", ".join(f"{f.name} {_SQL_TYPES[f.type]} NOT NULL" for f in ds.fields)
    placeholders = ", ".join("?" for _ in ds.fields)
    conn = sqlite3.connect(path)
    try:
        with conn:
            primary_key = _PRIMARY_KEYS[dataset]
            conn.execute(f"CREATE TABLE {table} ({columns}, PRIMARY KEY ({primary_key}))")
            conn.executemany(f"INSERT INTO {table} VALUES ({placeholders})", rows)
    finally:
        conn.close()


def _dataset(name: str) -> DemoDataset:
    for dept in DEPARTMENTS:
        for ds in dept.datasets:
            if ds.name == name:
                return ds
    raise KeyError(name)


# ---------------------------------------------------------------------------
# Ground truth, recomputed from the files as written
# ---------------------------------------------------------------------------


def _read(out_dir: pathlib.Path, ds: DemoDataset) -> list[dict[str, Any]]:
    path = out_dir / ds.source["path"]
    if ds.source["kind"] == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.row_factory = sqlite3.Row
        names = ", ".join(f.name for f in ds.fields)
        query = f"SELECT {names} FROM {ds.source['table']} ORDER BY rowid"
        return [dict(r) for r in conn.execute(query)]
    finally:
        conn.close()


def _ground_truth(out_dir: pathlib.Path, rows: int, seed: int) -> dict[str, Any]:
    data: dict[str, list[dict[str, Any]]] = {}
    datasets: dict[str, dict[str, int]] = {}
    invalid: dict[str, int] = {}
    for dept in DEPARTMENTS:
        for ds in dept.datasets:
            qualified = f"{dept.code}.{ds.name}"
            records = _read(out_dir, ds)
            n_invalid = n_reformatted = 0
            for rec in records:
                for f in ds.fields:
                    if f.key is None:
                        continue
                    raw = rec[f.name]
                    try:
                        canonical = normalise(f.key, raw)
                    except InvalidIdentifier:
                        n_invalid += 1
                        rec[f.name] = None  # excluded from every match
                        continue
                    n_reformatted += canonical != raw
                    rec[f.name] = canonical
            data[qualified] = records
            invalid[qualified] = n_invalid
            datasets[qualified] = {
                "rows": len(records),
                "invalid_identifiers": n_invalid,
                "non_canonical_identifiers": n_reformatted,
            }

    subsidies = [r for r in data["hrss.subsidies"] if r["uscc"] is not None]
    insured = {
        r["uscc"]: int(r["insured_employees"]) for r in data["tax.insured_employees"] if r["uscc"]
    }
    status = {r["uscc"]: r["status"] for r in data["samr.companies"] if r["uscc"]}

    compared = [r for r in subsidies if r["uscc"] in insured]
    flagged = [r for r in compared if int(r["claimed_insured"]) > insured[r["uscc"]]]
    overclaimers = sorted({r["uscc"] for r in flagged})
    if len(overclaimers) != _OVERCLAIMERS:
        raise AssertionError(f"planted {_OVERCLAIMERS} overclaimers, found {len(overclaimers)}")

    def subsidy_totals(selected: list[dict[str, Any]]) -> dict[str, int]:
        return {
            "rows": len(selected),
            "companies": len({r["uscc"] for r in selected}),
            "amount_fen": sum(int(r["amount_fen"]) for r in selected),
        }

    to_closed = [r for r in subsidies if status.get(r["uscc"]) in _CLOSED]

    died = {r["resident_id"]: r["died_on"] for r in data["civil.deaths"] if r["resident_id"]}
    pensions = [r for r in data["hrss.pensions"] if r["resident_id"] is not None]
    in_deaths = [r for r in pensions if r["resident_id"] in died]
    paid_after_death = [r for r in in_deaths if died[r["resident_id"]] < r["last_paid_on"]]

    allowances = [r for r in data["civil.allowances"] if r["resident_id"] is not None]
    vehicles_by_owner: dict[str, int] = {}
    for r in data["vehicle.vehicles"]:
        if r["owner_id"]:
            vehicles_by_owner[r["owner_id"]] = vehicles_by_owner.get(r["owner_id"], 0) + 1
    owning = [r for r in allowances if r["resident_id"] in vehicles_by_owner]
    companies_by_rep: dict[str, list[str]] = {}
    for r in data["samr.companies"]:
        if r["legal_rep_id"]:
            companies_by_rep.setdefault(r["legal_rep_id"], []).append(r["status"])
    reps = [r for r in allowances if r["resident_id"] in companies_by_rep]
    rep_statuses = [s for r in reps for s in companies_by_rep[r["resident_id"]]]

    return {
        "seed": seed,
        "rows": rows,
        "snapshot_date": _SNAPSHOT.isoformat(),
        "matching": (
            "identifiers are compared after fedgate.crypto.ids normalisation; a row whose "
            "identifier is invalid is excluded from every match and every count below"
        ),
        "datasets": datasets,
        "invalid_identifiers": invalid,
        "overclaim": {
            "rule": (
                "hrss.subsidies rows whose claimed_insured > insured_employees of the same USCC "
                f"in tax.insured_employees (period {_PERIOD}); equal values are not flagged"
            ),
            "usccs": overclaimers,
            "companies": len(overclaimers),
            "flagged_rows": len(flagged),
            "compared_rows": len(compared),
            "tied_rows": sum(int(r["claimed_insured"]) == insured[r["uscc"]] for r in compared),
        },
        "subsidies_to_closed_companies": {
            "rule": (
                "hrss.subsidies rows whose USCC has status 吊销 (revoked) or 注销 (deregistered) "
                "in samr.companies; amount_fen is the sum of their amount_fen"
            ),
            **subsidy_totals(to_closed),
            "by_status": {
                s: subsidy_totals([r for r in to_closed if status[r["uscc"]] == s]) for s in _CLOSED
            },
        },
        "pensions_to_deceased": {
            "rule": (
                "hrss.pensions rows whose resident_id is in civil.deaths with died_on strictly "
                "before last_paid_on; monthly_amount_fen is the sum of their monthly_amount_fen"
            ),
            "rows": len(paid_after_death),
            "monthly_amount_fen": sum(int(r["monthly_amount_fen"]) for r in paid_after_death),
            "pensioners_in_deaths_rule": (
                "hrss.pensions rows whose resident_id is in civil.deaths at all (ID only, no dates)"
            ),
            "pensioners_in_deaths": len(in_deaths),
            "pensioners_in_deaths_monthly_amount_fen": sum(
                int(r["monthly_amount_fen"]) for r in in_deaths
            ),
        },
        "allowance_vehicle_owners": {
            "rule": "civil.allowances rows whose resident_id is an owner_id in vehicle.vehicles",
            "count": len(owning),
            "distinct": len({r["resident_id"] for r in owning}),
            "vehicles": sum(vehicles_by_owner[r] for r in {r["resident_id"] for r in owning}),
        },
        "allowance_company_reps": {
            "rule": (
                "civil.allowances rows whose resident_id is a legal_rep_id in samr.companies "
                "(any status)"
            ),
            "count": len(reps),
            "distinct": len({r["resident_id"] for r in reps}),
            "companies": len(rep_statuses),
            "companies_by_status": {s: rep_statuses.count(s) for s in (_ACTIVE, *_CLOSED)},
        },
    }
