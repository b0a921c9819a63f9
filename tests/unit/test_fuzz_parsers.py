"""Hostile-input fuzzing (hypothesis) of the parsers that read what others send us.

Three families, each with a bounded budget so the file runs in CI in seconds:

- the identifier normaliser (``fedgate.crypto.ids``): any text is either
  normalised to a canonical value or refused with ``InvalidIdentifier``;
- the filter language (``fedgate.core.filters``): any text is either parsed or
  refused with ``InvalidInput``, never echoing a literal; injection attempts
  stay data;
- the checkpoint, Merkle proof and ticket verifiers: garbage and mutated valid
  inputs raise only the documented errors and are never accepted as something
  they are not.

The budget is ``FUZZ`` (examples per property) and the database is off, so a
run writes nothing to the working tree and takes the same time everywhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import string
import time
import unicodedata
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fedgate.core import filters
from fedgate.crypto import ids
from fedgate.crypto.checkpoint import (
    Checkpoint,
    encode_verifier_key,
    open_note,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)
from fedgate.crypto.ids import IdKind, NormalisedId
from fedgate.crypto.merkle import (
    RFC6962_SHA256,
    consistency_proof,
    inclusion_proof,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from fedgate.crypto.ticket import (
    DEFAULT_CLOCK_SKEW_S,
    StaleBase,
    Ticket,
    TicketClaims,
    TicketRefused,
    sign_claims,
    verify_ticket,
)
from fedgate.core.datasets import FieldType
from fedgate.core.errors import (
    InvalidIdentifier,
    InvalidInput,
    LocalProtocolError,
    MalformedProof,
    RootMismatch,
    VerificationError,
)
from fedgate.core.filters import And, Comparison, Filter, InList, IsNull, Not, Or

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
# Properties that sign or verify Ed25519 per example get a smaller share of the budget.
FUZZ_CRYPTO = settings(FUZZ, max_examples=200)

H = RFC6962_SHA256


# ===========================================================================
# Identifier normaliser
# ===========================================================================

# Everything _compact drops between characters: ASCII and ideographic spaces, tabs,
# line breaks, no-break space, hyphens and dashes (ASCII, full-width, em, minus),
# zero-width space and byte-order mark.
_SEPARATORS = [" ", "  ", "\u3000", "\t", "\n", "\u00a0", "-", "\uff0d", "\u2014", "\u2212", "\u200b", "\ufeff"]
# Characters that look like identifier material but are not (or only after folding).
_ID_NOISE = ("IOSVZiosvz" "０１９Ｘｘ" "①⑩" "\x00\x1b\x7f" "\u202e\u0301" "ß" "ı")
_ID_CHARS = st.sampled_from(sorted(set(string.digits + ids.USCC_ALPHABET + "x" + "".join(_SEPARATORS) + _ID_NOISE)))


def _repeat(args: tuple[str, int]) -> str:
    return args[0] * args[1]


ANY_ID_TEXT = st.one_of(
    st.text(max_size=40),                                                     # any Unicode but surrogates
    st.text(_ID_CHARS, max_size=40),                                          # near-identifiers
    st.text(st.characters(categories=("Cc", "Cf", "Zs", "Nd", "Pd")), max_size=30),
    st.tuples(st.text(min_size=1, max_size=3), st.integers(30, 4000)).map(_repeat),  # up to 12,000 chars
    # Characters NFKC lengthens (to 3, 18, 2, 3 characters), repeated up to and past the bound.
    st.tuples(st.sampled_from(["\u00bc", "\ufdfa", "\u337b", "\u2026"]), st.integers(200, 4200)).map(_repeat),
)


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    region = draw(st.text(string.digits, min_size=6, max_size=6))
    birth = draw(st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)))
    return ids.make_resident_id(region, birth, draw(st.integers(0, 999)))


@st.composite
def usccs(draw: st.DrawFn) -> str:
    letters = st.sampled_from(ids.USCC_ALPHABET)
    head = draw(st.text(letters, min_size=2, max_size=2))
    region = draw(st.text(string.digits, min_size=6, max_size=6))
    tail = draw(st.text(letters, min_size=9, max_size=9))
    return ids.make_uscc(head + region + tail)


VALID_IDS = st.one_of(st.tuples(st.just(IdKind.RESIDENT_ID), resident_ids()),
                      st.tuples(st.just(IdKind.USCC), usccs()))


def _full_width(c: str) -> str:
    return chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c


@st.composite
def reformatted(draw: st.DrawFn, canonical: str) -> str:
    """``canonical`` as people and spreadsheets type it: mixed widths and case, separators anywhere."""
    out = [draw(st.sampled_from(["", *_SEPARATORS]))]
    for c in canonical:
        c = draw(st.sampled_from([c, c.lower(), _full_width(c), _full_width(c.lower())]))
        out.append(c + draw(st.sampled_from(["", "", "", *_SEPARATORS])))
    return "".join(out)


def _assert_clean_id_refusal(err: InvalidIdentifier) -> None:
    """Messages are fixed ASCII sentences: no input character, no run of identifier digits."""
    message = str(err)
    assert message.isascii() and len(message) < 200, message
    assert not re.search(r"[0-9A-Z]{6}", message.replace("USCC", "").replace("GB 32100", "")), message


@FUZZ
@given(kind=st.sampled_from(list(IdKind)), text=ANY_ID_TEXT)
def test_any_text_is_normalised_or_refused_with_invalid_identifier(kind: IdKind, text: str) -> None:
    try:
        value = ids.normalise(kind, text)
    except InvalidIdentifier as err:
        _assert_clean_id_refusal(err)
        assert not ids.is_valid(kind, text)
        return
    # Canonical output is a fixed point, and every entry point agrees on it.
    assert ids.normalise(kind, value) == value
    assert ids.normaliser(kind)(text) == value
    assert ids.normaliser(kind.value)(value) == value
    assert NormalisedId.parse(kind, text).value == value
    if kind is IdKind.PLAIN:
        assert value == value.strip() and "  " not in value and value
        assert unicodedata.is_normalized("NFKC", value)
    else:
        assert len(value) == 18 and value.isascii() and value == value.upper()
        check = ids.resident_id_check_char if kind is IdKind.RESIDENT_ID else ids.uscc_check_char
        assert check(value[:17]) == value[17]


@FUZZ
@given(kind=st.sampled_from(list(IdKind)), value=st.one_of(
    st.none(), st.integers(), st.binary(max_size=20), st.lists(st.text(max_size=3), max_size=3),
    st.floats(allow_nan=False), st.booleans()))
def test_non_text_is_refused_with_invalid_identifier(kind: IdKind, value: object) -> None:
    assert ids.is_valid(kind, value) is False
    with pytest.raises(InvalidIdentifier) as err:
        ids.normalise(kind, value)  # type: ignore[arg-type]
    _assert_clean_id_refusal(err.value)


@FUZZ
@given(kind=st.text(max_size=20).filter(lambda k: k not in {k.value for k in IdKind}), text=st.text(max_size=20))
def test_unknown_kind_is_a_declaration_error_not_a_bad_value(kind: str, text: str) -> None:
    for call in (lambda: ids.normalise(kind, text), lambda: ids.normaliser(kind)):
        with pytest.raises(InvalidInput) as err:
            call()
        assert not isinstance(err.value, InvalidIdentifier)
        assert "unknown identifier kind" in str(err.value)


@FUZZ
@given(data=st.data(), pair=VALID_IDS)
def test_valid_identifiers_survive_reformatting(data: st.DataObject, pair: tuple[IdKind, str]) -> None:
    kind, canonical = pair
    assert ids.normalise(kind, canonical) == canonical
    raw = data.draw(reformatted(canonical))
    assert len(raw) <= 100  # within the documented bound on raw identifier text
    assert ids.normalise(kind, raw) == canonical


@FUZZ
@given(pair=VALID_IDS, pad=st.integers(83, 10_000), where=st.sampled_from(["before", "after"]))
def test_over_long_raw_identifiers_are_refused_unread(pair: tuple[IdKind, str], pad: int, where: str) -> None:
    kind, canonical = pair
    raw = " " * pad + canonical if where == "before" else canonical + " " * pad
    # This thread's CPU time, not wall time: a blow-up (backtracking, deep recursion) shows in it, and
    # other processes on a loaded machine (two CI runs at once) do not.
    start = time.thread_time()
    with pytest.raises(InvalidIdentifier, match="longer than 100 characters") as err:
        ids.normalise(kind, raw)
    assert time.thread_time() - start < 0.5
    _assert_clean_id_refusal(err.value)


def test_plain_canonical_form_stays_within_its_bound() -> None:
    """NFKC lengthens '¼' threefold: a canonical form beyond the bound would not normalise again."""
    grown = "00\u00bc" * 820  # 2,460 characters in, 4,100 once normalised
    with pytest.raises(InvalidIdentifier, match="once normalised") as err:
        ids.normalise(IdKind.PLAIN, grown)
    _assert_clean_id_refusal(err.value)
    fits = "00\u00bc" * 819  # 4,095 once normalised: accepted, and a fixed point
    value = ids.normalise(IdKind.PLAIN, fits)
    assert len(value) == 4095 and ids.normalise(IdKind.PLAIN, value) == value
    assert NormalisedId.parse(IdKind.PLAIN, fits).value == value


_REPLACEMENTS = st.one_of(st.sampled_from(sorted(set(string.digits + ids.USCC_ALPHABET + "x" + _ID_NOISE))),
                          st.characters(), st.sampled_from(string.digits).map(_full_width))


@FUZZ
@given(pair=VALID_IDS, pos=st.integers(0, 17), new=_REPLACEMENTS)
def test_a_changed_character_is_refused_or_is_the_same_character(pair: tuple[IdKind, str], pos: int,
                                                                   new: str) -> None:
    kind, canonical = pair
    changed = canonical[:pos] + new + canonical[pos + 1:]
    try:
        value = ids.normalise(kind, changed)
    except InvalidIdentifier as err:
        _assert_clean_id_refusal(err)
        for i in range(13):
            assert canonical[i:i + 6] not in str(err)
        return
    # Accepted only when the new character is another spelling of the old one
    # (full-width, lower case): the check character catches every real substitution.
    assert value == canonical, (canonical, changed, value)
    assert new == canonical[pos] or unicodedata.normalize("NFKC", new).upper() == canonical[pos], repr(new)


@FUZZ
@given(pair=VALID_IDS, pos=st.integers(0, 16))
def test_adjacent_transpositions_are_refused(pair: tuple[IdKind, str], pos: int) -> None:
    kind, canonical = pair
    assume(canonical[pos] != canonical[pos + 1])
    swapped = canonical[:pos] + canonical[pos + 1] + canonical[pos] + canonical[pos + 2:]
    with pytest.raises(InvalidIdentifier) as err:
        ids.normalise(kind, swapped)
    _assert_clean_id_refusal(err.value)


@FUZZ
@given(pair=VALID_IDS)
def test_normalised_ids_never_show_their_value(pair: tuple[IdKind, str]) -> None:
    kind, canonical = pair
    wrapped = NormalisedId.parse(kind, canonical)
    assert canonical not in repr(wrapped) and canonical not in str(wrapped)
    with pytest.raises(InvalidIdentifier) as err:
        NormalisedId(kind, canonical.lower() + " ")
    assert canonical.lower() not in str(err.value)


# ===========================================================================
# Filter language
# ===========================================================================

TYPES = {"amount": FieldType.INT, "name": FieldType.STRING, "born": FieldType.DATE}
_MESSAGE = re.compile(r"^filter: [^\n]{1,160}$")

# Tokens of the language, near-misses and the furniture of SQL injection.
_TOKENS = st.sampled_from([
    "amount", "name", "born", "Name", "_x", "and", "AND", "or", "Or", "not", "NOT", "in", "is", "null", "NULL",
    "=", "!=", "<", "<=", ">", ">=", "==", "<>", "!", "(", ")", ",", "'", "''", "'x'", "'it''s'", "'张三'",
    "0", "7", "-5", "007", "1.5", "1e5", "0x10", "99999999999999999999", "-", ";", "--", "/*", "*/", "#",
    "DROP", "TABLE", "SELECT", "UNION", "1=1", "'1'='1", "\"", "\\", "`", "%", "\x00", "\u202e", "\u200b",
    "（", "“", "\u3000", "\t", "\n", "\r",
])


def _soup(parts: list[str]) -> str:
    return " ".join(parts)


ANY_FILTER_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(_TOKENS, max_size=40).map(_soup),
    st.lists(st.one_of(_TOKENS, st.text(max_size=4)), max_size=30).map("".join),
    st.tuples(st.sampled_from(["(", "not ", "'", "9", "a", "a = 1 or ", "\x00"]), st.integers(100, 5000)).map(_repeat),
)


def _assert_clean_filter_refusal(err: InvalidInput) -> None:
    message = str(err)
    assert _MESSAGE.match(message), message
    if isinstance(err, filters.FilterSyntaxError):
        assert message.endswith(f" at position {err.position}")


@FUZZ
@given(text=ANY_FILTER_TEXT)
def test_any_text_is_parsed_or_refused_with_invalid_input(text: str) -> None:
    try:
        f = filters.parse(text)
    except InvalidInput as err:
        _assert_clean_filter_refusal(err)
        with pytest.raises(InvalidInput):
            filters.parse_checked(text, TYPES)
        return
    assert filters.parse(filters.to_text(f)) == f
    assert "'" not in filters.redacted_text(f)
    try:
        checked = filters.parse_checked(text, TYPES)
    except InvalidInput as err:
        _assert_clean_filter_refusal(err)
    else:
        assert checked == f


# --- generated valid filters over typed fields ---

_STRINGS = st.one_of(st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs")), max_size=12),
                     st.sampled_from(["", "'", "x' or '1'='1", "'; DROP TABLE t; --", "a''b", "存续", "NULL"]))
_LITERALS_BY_FIELD: dict[str, st.SearchStrategy[int | str]] = {
    "amount": st.integers(-(10**18 - 1), 10**18 - 1),
    "name": _STRINGS,
    "born": st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)).map(dt.date.isoformat),
}


def _leaf(field: str) -> st.SearchStrategy[Filter]:
    lit = _LITERALS_BY_FIELD[field]
    return st.one_of(st.builds(Comparison, st.just(field), st.sampled_from(filters.OPERATORS), lit),
                     st.builds(InList, st.just(field), st.lists(lit, min_size=1, max_size=4).map(tuple)),
                     st.builds(IsNull, st.just(field), st.booleans()))


def _compound(children: st.SearchStrategy[Filter]) -> st.SearchStrategy[Filter]:
    items = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(st.builds(Not, children), st.builds(And, items), st.builds(Or, items))


TYPED_FILTERS = st.recursive(st.one_of(*(_leaf(f) for f in TYPES)), _compound, max_leaves=8)


def _depth(f: Filter) -> int:
    """Nesting as the parser counts it, once written canonically."""
    if isinstance(f, Not):
        return 1 + _depth(f.expr) + isinstance(f.expr, And | Or)
    if isinstance(f, And | Or):
        return max(_depth(i) + isinstance(i, And | Or) for i in f.items)
    return 0


def _literals(f: Filter) -> list[int | str]:
    if isinstance(f, Not):
        return _literals(f.expr)
    if isinstance(f, And | Or):
        return [v for item in f.items for v in _literals(item)]
    if isinstance(f, Comparison):
        return [f.value]
    return list(f.values) if isinstance(f, InList) else []


@st.composite
def noisy_text(draw: st.DrawFn, f: Filter) -> str:
    """``f`` written the way a person might: any keyword case, any whitespace, spare parentheses."""
    def space() -> str:
        return draw(st.sampled_from([" ", "  ", "\t", "\n", "\r\n", " \t "]))

    def kw(word: str) -> str:
        return "".join(c.upper() if draw(st.booleans()) else c for c in word)

    def lit(v: int | str) -> str:
        return str(v) if isinstance(v, int) else "'" + v.replace("'", "''") + "'"

    def write(node: Filter, budget: list[int]) -> str:
        if isinstance(node, Comparison):
            text = f"{node.field}{draw(st.sampled_from(['', ' ', '  ']))}{node.op}{space()}{lit(node.value)}"
        elif isinstance(node, InList):
            text = (f"{node.field}{space()}{kw('in')}{space()}({space()}"
                    + f"{space()},".join(lit(v) for v in node.values) + ")")
        elif isinstance(node, IsNull):
            text = f"{node.field}{space()}{kw('is')}{space()}" + (f"{kw('not')}{space()}" if node.negated else "") \
                + kw("null")
        elif isinstance(node, Not):
            inner = write(node.expr, budget)
            text = f"{kw('not')}{space()}" + (f"({inner})" if isinstance(node.expr, And | Or) else inner)
        else:
            word = "and" if isinstance(node, And) else "or"
            text = f"{space()}{kw(word)}{space()}".join(
                f"({write(i, budget)})" if isinstance(i, And | Or) else write(i, budget) for i in node.items)
        if budget[0] and draw(st.integers(0, 4)) == 0:  # a spare pair of parentheses
            budget[0] -= 1
            text = f"({space()}{text}{space()})"
        return text

    return space() + write(f, [3]) + space()


@FUZZ
@given(data=st.data(), f=TYPED_FILTERS)
def test_noisy_spellings_of_valid_filters_round_trip(data: st.DataObject, f: Filter) -> None:
    assume(_depth(f) <= filters.MAX_DEPTH - 3)
    text = data.draw(noisy_text(f))
    assume(len(text) <= filters.MAX_TEXT)
    parsed = filters.parse_checked(text, TYPES)
    assert parsed == f
    assert filters.parse(filters.to_text(parsed)) == parsed
    assert filters.to_text(parsed) == filters.to_text(f)
    # The redacted form keeps the shape and no value at all.
    redacted = filters.redacted_text(parsed)
    assert "'" not in redacted and not any(c.isdigit() for c in redacted)
    assert redacted.count("?") == len(_literals(f))
    assert redacted == filters.redacted_text(filters.parse(redacted.replace("?", "0")))


_SQL_TABLE = sa.Table("people", sa.MetaData(), sa.Column("amount", sa.Integer), sa.Column("name", sa.String),
                      sa.Column("born", sa.Date))


@FUZZ
@given(payload=st.one_of(
    st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs")), max_size=filters.MAX_STRING),
    st.sampled_from(["'; DROP TABLE people; --", "x' OR '1'='1", "') OR 1=1 --", "\\'; --", "%' --",
                     "1; DELETE FROM people", "' UNION SELECT name FROM sqlite_master --", "?", ":name"])))
def test_any_quoted_string_is_a_literal_never_sql(payload: str) -> None:
    text = f"name = '{payload.replace(chr(39), chr(39) * 2)}'"
    f = filters.parse_checked(text, TYPES)
    assert f == Comparison("name", "=", payload)
    assert filters.redacted_text(f) == "name = ?"
    compiled = filters.to_sqlalchemy(f, _SQL_TABLE).compile(dialect=sqlite.dialect())
    assert str(compiled) == "people.name = ?"  # the value travels as a bound parameter only
    assert list(compiled.params.values()) == [payload]
    assert filters.predicate(f, ["amount", "name", "born"])((1, payload, None)) is True


@FUZZ
@given(payload=st.one_of(st.text(min_size=1, max_size=60), st.text(min_size=200, max_size=400)),
       field=st.sampled_from(["name", "amount", "nope"]))
def test_refused_literals_are_never_echoed(payload: str, field: str) -> None:
    assume(len(payload.strip()) >= 4)
    text = f"{field} = '{payload.replace(chr(39), chr(39) * 2)}'"
    try:
        f = filters.parse_checked(text, TYPES)
    except InvalidInput as err:
        _assert_clean_filter_refusal(err)
        # Windows made only of characters messages are written in prove nothing; any other must not show.
        wording = set(string.ascii_lowercase + string.digits + " '-:().,!=<>")
        if set(payload) - wording:
            assert payload not in str(err)
        for i in range(len(payload) - 5):
            window = payload[i:i + 6]
            if set(window) - wording:
                assert window not in str(err)
    else:
        assert field == "name" and f == Comparison("name", "=", payload)


_SECRET = "S3cr3t-Ünïcødé-值"
# (text, words the message must contain); none may echo _SECRET, a literal or its digits.
HOSTILE_FILTERS = [
    (f"'; DROP TABLE t; --{_SECRET}", "unterminated string"),
    (f"name = 'x'; DROP TABLE t; --'{_SECRET}", "unexpected character ';'"),
    (f"name = '{_SECRET}' OR 1=1", "expected a field name"),
    (f"name = '{_SECRET}'; DELETE FROM t", "unexpected character ';'"),
    (f"name = '{_SECRET}' -- comment", "expected digits after '-'"),
    (f"name = '{_SECRET}' /* c */", "unexpected character '/'"),
    (f"name = '{_SECRET}' UNION SELECT 1", "expected 'and', 'or' or the end"),
    (f"name in (SELECT '{_SECRET}')", "expected a value in the 'in' list"),
    (f"name = \"{_SECRET}\"", "single quotes"),
    (f"name = '{_SECRET}", "unterminated string"),
    (f"name = {_SECRET}'", "expected a value after '='"),
    (f"name = '{_SECRET}\x00'", "control or invisible formatting character"),
    (f"name = '\x00{_SECRET}'", "control or invisible formatting character"),
    (f"name = '{_SECRET}\u202e'", "control or invisible formatting character"),
    (f"name = '{_SECRET}\t'", "tab or line break inside a string"),
    (f"name = '{_SECRET}' and " + "(" * 10_000 + "amount = 1" + ")" * 10_000, "longer than 4096"),
    ("(" * 2000 + f"name = '{_SECRET}'" + ")" * 2000, "nesting deeper than 32"),
    ("not " * 1000 + f"name = '{_SECRET}'", "nesting deeper than 32"),
    ("(not " * 600 + f"name = '{_SECRET}'" + ")" * 600, "nesting deeper than 32"),
    (f"name = '{_SECRET}" + "x" * 10 * 2**20 + "'", "longer than 4096"),  # a 10 MB string
    (f"name = '{_SECRET}" + "x" * 300 + "'", "string literal longer than 256"),
    ("amount = 31415926" + "5" * 4992, "longer than 4096"),  # a 5,000-digit integer
    ("amount = 31415926" + "5" * 3992, "integer literal longer than 18 digits"),
    ("amount = -31415926" + "5" * 30, "integer literal longer than 18 digits"),
    ("amount in (" + "1, " * 300 + f"'{_SECRET}')", "'in' list longer than 256"),
    ("name = 'a' or " * 65 + f"name = '{_SECRET}'", "more than 64 comparisons"),
    (f"amount = '{_SECRET}'", "is an integer"),
    (f"born = '{_SECRET}'", "is a date"),
    (f"nope = '{_SECRET}'", "unknown field 'nope'"),
    ("name = 31415926535", "is a string"),
]


@pytest.mark.parametrize(("text", "words"), HOSTILE_FILTERS, ids=[f"{i}:{w[:24]}" for i, (_, w) in
                                                                  enumerate(HOSTILE_FILTERS)])
def test_hostile_filters_are_refused_fast_without_echo(text: str, words: str) -> None:
    start = time.thread_time()
    with pytest.raises(InvalidInput) as err:
        filters.parse_checked(text, TYPES)
    assert time.thread_time() - start < 0.5
    message = str(err.value)
    _assert_clean_filter_refusal(err.value)
    assert words in message, message
    for leak in (_SECRET, "S3cr3t", "DROP", "DELETE", "UNION", "SELECT", "31415926", "xxxxxx", "5555"):
        assert leak not in message, (leak, message)


@pytest.mark.parametrize("build", [
    lambda: Comparison("name", "=", "x" * 10 * 2**20),
    lambda: Comparison("amount", "=", 10**5000),  # str() of it would itself fail: the check must not print it
    lambda: Comparison("amount", "=", -(10**18)),
    lambda: InList("name", tuple(str(i) for i in range(10**5))),
    lambda: Comparison("name", "=", "a\x00b"),
    lambda: Comparison("name; DROP TABLE t", "=", "x"),
    lambda: Comparison("name", "= 1 or 1 =", "x"),
], ids=["10MB-string", "5000-digit-int", "19-digit-int", "100k-in-list", "nul", "field-injection", "op-injection"])
def test_filter_nodes_refuse_hostile_values_without_echo(build: Callable[[], Filter]) -> None:
    start = time.thread_time()
    with pytest.raises(InvalidInput) as err:
        build()
    assert time.thread_time() - start < 0.5
    message = str(err.value)
    assert len(message) < 200 and "xxxxxx" not in message and "DROP" not in message and "00000" not in message


_ROW_VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans(), st.floats(),
                        st.binary(max_size=4), st.dates(), st.datetimes())


@FUZZ
@given(f=TYPED_FILTERS, rows=st.lists(st.tuples(_ROW_VALUES, _ROW_VALUES, _ROW_VALUES), max_size=5))
def test_predicate_never_raises_on_odd_row_values(f: Filter, rows: list[tuple[object, ...]]) -> None:
    keep = filters.predicate(f, ["amount", "name", "born"])
    for row in rows:
        assert keep(row) in (True, False)


# ===========================================================================
# Signed notes, checkpoints and verifier keys
# ===========================================================================

ORIGIN = "fedgate.test/audit"
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fuzz log key").digest())
PUB = KEY.public_key()
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"someone else").digest())
LEAVES = [H.hash_leaf(b"entry %d" % i) for i in range(9)]
CHECKPOINT = Checkpoint(ORIGIN, 9, root_from_leaf_hashes(H, LEAVES))
NOTE = sign_checkpoint(CHECKPOINT, ORIGIN, KEY)
VKEY_TEXT = encode_verifier_key(ORIGIN, PUB)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """One edit of ``original`` that changes it: flip, truncate, append, insert, delete, duplicate, swap lines..."""
    result = _mutate(draw, original)
    assume(result != original)
    return result


def _mutate(draw: st.DrawFn, original: bytes) -> bytes:
    n = len(original)
    how = draw(st.sampled_from(["flip", "truncate", "append", "insert", "delete", "dup-line", "drop-line",
                                "swap-lines", "bad-utf8", "crlf"]))
    pos = draw(st.integers(0, n - 1))
    if how == "flip":
        return original[:pos] + bytes([original[pos] ^ draw(st.integers(1, 255))]) + original[pos + 1:]
    if how == "truncate":
        return original[:pos]
    if how == "append":
        return original + draw(st.binary(min_size=1, max_size=50))
    if how == "insert":
        return original[:pos] + draw(st.binary(min_size=1, max_size=8)) + original[pos:]
    if how == "delete":
        return original[:pos] + original[pos + draw(st.integers(1, 8)):]
    if how == "bad-utf8":
        return original[:pos] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x80"])) \
            + original[pos:]
    if how == "crlf":
        return original.replace(b"\n", b"\r\n", draw(st.integers(1, 4)))
    lines = original.split(b"\n")
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    if how == "dup-line":
        lines.insert(i, lines[i])
    elif how == "drop-line":
        del lines[i]
    else:
        assume(lines[i] != lines[j])
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def _as_text(data: bytes, how: str) -> str | bytes:
    # bytes as received, str decoded leniently, or str with lone surrogates standing in for bad bytes
    return data if how == "bytes" else data.decode("utf-8", "replace" if how == "replace" else "surrogateescape")


_HOW = st.sampled_from(["bytes", "replace", "surrogateescape"])


@FUZZ_CRYPTO
@given(data=st.data(), how=_HOW)
def test_mutated_checkpoint_notes_are_refused_or_unchanged(data: st.DataObject, how: str) -> None:
    note = _as_text(data.draw(mutated(NOTE.encode())), how)
    try:
        cp = verify_checkpoint(note, ORIGIN, PUB, origin=ORIGIN)
    except VerificationError:  # MalformedProof is one
        return
    # Only edits the signature scheme ignores survive (e.g. a repeated signature line).
    assert cp == CHECKPOINT


@FUZZ
@given(note=st.one_of(st.binary(max_size=300), st.text(max_size=300),
                      st.lists(st.sampled_from([ORIGIN, "9", "—", "— ", f"— {ORIGIN} ", "", "AAAA", "+", "\u2014",
                                                NOTE.split("\n")[-2], NOTE.split("\n")[2]]), max_size=12)
                      .map("\n".join)), how=st.sampled_from(["as-is", "newline"]))
def test_arbitrary_notes_raise_only_verification_errors(note: str | bytes, how: str) -> None:
    if how == "newline":
        note = note + (b"\n" if isinstance(note, bytes) else "\n")
    try:
        body = open_note(note, ORIGIN, PUB)
    except VerificationError:
        pass
    else:  # only the real note, reassembled from its own lines, opens
        assert body == CHECKPOINT.to_text()
    try:
        cp = verify_checkpoint(note, ORIGIN, PUB)
    except VerificationError:
        pass
    else:
        assert cp == CHECKPOINT


def test_oversized_notes_are_refused_unread() -> None:
    for note in (NOTE + "x" * 300_000, NOTE.encode() + b"\xff" * 300_000, NOTE[:-1] + "\u4e00" * 90_000 + "\n"):
        start = time.thread_time()
        with pytest.raises(MalformedProof, match="larger than"):
            open_note(note, ORIGIN, PUB)
        assert time.thread_time() - start < 0.5


@FUZZ_CRYPTO
@given(body=st.text(max_size=200), signer=st.sampled_from(["key", "other", "both"]))
def test_only_the_trusted_key_opens_a_note(body: str, signer: str) -> None:
    """Anything signable round-trips under the trusted key; a note signed by another key never opens."""
    body = body.replace("\n\n", "\n") + "\n"
    try:
        note = sign_note(body, ORIGIN if signer != "other" else "other.key", KEY if signer != "other" else OTHER_KEY)
    except LocalProtocolError:  # our own caller's mistake: a control character in the text
        assert any(c < " " and c != "\n" for c in body)
        return
    if signer == "both":  # a second, unknown signature is ignored
        note += sign_note(body, "other.key", OTHER_KEY).rsplit("\n\n", 1)[1]
    if signer == "other":
        with pytest.raises(VerificationError):
            open_note(note, ORIGIN, PUB)
    else:
        assert open_note(note, ORIGIN, PUB) == body
        assert open_note(note.encode(), ORIGIN, PUB) == body


@FUZZ
@given(text=st.one_of(st.text(max_size=200),
                      st.lists(st.sampled_from([ORIGIN, "0", "9", "18446744073709551615", "18446744073709551616",
                                                "09", "+9", " 9", "", CHECKPOINT.to_text().split("\n")[2],
                                                "AAAA", "ext", "\r", "\u00a0"]), max_size=6).map("\n".join),
                      st.just(CHECKPOINT.to_text()).map(lambda t: t[:-1])))
def test_checkpoint_bodies_parse_only_exactly_as_written(text: str) -> None:
    for candidate in (text, text + "\n"):
        try:
            cp = Checkpoint.from_text(candidate)
        except MalformedProof:
            continue
        assert cp.to_text() == candidate


@FUZZ
@given(data=st.data(), how=st.sampled_from(["mutate", "random"]))
def test_verifier_keys_parse_to_the_pinned_key_or_not_at_all(data: st.DataObject, how: str) -> None:
    if how == "random":
        text = data.draw(st.text(max_size=120))
    else:
        raw = data.draw(mutated(VKEY_TEXT.encode()))
        text = raw.decode("utf-8", "replace")
    try:
        vkey = parse_verifier_key(text)
    except MalformedProof:
        return
    assert vkey.name == ORIGIN and vkey.public_key.public_bytes_raw() == PUB.public_bytes_raw()


# ===========================================================================
# Merkle proofs
# ===========================================================================

TREE = [H.hash_leaf(b"leaf %d" % i) for i in range(64)]


@st.composite
def mutated_proof(draw: st.DrawFn, proof: list[bytes]) -> tuple[str, list[object]]:
    """One edit of a proof; returns what was done and the new proof."""
    options = ["extra", "short-extra"]
    if proof:
        options += ["flip", "drop", "dup", "short", "long", "not-bytes"]
    if len(set(proof)) > 1:
        options.append("swap")
    how = draw(st.sampled_from(options))
    out: list[object] = list(proof)
    k = draw(st.integers(0, max(0, len(proof) - 1)))
    if how == "flip":
        bit = draw(st.integers(0, 255))
        out[k] = bytes(b ^ (1 << (bit % 8)) if i == bit // 8 else b for i, b in enumerate(proof[k]))
    elif how == "drop":
        del out[k]
    elif how == "dup":
        out.insert(k, proof[k])
    elif how == "extra":
        out.insert(draw(st.integers(0, len(proof))), draw(st.binary(min_size=32, max_size=32)))
    elif how == "short-extra":
        out.append(draw(st.binary(max_size=31)))
    elif how == "short":
        out[k] = proof[k][:draw(st.integers(0, 31))]
    elif how == "long":
        out[k] = proof[k] + draw(st.binary(min_size=1, max_size=8))
    elif how == "not-bytes":
        out[k] = draw(st.sampled_from([proof[k].hex(), None, 0, list(proof[k])]))
    else:
        i, j = draw(st.permutations(range(len(proof))).map(lambda p: (p[0], p[1])))
        assume(proof[i] != proof[j])
        out[i], out[j] = out[j], out[i]
    return how, out


def _flip(h: bytes, bit: int) -> bytes:
    return h[:bit // 8] + bytes([h[bit // 8] ^ (1 << bit % 8)]) + h[bit // 8 + 1:]


@FUZZ
@given(data=st.data(), size=st.integers(1, len(TREE)))
def test_mutated_inclusion_proofs_are_refused(data: st.DataObject, size: int) -> None:
    index = data.draw(st.integers(0, size - 1))
    root = root_from_leaf_hashes(H, TREE[:size])
    proof = inclusion_proof(TREE, index, size)
    verify_inclusion(H, index, size, TREE[index], proof, root)
    target = data.draw(st.sampled_from(["proof", "leaf", "root", "index", "bad-index"]))
    leaf, idx, args_root, bad = TREE[index], index, root, proof
    if target == "proof":
        how, bad = data.draw(mutated_proof(proof))
    elif target == "leaf":
        leaf = data.draw(st.one_of(st.integers(0, 255).map(lambda b: _flip(TREE[index], b)),
                                   st.binary(max_size=64).filter(lambda b: b != TREE[index])))
    elif target == "root":
        args_root = data.draw(st.one_of(st.integers(0, 255).map(lambda b: _flip(root, b)),
                                        st.binary(max_size=64).filter(lambda b: b != root)))
    elif target == "index":
        assume(size > 1)
        idx = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    else:
        idx = data.draw(st.one_of(st.integers(size, 2**70), st.integers(-(2**70), -1), st.just(True),
                                  st.just(float(index)), st.just(str(index))))
    with pytest.raises((MalformedProof, RootMismatch)) as err:
        verify_inclusion(H, idx, size, leaf, bad, args_root)  # type: ignore[arg-type]
    if target == "proof" and how in ("drop", "dup", "extra", "short-extra", "short", "long", "not-bytes"):
        assert isinstance(err.value, MalformedProof)  # a malformed proof never looks like a rewritten log
    if target == "bad-index":
        assert isinstance(err.value, MalformedProof)


@FUZZ
@given(data=st.data(), size2=st.integers(1, len(TREE)))
def test_mutated_consistency_proofs_are_refused(data: st.DataObject, size2: int) -> None:
    size1 = data.draw(st.integers(1, size2))
    root1, root2 = root_from_leaf_hashes(H, TREE[:size1]), root_from_leaf_hashes(H, TREE[:size2])
    proof = consistency_proof(TREE, size1, size2)
    verify_consistency(H, size1, size2, proof, root1, root2)
    target = data.draw(st.sampled_from(["proof", "root1", "root2", "sizes"]))
    s1, s2, r1, r2, bad = size1, size2, root1, root2, proof
    if target == "proof":
        _, bad = data.draw(mutated_proof(proof))
    elif target == "root1":
        r1 = _flip(root1, data.draw(st.integers(0, 255)))
    elif target == "root2":
        r2 = _flip(root2, data.draw(st.integers(0, 255)))
    else:
        s1, s2 = data.draw(st.sampled_from([(size2, size1), (0, size2), (-1, size2), (size1, -size2),
                                            (True, size2), (size1, 2**70)]))
        assume((s1, s2) != (size1, size2))
    with pytest.raises((MalformedProof, RootMismatch)):
        verify_consistency(H, s1, s2, bad, r1, r2)  # type: ignore[arg-type]


@FUZZ
@given(index=st.integers(-5, 2**80), size=st.integers(-5, 2**80), leaf=st.binary(max_size=40),
       proof=st.lists(st.binary(min_size=30, max_size=34), max_size=90), root=st.binary(max_size=40))
def test_random_proofs_never_verify(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> None:
    # The only random inputs that are genuinely valid: a one-leaf tree whose root is the leaf,
    # and a tree "consistent" with itself (same size, same root, no proof).
    assume(not (leaf == root and not proof and (index, size) in ((0, 1), (size, size))))
    assume(not (leaf == H.empty_root() and not proof and (index, size) == (0, 1)))
    start = time.thread_time()
    with pytest.raises((MalformedProof, RootMismatch)):
        verify_inclusion(H, index, size, leaf, proof, root)
    with pytest.raises((MalformedProof, RootMismatch)):
        verify_inclusion(H, index, size, leaf, proof, H.empty_root())
    if len(leaf) != H.size or any(len(p) != H.size for p in proof):
        with pytest.raises(MalformedProof):
            root_from_inclusion_proof(H, index, size, leaf, proof)
    with pytest.raises((MalformedProof, RootMismatch)):
        verify_consistency(H, index, size, proof, leaf, root)
    assert time.thread_time() - start < 0.5


# ===========================================================================
# Query tickets
# ===========================================================================

ENTRIES = [b'{"entry":%d}' % i for i in range(9)]
QID = "0123456789abcdef0123456789abcdef"
VKEY = parse_verifier_key(VKEY_TEXT)
NOW = 1_000_000


def _ticket(size: int, index: int, base: int) -> Ticket:
    leaves = [H.hash_leaf(e) for e in ENTRIES[:size]]
    note = sign_checkpoint(Checkpoint(ORIGIN, size, root_from_leaf_hashes(H, leaves)), ORIGIN, KEY)
    claims = TicketClaims("hrss", QID, index, hashlib.sha256(ENTRIES[index]).digest(), NOW + 60, NOW)
    return Ticket(sign_claims(claims, ORIGIN, KEY), ENTRIES[index], note, tuple(inclusion_proof(leaves, index, size)),
                  base, tuple(consistency_proof(leaves, base, size)) if base else ())


FIRST = _ticket(5, 4, 0)
SECOND = _ticket(9, 8, 5)
LAST_SEEN = verify_ticket(FIRST, audience="hrss", now=NOW, vkey=VKEY, origin=ORIGIN, last_seen=None).checkpoint
ACCEPTED = verify_ticket(SECOND, audience="hrss", now=NOW, vkey=VKEY, origin=ORIGIN, last_seen=LAST_SEEN)


@FUZZ_CRYPTO
@given(data=st.data(), what=st.sampled_from(["claims_note", "entry", "checkpoint", "inclusion", "base_size",
                                              "consistency"]))
def test_mutated_tickets_are_refused(data: st.DataObject, what: str) -> None:
    value: object
    if what in ("claims_note", "checkpoint"):
        value = _as_text(data.draw(mutated(getattr(SECOND, what).encode())), data.draw(_HOW))
    elif what == "entry":
        value = data.draw(mutated(SECOND.entry))
    elif what == "base_size":
        value = data.draw(st.integers(0, 2**64).filter(lambda b: b != SECOND.base_size))
    else:
        value = tuple(data.draw(mutated_proof(list(getattr(SECOND, what))))[1])
    bad = Ticket(**{**SECOND.__dict__, what: value})
    try:
        got = verify_ticket(bad, audience="hrss", now=NOW, vkey=VKEY, origin=ORIGIN, last_seen=LAST_SEEN)
    except (TicketRefused, StaleBase) as err:
        assert len(str(err)) < 400
        return
    # Only an edit of a signed note that the signatures ignore (a repeated signature line) may
    # pass, and it changes nothing; any change to the entry, a proof or the base is refused.
    assert what in ("claims_note", "checkpoint"), (what, value)
    assert (got.claims, got.entry, got.checkpoint) == (ACCEPTED.claims, ACCEPTED.entry, ACCEPTED.checkpoint)


@FUZZ_CRYPTO
@given(audience=st.text(max_size=10), now=st.integers(-(2**63), 2**64), vkey=st.sampled_from(["pinned", "other"]),
       origin=st.sampled_from([ORIGIN, "other.example/log", ""]))
def test_tickets_are_only_good_for_their_audience_time_key_and_log(audience: str, now: int, vkey: str,
                                                                   origin: str) -> None:
    key = VKEY if vkey == "pinned" else parse_verifier_key(encode_verifier_key(ORIGIN, OTHER_KEY.public_key()))
    good = (audience, NOW - DEFAULT_CLOCK_SKEW_S <= now < NOW + 60, vkey, origin) == ("hrss", True, "pinned", ORIGIN)
    try:
        got = verify_ticket(FIRST, audience=audience, now=now, vkey=key, origin=origin, last_seen=None)
    except TicketRefused:
        assert not good
    else:
        assert good and got.claims.entry_index == 4


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.just(FIRST.claims_note.rsplit("\n\n", 1)[0] + "\n").flatmap(
    lambda t: st.tuples(st.just(t), st.integers(0, len(t) - 1), st.characters()).map(
        lambda a: a[0][:a[1]] + a[2] + a[0][a[1] + 1:]))))
def test_ticket_claims_parse_only_exactly_as_written(text: str) -> None:
    try:
        claims = TicketClaims.from_text(text)
    except MalformedProof:
        return
    assert claims.to_text() == text


def test_fuzz_targets_are_the_public_names() -> None:
    """Guard: a renamed verifier must not leave this file fuzzing a stale alias."""
    from fedgate.crypto import checkpoint, merkle, ticket

    for module, names in ((checkpoint, ("open_note", "verify_checkpoint", "parse_verifier_key")),
                          (merkle, ("verify_inclusion", "verify_consistency", "root_from_inclusion_proof")),
                          (filters, ("parse", "parse_checked", "check", "to_text", "redacted_text",
                                     "to_sqlalchemy", "predicate")),
                          (ids, ("normalise", "normaliser", "make_uscc", "make_resident_id"))):
        for name in names:
            assert name in module.__all__, (module.__name__, name)
    assert hasattr(ticket, "verify_ticket")
