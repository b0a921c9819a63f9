"""Tests for fedgate.crypto.ids: known answers, then properties (hypothesis)."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedgate.crypto import ids
from fedgate.crypto.ids import IdKind, NormalisedId
from fedgate.core.errors import FedgateError, InvalidIdentifier, InvalidInput

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# ---------------------------------------------------------------------------
# Known answers
# ---------------------------------------------------------------------------

# (description, canonical value): each value's origin is in the comment above it.
VALID_RESIDENT_IDS = [
    # The sample number printed in GB 11643-1999 (Beijing Chaoyang, born 1949-12-31).
    ("gb11643-sample", "11010519491231002X"),
    # python-stdnum tests/test_cn_ric.doctest, "Normal values that should just work".
    ("stdnum-ric-jiangxi", "360426199101010071"),
    # Same doctest; it spells it with a lower-case x, canonical form is upper-case.
    ("stdnum-ric-guangdong", "44011320141005001X"),
]

VALID_USCCS = [
    # The worked example in GB 32100-2015 (the standard shows "...Y4Z" failing
    # and computes 3 as the check character).
    ("gb32100-worked-example", "91350100M000100Y43"),
    # python-stdnum stdnum/cn/uscc.py module doctest.
    ("stdnum-uscc-doctest", "91110000600037341L"),
    # python-stdnum tests/test_cn_uscc.doctest, "found online": a new-style MA code,
    # an old-style code ending in a letter, and one with X inside.
    ("stdnum-online-ma", "91340600MA2PBM9HXD"),
    ("stdnum-online-letter-body", "91620105L015101280"),
    ("stdnum-online-x-inside", "9144030071526726XG"),
]


@pytest.mark.parametrize(
    "value", [v for _, v in VALID_RESIDENT_IDS], ids=[d for d, _ in VALID_RESIDENT_IDS]
)
def test_known_resident_ids_validate(value: str) -> None:
    assert ids.resident_id_check_char(value[:17]) == value[17]
    assert ids.normalise_resident_id(value) == value
    assert ids.normalise(IdKind.RESIDENT_ID, value.lower()) == value


@pytest.mark.parametrize("value", [v for _, v in VALID_USCCS], ids=[d for d, _ in VALID_USCCS])
def test_known_usccs_validate(value: str) -> None:
    assert ids.uscc_check_char(value[:17]) == value[17]
    assert ids.normalise_uscc(value) == value
    assert ids.normalise("uscc", value.lower()) == value


# GB 11714 organisation codes: positions 9-17 of the USCCs above, whose 9th
# character was checked against the MOD 11 rule by hand for 600037341.
@pytest.mark.parametrize(
    "code", ["600037341", "MA2PBM9HX", "M000100Y4", "71526726X"], ids=str
)
def test_known_org_code_check_chars(code: str) -> None:
    assert ids.org_code_check_char(code[:8]) == code[8]


INVALID_CASES = [
    # (description, kind, raw, message fragment)
    ("rid-wrong-check", "resident_id", "110105194912310021", "check character does not match"),
    ("rid-17-chars", "resident_id", "11010519491231002", "must have 18 characters, got 17"),
    ("rid-15-digit-legacy", "resident_id", "110105491231002", "first-generation"),
    ("rid-letter", "resident_id", "1101051949123A002X", "non-digit character at position 14"),
    ("rid-bad-check-symbol", "resident_id", "11010519491231002Y", "must be a digit or X"),
    ("rid-feb-30", "resident_id", "110105194902300021", "not a real calendar date"),
    ("rid-year-1899", "resident_id", "110105189912310021", "outside 1900-2100"),
    ("uscc-wrong-check", "uscc", "91350100M000100Y44", "check character does not match"),
    # The counterexample printed in GB 32100-2015: Z is not even in the alphabet.
    ("uscc-gb32100-counterexample", "uscc", "91350100M000100Y4Z", "alphabet at position 18"),
    ("uscc-letter-I", "uscc", "91350100I000100Y43", "outside the GB 32100 alphabet at position 9"),
    ("uscc-letter-region", "uscc", "9135A100M000100Y43", "region code"),
    ("uscc-19-chars", "uscc", "91350100M000100Y433", "must have 18 characters, got 19"),
    ("plain-empty", "plain", " \u3000\t ", "empty"),
    ("non-str", "uscc", b"91350100M000100Y43", "must be a str, got bytes"),
    ("too-long", "resident_id", "1" * 1000, "longer than"),
]


@pytest.mark.parametrize(
    ("kind", "raw", "fragment"),
    [c[1:] for c in INVALID_CASES],
    ids=[c[0] for c in INVALID_CASES],
)
def test_invalid_inputs_say_what_is_wrong(kind: str, raw: object, fragment: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        ids.normalise(kind, raw)  # type: ignore[arg-type]
    message = str(info.value)
    assert fragment in message
    if isinstance(raw, str) and len(raw) >= 6:
        assert raw.strip()[:6] not in message
    assert not ids.is_valid(kind, raw)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("１１０１０５１９４９１２３１００２ｘ", "11010519491231002X"),
        ("110105 19491231 002x", "11010519491231002X"),
        ("110105-19491231-002X", "11010519491231002X"),
        ("\u3000110105\t19491231\xa0002X\n", "11010519491231002X"),
        ("110105\u200b19491231\ufeff002X", "11010519491231002X"),
        ("110105\u201419491231\u2212002X", "11010519491231002X"),
    ],
    ids=["full-width", "spaces-lower-x", "hyphens", "mixed-whitespace", "zero-width", "dashes"],
)
def test_reformatted_resident_id(raw: str, want: str) -> None:
    assert ids.normalise_resident_id(raw) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("  Zhang\u3000\u3000San  ", "zhang san"),
        ("ＡＢＣ　公司", "abc 公司"),
        ("Straße", "strasse"),
    ],
    ids=["whitespace", "full-width", "casefold"],
)
def test_normalise_plain(raw: str, want: str) -> None:
    assert ids.normalise_plain(raw) == want


def test_make_resident_id_matches_sample() -> None:
    assert ids.make_resident_id("110105", datetime.date(1949, 12, 31), 2) == "11010519491231002X"


def test_make_uscc_matches_worked_example() -> None:
    assert ids.make_uscc("91350100M000100Y4") == "91350100M000100Y43"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("11010", datetime.date(1990, 1, 1), 1), "region code"),
        (("110105", datetime.date(1899, 1, 1), 1), "1900-2100"),
        (("110105", datetime.date(1990, 1, 1), 1000), "0..999"),
        (("110105", datetime.date(1990, 1, 1), True), "0..999"),
    ],
    ids=["short-region", "old-birth", "seq-range", "seq-bool"],
)
def test_make_resident_id_rejects_bad_parts(args: tuple[object, ...], fragment: str) -> None:
    with pytest.raises(InvalidIdentifier, match=fragment):
        ids.make_resident_id(*args)  # type: ignore[arg-type]


def test_check_char_functions_reject_bad_bodies() -> None:
    with pytest.raises(InvalidIdentifier):
        ids.resident_id_check_char("1101051949123100")
    with pytest.raises(InvalidIdentifier):
        ids.resident_id_check_char("１１０１０５１９４９１２３１００２")
    with pytest.raises(InvalidIdentifier, match="position 3"):
        ids.uscc_check_char("91O50100M000100Y4")
    with pytest.raises(InvalidIdentifier, match="region code"):
        ids.make_uscc("91A50100M000100Y4")


def test_unknown_kind_is_a_declaration_error() -> None:
    with pytest.raises(InvalidInput) as info:
        ids.normalise("passport", "E12345678")
    assert not isinstance(info.value, InvalidIdentifier)
    assert "E12345678" not in str(info.value)


def test_normalised_id_validates_and_masks() -> None:
    nid = NormalisedId.parse("resident_id", "110105 19491231 002x")
    assert nid.kind is IdKind.RESIDENT_ID
    assert nid.value == "11010519491231002X"
    for shown in (repr(nid), str(nid), f"{nid}", repr([nid])):
        assert "1101" not in shown
        assert "<18 chars>" in shown
    assert NormalisedId("uscc", "91350100M000100Y43") == NormalisedId(
        IdKind.USCC, "91350100M000100Y43"
    )
    with pytest.raises(InvalidIdentifier, match="canonical"):
        NormalisedId(IdKind.RESIDENT_ID, "11010519491231002x")
    with pytest.raises(InvalidIdentifier, match="does not match"):
        NormalisedId(IdKind.RESIDENT_ID, "110105194912310021")
    with pytest.raises(dataclasses.FrozenInstanceError):
        nid.value = "11010519491231002X"  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

REGION = st.text(alphabet="0123456789", min_size=6, max_size=6)
BIRTH = st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2100, 12, 31))
SEQ = st.integers(min_value=0, max_value=999)
USCC_CHAR = st.sampled_from(ids.USCC_ALPHABET)


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    return ids.make_resident_id(draw(REGION), draw(BIRTH), draw(SEQ))


@st.composite
def usccs(draw: st.DrawFn) -> str:
    head = draw(st.text(alphabet=ids.USCC_ALPHABET, min_size=2, max_size=2))
    org = draw(st.text(alphabet=ids.USCC_ALPHABET, min_size=9, max_size=9))
    return ids.make_uscc(head + draw(REGION) + org)


SEPARATORS = st.sampled_from([" ", "\t", "\u3000", "\xa0", "-", "\uff0d", "\u200b", "  "])


@st.composite
def reformatted(draw: st.DrawFn, canonical: str) -> str:
    """Write ``canonical`` the ways people and spreadsheets do."""
    out = [draw(st.sampled_from(["", " ", "\u3000", "\t"]))]
    for i, c in enumerate(canonical):
        if i and draw(st.integers(0, 3)) == 0:
            out.append(draw(SEPARATORS))
        style = draw(st.integers(0, 2))
        if style == 1:
            c = chr(ord(c) + 0xFEE0)  # full-width form of an ASCII letter or digit
        elif style == 2:
            c = c.lower()
        out.append(c)
    out.append(draw(st.sampled_from(["", " ", "\u3000", "\n"])))
    return "".join(out)


@PROPERTY_SETTINGS
@given(data=st.data(), value=resident_ids())
def test_reformatted_resident_ids_normalise_to_canonical(data: st.DataObject, value: str) -> None:
    assert ids.normalise_resident_id(value) == value
    assert ids.normalise(IdKind.RESIDENT_ID, data.draw(reformatted(value))) == value


@PROPERTY_SETTINGS
@given(data=st.data(), value=usccs())
def test_reformatted_usccs_normalise_to_canonical(data: st.DataObject, value: str) -> None:
    assert ids.normalise_uscc(value) == value
    assert ids.normalise(IdKind.USCC, data.draw(reformatted(value))) == value


@PROPERTY_SETTINGS
@given(value=resident_ids(), pos=st.integers(0, 16), new=st.sampled_from("0123456789"))
def test_mod11_2_detects_every_single_substitution(value: str, pos: int, new: str) -> None:
    body = value[:17]
    if new == body[pos]:
        return
    changed = body[:pos] + new + body[pos + 1 :]
    # The checksum alone catches it; validation may also trip on the birth date.
    assert ids.resident_id_check_char(changed) != value[17]
    with pytest.raises(InvalidIdentifier) as info:
        ids.normalise_resident_id(changed + value[17])
    assert changed not in str(info.value)


@PROPERTY_SETTINGS
@given(value=resident_ids(), new=st.sampled_from("0123456789X"))
def test_resident_id_check_char_substitution_detected(value: str, new: str) -> None:
    if new == value[17]:
        return
    with pytest.raises(InvalidIdentifier, match="check character does not match") as info:
        ids.normalise_resident_id(value[:17] + new)
    assert value[:17] not in str(info.value)
    assert value[:17] not in info.value.diagnostics()


@PROPERTY_SETTINGS
@given(value=usccs(), pos=st.integers(0, 17), new=USCC_CHAR)
def test_mod31_detects_every_single_substitution(value: str, pos: int, new: str) -> None:
    if new == value[pos] or (2 <= pos <= 7 and not new.isdigit()):
        return
    changed = value[:pos] + new + value[pos + 1 :]
    if pos < 17:
        assert ids.uscc_check_char(changed[:17]) != value[17]
    with pytest.raises(InvalidIdentifier, match="check character does not match") as info:
        ids.normalise_uscc(changed)
    assert changed[:17] not in str(info.value)


@PROPERTY_SETTINGS
@given(value=resident_ids(), pos=st.integers(0, 15))
def test_mod11_2_detects_adjacent_transpositions(value: str, pos: int) -> None:
    body = value[:17]
    if body[pos] != body[pos + 1]:
        swapped = body[:pos] + body[pos + 1] + body[pos] + body[pos + 2 :]
        assert ids.resident_id_check_char(swapped) != value[17]


@PROPERTY_SETTINGS
@given(value=usccs(), pos=st.integers(0, 15))
def test_mod31_detects_adjacent_transpositions(value: str, pos: int) -> None:
    body = value[:17]
    if body[pos] != body[pos + 1]:
        swapped = body[:pos] + body[pos + 1] + body[pos] + body[pos + 2 :]
        assert ids.uscc_check_char(swapped) != value[17]


@PROPERTY_SETTINGS
@given(value=resident_ids(), cut=st.integers(1, 17))
def test_messages_never_contain_the_body(value: str, cut: int) -> None:
    # Truncated, padded and corrupted variants: the message must not leak the digits.
    candidates = [
        value[:-cut],
        value + value[:cut],
        value[:17] + "Y",
        value[:6] + "99999999" + value[14:],
    ]
    for raw in candidates:
        for kind in (IdKind.RESIDENT_ID, IdKind.USCC):
            try:
                ids.normalise(kind, raw)
            except InvalidIdentifier as exc:
                for shown in (str(exc), exc.diagnostics(), repr(exc)):
                    assert value[:17] not in shown
                    assert value[6:14] not in shown  # the birth date


ANYTHING = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.sampled_from("0123456789Xx -\u3000１２ｘ"), max_size=40),
    st.none(),
    st.integers(),
    st.floats(),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
)


@PROPERTY_SETTINGS
@given(raw=ANYTHING, kind=st.sampled_from(list(IdKind)))
def test_random_input_raises_only_invalid_identifier(raw: object, kind: IdKind) -> None:
    try:
        value = ids.normalise(kind, raw)  # type: ignore[arg-type]
    except InvalidIdentifier:
        assert ids.is_valid(kind, raw) is False
    except Exception as exc:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"{type(exc).__name__} escaped normalise")
    else:
        assert ids.is_valid(kind, raw) is True
        assert ids.normalise(kind, value) == value  # idempotent
        assert NormalisedId(kind, value).value == value


@PROPERTY_SETTINGS
@given(raw=st.text(max_size=200))
def test_plain_is_idempotent(raw: str) -> None:
    try:
        once = ids.normalise_plain(raw)
    except InvalidIdentifier:
        assert not raw.strip() or not ids.is_valid("plain", raw)
        return
    assert ids.normalise_plain(once) == once
    assert once == once.strip() and "  " not in once


def test_invalid_identifier_is_a_fedgate_error() -> None:
    assert issubclass(InvalidIdentifier, FedgateError)
