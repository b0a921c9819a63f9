"""Two departments' people with a planted overlap of resident IDs, for benchmarks, load and fault tests.

Each side is a CSV of ``resident_id,value`` rows; one row in 50 per side has an
invalid (or missing) identifier, so the expected match size is known exactly.
`people_departments` declares the two sides for the deployment helper.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedgate.crypto.ids import make_resident_id, normalise, resident_id_check_char
from fedgate.demo.deployment import DatasetSpec, DepartmentSpec, fields

LEFT, RIGHT = "hrss", "civil"
REGION = "330106"
BIRTH0 = dt.date(1940, 1, 1)
CHECK = "10X98765432"     # GB 11643 check character for (weighted sum mod 11)
INVALID_EVERY = 50        # one row in 50 per side has an invalid (or missing) identifier


@dataclass(frozen=True)
class DataSet:
    size: int
    overlap: float
    left_csv: Path
    right_csv: Path
    common: int           # identifiers planted on both sides
    left_invalid: int
    right_invalid: int
    expected: int         # planted common identifiers valid on both sides


def _id_factory() -> Any:
    """Pool index -> valid resident ID, fast: check characters from per-day and per-sequence classes.

    Day d (from 1940-01-01) and sequence s = index // 1000, index % 1000. The GB 11643 check
    character depends only on the weighted digit sum mod 11, which is additive over positions, so
    the class of the 14-character prefix and of the 3-digit sequence are computed once each with
    the package's own ``resident_id_check_char`` (zeros contribute nothing to the sum).
    """
    seq = [f"{s:03d}" for s in range(1000)]
    seq_class = [CHECK.index(resident_id_check_char("0" * 14 + x)) for x in seq]
    prefixes: dict[int, tuple[str, int]] = {}

    def make(index: int) -> str:
        day, s = divmod(index, 1000)
        got = prefixes.get(day)
        if got is None:
            prefix = f"{REGION}{BIRTH0 + dt.timedelta(days=day):%Y%m%d}"
            got = prefixes[day] = (prefix, CHECK.index(resident_id_check_char(prefix + "000")))
        prefix, cls = got
        return prefix + seq[s] + CHECK[(cls + seq_class[s]) % 11]

    return make


def _invalid(ident: str, row: int) -> str:
    """Every other invalid row has a wrong check character; the rest have no identifier at all."""
    if (row // INVALID_EVERY) % 2:
        return ""
    return ident[:-1] + CHECK[(CHECK.index(ident[-1]) + 1) % 11]


def make_dataset(workdir: Path, size: int, overlap: float, seed: int = 20261129,
                 say: Callable[[str], None] = lambda _: None) -> DataSet:
    """Two CSV files of `size` rows (cached by size and overlap): left pool ids [0, N), right [N-c, 2N-c)."""
    common = round(size * overlap)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    stem = f"n{size}-o{overlap:g}"
    left_csv, right_csv = data / f"{stem}-left.csv", data / f"{stem}-right.csv"
    # Row j of a side is its j-th pool id; invalid rows by position, at different phases per side.
    def left_bad(j: int) -> bool:
        return j % INVALID_EVERY == 7

    def right_bad(j: int) -> bool:
        return j % INVALID_EVERY == 23

    start_right = size - common
    expected = sum(1 for p in range(start_right, size) if not left_bad(p) and not right_bad(p - start_right))
    left_invalid = sum(1 for j in range(size) if left_bad(j))
    right_invalid = sum(1 for j in range(size) if right_bad(j))
    ds = DataSet(size, overlap, left_csv, right_csv, common, left_invalid, right_invalid, expected)
    meta = data / f"{stem}.json"
    if left_csv.exists() and right_csv.exists() and meta.exists() and json.loads(meta.read_text()) == _meta(ds):
        return ds
    t0 = time.perf_counter()
    make = _id_factory()
    # The fast path must agree with the package's own constructor.
    for index in (0, 1, 999, 1000, 123_457, 2 * size - 1):
        day, s = divmod(index, 1000)
        assert make(index) == make_resident_id(REGION, BIRTH0 + dt.timedelta(days=day), s), index
    rng = random.Random(seed)
    for path, offset, bad in ((left_csv, 0, left_bad), (right_csv, start_right, right_bad)):
        ids = [make(offset + j) for j in range(size)]
        for j in range(size):
            if bad(j):
                ids[j] = _invalid(ids[j], j)
        rows = [f"{ident},{rng.randrange(1, 1_000_000)}" for ident in ids]
        rng.shuffle(rows)   # a realistic file is in no particular order
        tmp = path.with_suffix(".tmp")
        tmp.write_text("resident_id,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
        tmp.replace(path)
    meta.write_text(json.dumps(_meta(ds)))
    say(f"generated {stem}: 2 x {size:,} rows in {time.perf_counter() - t0:.1f} s")
    return ds


def _meta(ds: DataSet) -> dict[str, Any]:
    return {"size": ds.size, "overlap": ds.overlap, "common": ds.common, "expected": ds.expected,
            "left_invalid": ds.left_invalid, "right_invalid": ds.right_invalid, "version": 1}


def read_ids(path: Path) -> list[str]:
    """The identifier column of one side, as written."""
    with path.open(encoding="utf-8") as fh:
        next(fh)
        return [line.split(",", 1)[0] for line in fh]


def valid_ids(raw: list[str]) -> list[bytes]:
    """The canonical forms of the valid identifiers among `raw`."""
    out = []
    for value in raw:
        if value:
            try:
                out.append(normalise("resident_id", value).encode())
            except Exception:
                pass
    return out


PEOPLE_FIELDS = fields("resident_id:string:L4:resident_id value:int:L3")


def parquet_path(csv: Path) -> Path:
    """Where a side's rows are kept as Parquet, for Spark sources (`bench.spark_match` writes them)."""
    return csv.with_suffix(".parquet")


def people_departments(certs: Path, workers: int, datasets: Sequence[tuple[str, DataSet]],
                       register_timeout_s: int = 60, source: str = "csv") -> tuple[DepartmentSpec, DepartmentSpec]:
    """hrss (left sides) and civil (right sides), each serving the named data sets as CSV datasets, or with
    `source="spark"` as the same rows in Parquet read through Spark (local mode, every core)."""
    def table(path: Path) -> dict[str, str]:
        if source == "spark":
            return {"kind": "spark", "path": str(parquet_path(path)), "format": "parquet"}
        return {"kind": "csv", "path": str(path)}

    def side(code: str, pick: Callable[[DataSet], Path]) -> DepartmentSpec:
        decls = [DatasetSpec(name, "benchmark people", table(pick(ds)), PEOPLE_FIELDS) for name, ds in datasets]
        return DepartmentSpec.in_dir(code, decls, certs, data_dir=Path("adapter-data") / code, workers=workers,
                                     register_timeout_s=register_timeout_s)

    return side(LEFT, lambda ds: ds.left_csv), side(RIGHT, lambda ds: ds.right_csv)
