"""The department's row-set history: keyed references, the symmetric-difference rule, window, agencies, durability."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from pyroaring import BitMap64

from fedgate.adapters.row_history import (
    RefBasis,
    RowHistory,
    RowRefs,
    RowSets,
    load_or_create_secret,
    ref_basis,
)
import support
from fedgate.adapters.sources.csv_file import CsvSource
from fedgate.core.datasets import DatasetDecl, FieldDecl
from fedgate.core.filters import parse_checked
from fedgate.crypto.ids import make_uscc
from fedgate.query.match_side import JoinSide
from fedgate.core.errors import FailedPrecondition
from fedgate.core.classification import default_levels
from fedgate.query.audit_params import QueryParams
from fedgate.query.safeguards import AnswerRows, DifferenceRefused, Release, Safeguards

SECRET = bytes(range(32))
DAY = 86_400.0
K = 5


def _answer(refs: range | list[int], agency: str = "dcb", dataset: str = "pensions", filter_text: str = "f",
            total: int = 10_000) -> AnswerRows:
    return AnswerRows(agency, dataset, BitMap64(refs), total, filter_text)


@pytest.fixture
def history(tmp_path: Path) -> RowHistory:
    h = RowHistory(tmp_path / "row_sets.db", SECRET, window_days=90, max_sets=50)
    yield h
    h.close()


@pytest.mark.parametrize("desc, second, filter_text, recorded", [
    ("one row removed", range(1, 200), "g", False),
    ("k-1 rows added", range(0, 204), "g", False),
    ("k rows removed", range(5, 200), "g", True),
    ("disjoint", range(1000, 1200), "g", True),
    ("a repeat: same set, same filter", range(0, 200), "f", True),
    ("the same set under another filter", range(0, 200), "g", False),
], ids=lambda v: v if isinstance(v, str) else "")
def test_symmetric_difference_rule(history: RowHistory, desc: str, second: range, filter_text: str,
                                   recorded: bool) -> None:
    assert history.record_unless_near(_answer(range(0, 200)), K, now=0.0)
    assert history.record_unless_near(_answer(second, filter_text=filter_text), K, now=1.0) is recorded


def test_a_repeat_is_kept_once(history: RowHistory) -> None:
    for t in range(3):
        assert history.record_unless_near(_answer(range(0, 200)), K, now=float(t))
    assert history.kept("dcb", "pensions") == 1


def test_agencies_and_datasets_are_apart(history: RowHistory) -> None:
    assert history.record_unless_near(_answer(range(0, 200)), K, now=0.0)
    assert history.record_unless_near(_answer(range(1, 200), agency="nao"), K, now=1.0)  # another agency
    assert history.record_unless_near(_answer(range(1, 200), dataset="deaths"), K, now=2.0)  # another dataset
    assert not history.record_unless_near(_answer(range(1, 200)), K, now=3.0)  # same agency, same dataset


def test_sets_past_the_window_are_dropped(history: RowHistory) -> None:
    assert history.record_unless_near(_answer(range(0, 200)), K, now=0.0)
    assert not history.record_unless_near(_answer(range(1, 200), filter_text="g"), K, now=89 * DAY)
    assert history.record_unless_near(_answer(range(1, 200), filter_text="g"), K, now=91 * DAY)
    assert history.kept("dcb", "pensions") == 1  # the old set is gone, the new one kept


def test_the_number_kept_is_capped(history: RowHistory) -> None:
    for i in range(60):
        assert history.record_unless_near(_answer(range(i * 100, i * 100 + 50), filter_text=str(i)), K, now=i)
    assert history.kept("dcb", "pensions") == 50


def test_the_history_survives_a_restart(tmp_path: Path) -> None:
    first = RowHistory(tmp_path / "row_sets.db", SECRET)
    assert first.record_unless_near(_answer(range(0, 200)), K, now=0.0)
    first.close()
    again = RowHistory(tmp_path / "row_sets.db", SECRET)
    try:
        assert not again.record_unless_near(_answer(range(1, 200), filter_text="g"), K, now=1.0)
    finally:
        again.close()


def test_the_secret_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "row_refs.key"
    secret = load_or_create_secret(path)
    assert len(secret) == 32 and load_or_create_secret(path) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


DECL = DatasetDecl("hrss", "pensions", (
    FieldDecl.build("name", "string", "L3"),
    FieldDecl.build("resident_id", "string", "L4", "resident_id"),
))


def test_references_are_keyed_normalised_and_count_every_row() -> None:
    basis = ref_basis(DECL)
    assert basis.columns == ("resident_id",) and basis.kind == "resident_id"
    rid = "11010519491231002X"

    def refs(secret: bytes, values: list[object]) -> RowRefs:
        r = RowRefs(secret, basis)
        r.add_rows([(v,) for v in values])
        return r

    one = refs(SECRET, [rid])
    assert one.refs == refs(SECRET, [rid.lower()]).refs  # normalised as matching does
    assert one.refs != refs(bytes(32), [rid]).refs        # keyed: another department's references differ
    assert int.from_bytes(rid.encode()[:8], "big") not in one.refs
    # A person with two rows, an invalid key and missing keys: every row has a reference of its own.
    many = refs(SECRET, [rid, rid, "not-an-id", None, None])
    assert many.rows == len(many.refs) == 5


def test_rows_without_a_key_are_referenced_by_content() -> None:
    """Every declared dataset has a key field today; a basis of whole rows is ready for one that has none."""
    r = RowRefs(SECRET, RefBasis(("a", "b"), None))
    r.add_rows([("x", 1), ("x", 2), ("x", 1)])
    assert r.rows == len(r.refs) == 3


def _params(**numbers: int) -> QueryParams:
    params = QueryParams()
    for name, value in numbers.items():
        setattr(params, name, value)
    return params


def test_the_safeguard_refuses_near_sets_and_skips_what_others_refuse(tmp_path: Path) -> None:
    sets = RowSets.open(tmp_path)
    try:
        pipeline = Safeguards.for_department(default_levels(), sets.history)
        params = _params(min_aggregate=K)
        pipeline.release(Release(params, answer=_answer(range(0, 200), total=1000)))
        with pytest.raises(DifferenceRefused) as refused:
            pipeline.release(Release(params, answer=_answer(range(1, 200), filter_text="g", total=1000)))
        assert isinstance(refused.value, FailedPrecondition) and "safeguard difference" in str(refused.value)
        assert "199" not in str(refused.value) and "200" not in str(refused.value)  # no size told
        # Fewer than k rows, or leaving out fewer than k: min_aggregate's business, neither checked nor kept.
        pipeline.release(Release(params, answer=_answer(range(0, 3), filter_text="small", total=1000)))
        pipeline.release(Release(params, answer=_answer(range(0, 998), filter_text="most", total=1000)))
        # No threshold logged (k <= 1): no check.
        pipeline.release(Release(QueryParams(), answer=_answer(range(2, 200), filter_text="h", total=1000)))
        assert sets.history.kept("dcb", "pensions") == 1
    finally:
        sets.history.close()


# --- a self-join's matched rows ---

SUBSIDIES = DatasetDecl("hrss", "subsidies", (
    FieldDecl.build("uscc", "string", "L3", "uscc"),
    FieldDecl.build("amount_fen", "int", "L3"),
    FieldDecl.build("band", "string", "L2"),
))


def _subsidies(tmp_path: Path) -> CsvSource:
    """Companies 1-6 (company 1 twice), a row with an invalid code and one without an amount, in bands a/b."""
    rows = [(make_uscc(f"91330100MA{i:07d}"), 100 * i, band) for i, band in
            [(1, "a"), (1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "b")]]
    rows += [("91330100MA0000000X", 700, "a"), (make_uscc("91330100MA0000009"), None, "a")]
    path = tmp_path / "subsidies.csv"
    path.write_text("uscc,amount_fen,band\n" + "".join(f"{u},{'' if a is None else a},{b}\n" for u, a, b in rows),
                    encoding="utf-8")
    return CsvSource(path, SUBSIDIES.field_types)


def _side(text: str, values: tuple[str, ...] = ()) -> JoinSide:
    return JoinSide("uscc", text, parse_checked(text, SUBSIDIES.field_types), values)


def test_a_self_join_checks_both_sides_then_the_matched_rows(tmp_path: Path) -> None:
    source, sets = _subsidies(tmp_path), RowSets.open(tmp_path)
    try:
        def refs(text: str) -> BitMap64:
            return sets.read(source, SUBSIDIES, parse_checked(text, SUBSIDIES.field_types)).refs

        def self_join(left: str, right: str, values: tuple[str, ...] = ()) -> list[AnswerRows]:
            return sets.self_join(str(support.SUPERVISOR), SUBSIDIES, source, _side(left, values), _side(right), 9)

        companies_1_2_4_5_6 = "amount_fen >= 100 and amount_fen < 300 or band = 'b'"
        left, right, matched = self_join("band = 'a'", companies_1_2_4_5_6)
        assert (left.refs, left.filter_text, left.matched) == (refs("band = 'a'"), "band = 'a'", False)
        assert right.refs == refs(companies_1_2_4_5_6) and not right.matched
        assert matched.matched and matched.agency == "dcb" and matched.total_rows == 9
        # Company 1's two rows and company 2's match; companies 3 and 9 find none. The invalid code makes no
        # token: it stays, as the answer reports it apart (|left| - invalid - unmatched).
        assert len(matched.refs) == 4 and matched.refs == refs("band = 'a' and not amount_fen = 300")
        # In a sum, company 9's row, without an amount, makes no token either: it stays too.
        *_, summed = self_join("band = 'a'", companies_1_2_4_5_6, ("amount_fen",))
        assert summed.filter_text != matched.filter_text
        assert summed.refs == refs("band = 'a' and (amount_fen is null or not amount_fen = 300)")
        # Every left token matched, or the matched rows are the right side's token rows: the answer tells
        # nothing the sides' do not, and only the sides are checked.
        assert len(self_join("band = 'a'", "")) == 2
        assert len(self_join("", "band = 'b'")) == 2
    finally:
        sets.history.close()


def test_a_kept_matched_set_is_held_to_its_own_k(history: RowHistory) -> None:
    """A self-join's matched rows are an aggregate's set (k = min_aggregate): a side checked later at its larger
    k is near it only within the smaller k, as the matched set itself was checked."""
    assert history.record_unless_near(AnswerRows("dcb", "pensions", BitMap64(range(0, 200)), 10_000, "m",
                                                 matched=True), K, now=0.0)
    assert not history.record_unless_near(_answer(range(4, 200), filter_text="side"), 100, now=1.0)
    assert history.record_unless_near(_answer(range(10, 200), filter_text="side"), 100, now=2.0)
    assert not history.record_unless_near(_answer(range(20, 200), filter_text="other"), 100, now=3.0)  # vs the side


def test_a_history_kept_before_is_read(tmp_path: Path) -> None:
    """A file from before the `bar` and `format` columns, its set a pyroaring BitMap64: still compared."""
    path = tmp_path / "row_sets.db"
    conn = sqlite3.connect(path)
    conn.executescript("""CREATE TABLE row_sets (
        id INTEGER PRIMARY KEY AUTOINCREMENT, agency TEXT NOT NULL, dataset TEXT NOT NULL,
        answered_at REAL NOT NULL, rows INTEGER NOT NULL, filter_tag BLOB NOT NULL, refs BLOB NOT NULL);""")
    conn.execute("INSERT INTO row_sets (agency, dataset, answered_at, rows, filter_tag, refs) VALUES (?, ?, ?, ?, ?, ?)",
                 ("dcb", "pensions", 0.0, 200, b"old", BitMap64(range(0, 200)).serialize()))
    conn.commit()
    conn.close()
    history = RowHistory(path, SECRET)
    try:
        assert not history.record_unless_near(_answer(range(1, 200)), 100, now=1.0)  # the old set, at the new k
        assert history.record_unless_near(_answer(range(300, 500)), 100, now=2.0)
        assert history.kept("dcb", "pensions") == 2
    finally:
        history.close()
