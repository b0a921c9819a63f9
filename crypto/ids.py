"""Identifier normalisation and check characters (sans-I/O, stdlib only).

Every matching protocol runs on the canonical form produced here, so two
departments that wrote the same identifier differently (full-width digits, a
lower-case ``x``, spaces or hyphens between groups) still match, and an
identifier with a wrong check character is reported instead of silently
failing to match.

Supported kinds:

* ``resident_id``: 18-character PRC resident identity number (GB 11643-1999),
  17 digits plus an ISO 7064 MOD 11-2 check character ``0-9`` or ``X``.
  Positions 7-14 are the birth date, which must be a real date in 1900-2100.
* ``uscc``: 18-character unified social credit code (GB 32100-2015) over the
  31-character alphabet ``0-9 A-Z`` without ``I O S V Z``; positions 3-8 are a
  GB/T 2260 region code (digits); the last character is a MOD 31 check
  character.
* ``plain``: any other text key (names, plate numbers...): NFKC, whitespace
  collapsed, case-folded.

Error messages say what is wrong and where (1-based positions, counted in the
normalised form) but never contain the value or any part of it: they end up in
gRPC details, logs and audit entries.
"""

from __future__ import annotations

import datetime
import enum
import operator
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from fedgate.core.errors import InvalidIdentifier, InvalidInput

__all__ = [
    "IdKind",
    "NormalisedId",
    "USCC_ALPHABET",
    "is_valid",
    "normaliser",
    "make_resident_id",
    "make_uscc",
    "normalise",
    "normalise_plain",
    "normalise_resident_id",
    "normalise_uscc",
    "org_code_check_char",
    "resident_id_check_char",
    "uscc_check_char",
]


class IdKind(enum.StrEnum):
    """What an identifier field holds; decides how it is normalised."""

    RESIDENT_ID = "resident_id"
    USCC = "uscc"
    PLAIN = "plain"


_DIGITS = "0123456789"

# GB 11643 / ISO 7064 MOD 11-2: weight of position i (1-based) is 2**(18-i) mod 11.
_RESIDENT_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_CHECK = "10X98765432"
_RESIDENT_MIN_YEAR = 1900
_RESIDENT_MAX_YEAR = 2100

# GB 32100-2015: I, O, S, V and Z are left out because they are easily misread.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
# Weight of position i (1-based) is 3**(i-1) mod 31.
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

# GB 11714-1997 organisation code (USCC positions 9-17): MOD 11 over 8 characters.
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_ALPHABET = _DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_ID_LENGTH = 18

# Bounds the work NFKC does on hostile input; a real identifier with a
# separator between every character is still far below these.
_MAX_RAW_ID_LENGTH = 100
_MAX_RAW_PLAIN_LENGTH = 4096

# NFKC already folds the full-width hyphen (U+FF0D) to '-'; these dashes
# survive NFKC but are typed by Chinese input methods and spreadsheets.
_DASHES = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63")

_LABELS = {
    IdKind.RESIDENT_ID: "resident ID",
    IdKind.USCC: "USCC",
    IdKind.PLAIN: "plain identifier",
}


_RESIDENT_ASCII_OFFSET = 48 * sum(_RESIDENT_WEIGHTS)


def resident_id_check_char(body17: str) -> str:
    """Return the ISO 7064 MOD 11-2 check character for a 17-digit resident ID body."""
    if not isinstance(body17, str) or len(body17) != 17 or not (body17.isascii() and body17.isdigit()):
        raise InvalidIdentifier("resident ID body must be 17 ASCII digits")
    # On the ASCII codes: each digit is its code minus 48, so subtract 48 x the weight sum once.
    total = sum(map(operator.mul, body17.encode(), _RESIDENT_WEIGHTS)) - _RESIDENT_ASCII_OFFSET
    return _RESIDENT_CHECK[total % 11]


def uscc_check_char(body17: str) -> str:
    """Return the GB 32100-2015 check character for the first 17 USCC characters."""
    if not isinstance(body17, str) or len(body17) != 17:
        raise InvalidIdentifier("USCC body must be 17 characters")
    for i, c in enumerate(body17):
        if c not in _USCC_VALUE:
            raise InvalidIdentifier(
                f"USCC body has a character outside the GB 32100 alphabet at position {i + 1}"
            )
    total = sum(_USCC_VALUE[c] * w for c, w in zip(body17, _USCC_WEIGHTS))
    value = 31 - total % 31
    return "0" if value == 31 else USCC_ALPHABET[value]


def org_code_check_char(body8: str) -> str:
    """Return the GB 11714 check character of an organisation code body (8 characters).

    USCC positions 9-17 carry such a code, but GB 32100 does not require it to
    be consistent (early pilot regions issued codes that are not), so
    validation never checks it; generators use it to look realistic.
    """
    if not isinstance(body8, str) or len(body8) != 8 or not _all_in(body8, _ORG_ALPHABET):
        raise InvalidIdentifier("organisation code body must be 8 digits or upper-case letters")
    total = sum(_ORG_ALPHABET.index(c) * w for c, w in zip(body8, _ORG_WEIGHTS))
    value = 11 - total % 11
    return "X" if value == 10 else "0" if value == 11 else str(value)


def normalise_resident_id(raw: str) -> str:
    """Return the canonical 18-character resident ID or raise ``InvalidIdentifier``."""
    label = _LABELS[IdKind.RESIDENT_ID]
    value = _compact(label, raw)
    if len(value) != _ID_LENGTH:
        hint = ""
        if len(value) == 15:
            hint = " (15-digit first-generation IDs must be converted first)"
        raise InvalidIdentifier(f"{label} must have 18 characters, got {len(value)}{hint}")
    body = value[:17]
    if not (body.isascii() and body.isdigit()):  # the loop below only finds the position to report
        for i, c in enumerate(body):
            if c not in _DIGITS:
                raise InvalidIdentifier(f"{label} has a non-digit character at position {i + 1}")
    if value[17] not in _RESIDENT_CHECK:
        raise InvalidIdentifier(f"{label} check character (position 18) must be a digit or X")
    _check_birth_date(label, value[6:14])
    if resident_id_check_char(value[:17]) != value[17]:
        raise InvalidIdentifier(f"{label} check character does not match")
    return value


def normalise_uscc(raw: str) -> str:
    """Return the canonical 18-character USCC or raise ``InvalidIdentifier``."""
    label = _LABELS[IdKind.USCC]
    value = _compact(label, raw)
    if len(value) != _ID_LENGTH:
        raise InvalidIdentifier(f"{label} must have 18 characters, got {len(value)}")
    for i, c in enumerate(value):
        if c not in _USCC_VALUE:
            raise InvalidIdentifier(
                f"{label} has a character outside the GB 32100 alphabet at position {i + 1}"
            )
    _check_uscc_region(label, value)
    if uscc_check_char(value[:17]) != value[17]:
        raise InvalidIdentifier(f"{label} check character does not match")
    return value


def normalise_plain(raw: str) -> str:
    """Return NFKC, case-folded text with whitespace runs collapsed to one space."""
    label = _LABELS[IdKind.PLAIN]
    text = unicodedata.normalize("NFKC", _check_raw(label, raw, _MAX_RAW_PLAIN_LENGTH))
    # NFKC again after casefold: casefold can leave text that is not NFKC.
    text = unicodedata.normalize("NFKC", text.casefold())
    value = " ".join(text.split())
    if not value:
        raise InvalidIdentifier(f"{label} is empty")
    # NFKC can lengthen text ('¼' becomes three characters, U+FDFA eighteen): bound the
    # canonical form as well, so every value returned here is accepted again (idempotence,
    # NormalisedId) and no caller stores more than the documented bound.
    if len(value) > _MAX_RAW_PLAIN_LENGTH:
        raise InvalidIdentifier(f"{label} is longer than {_MAX_RAW_PLAIN_LENGTH} characters once normalised")
    return value


_NORMALISERS = {
    IdKind.RESIDENT_ID: normalise_resident_id,
    IdKind.USCC: normalise_uscc,
    IdKind.PLAIN: normalise_plain,
}


def normalise(kind: IdKind | str, raw: str) -> str:
    """Normalise ``raw`` as an identifier of ``kind``; raise ``InvalidIdentifier`` if invalid.

    An unknown ``kind`` is a declaration error, not a bad value, and raises
    ``InvalidInput``.
    """
    return _NORMALISERS[_coerce_kind(kind)](raw)


def normaliser(kind: IdKind | str) -> Callable[[str], str]:
    """The normalising function for ``kind``, for callers that normalise many values of one kind."""
    return _NORMALISERS[_coerce_kind(kind)]


def is_valid(kind: IdKind | str, raw: object) -> bool:
    """Return whether ``raw`` normalises as an identifier of ``kind``."""
    try:
        normalise(kind, raw)  # type: ignore[arg-type]  # any object is rejected cleanly
    except InvalidIdentifier:
        return False
    return True


@dataclass(frozen=True, slots=True, repr=False)
class NormalisedId:
    """An identifier already in canonical form; constructing an invalid one raises.

    ``repr`` and ``str`` show the kind and length only, so the value cannot
    reach a log by accident; read ``.value`` explicitly to use it.
    """

    kind: IdKind
    value: str

    def __post_init__(self) -> None:
        kind = _coerce_kind(self.kind)
        object.__setattr__(self, "kind", kind)
        if normalise(kind, self.value) != self.value:
            raise InvalidIdentifier(f"{_LABELS[kind]} is not in canonical form")

    @classmethod
    def parse(cls, kind: IdKind | str, raw: str) -> NormalisedId:
        """Normalise ``raw`` and wrap it."""
        k = _coerce_kind(kind)
        return cls(k, normalise(k, raw))

    def __repr__(self) -> str:
        return f"NormalisedId(kind={self.kind.value}, value=<{len(self.value)} chars>)"


def make_resident_id(region6: str, birth: datetime.date, seq3: int) -> str:
    """Build a valid resident ID from a region code, birth date and sequence number.

    An odd ``seq3`` denotes a man, an even one a woman (GB 11643).
    """
    if not isinstance(region6, str) or len(region6) != 6 or not _all_in(region6, _DIGITS):
        raise InvalidIdentifier("resident ID region code must be 6 ASCII digits")
    if not isinstance(birth, datetime.date):
        raise InvalidIdentifier("resident ID birth date must be a datetime.date")
    if not _RESIDENT_MIN_YEAR <= birth.year <= _RESIDENT_MAX_YEAR:
        raise InvalidIdentifier("resident ID birth year must be within 1900-2100")
    if isinstance(seq3, bool) or not isinstance(seq3, int) or not 0 <= seq3 <= 999:
        raise InvalidIdentifier("resident ID sequence number must be an int in 0..999")
    body = f"{region6}{birth:%Y%m%d}{seq3:03d}"
    return body + resident_id_check_char(body)


def make_uscc(body17: str) -> str:
    """Append the GB 32100 check character to a canonical 17-character USCC body."""
    check = uscc_check_char(body17)
    _check_uscc_region("USCC body", body17)
    return body17 + check


def _coerce_kind(kind: IdKind | str) -> IdKind:
    if isinstance(kind, IdKind):
        return kind
    try:
        return IdKind(kind)
    except ValueError:
        raise InvalidInput(
            "unknown identifier kind; expected one of "
            + ", ".join(k.value for k in IdKind)
        ) from None


def _check_raw(label: str, raw: object, max_length: int) -> str:
    if not isinstance(raw, str):
        raise InvalidIdentifier(f"{label} must be a str, got {type(raw).__name__}")
    if len(raw) > max_length:
        raise InvalidIdentifier(f"{label} input is longer than {max_length} characters")
    return raw


def _compact(label: str, raw: object) -> str:
    raw = _check_raw(label, raw, _MAX_RAW_ID_LENGTH)
    # Fast path for the common case: plain ASCII letters and digits are already
    # NFKC-normal and hold no whitespace, dash or format character.
    if raw.isascii() and raw.isalnum():
        return raw.upper()
    text = unicodedata.normalize("NFKC", raw)
    # Zero-width spaces and BOMs (category Cf) come along from spreadsheets;
    # str.split() does not count them as whitespace.
    kept = (
        c
        for c in "".join(text.split())
        if c not in _DASHES and unicodedata.category(c) != "Cf"
    )
    return "".join(kept).upper()


def _check_birth_date(label: str, yyyymmdd: str) -> None:
    year = int(yyyymmdd[:4])
    if not _RESIDENT_MIN_YEAR <= year <= _RESIDENT_MAX_YEAR:
        raise InvalidIdentifier(f"{label} birth year (positions 7-10) is outside 1900-2100")
    try:
        datetime.date(year, int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        raise InvalidIdentifier(
            f"{label} birth date (positions 7-14) is not a real calendar date"
        ) from None


def _check_uscc_region(label: str, value: str) -> None:
    for i in range(2, 8):
        if value[i] not in _DIGITS:
            raise InvalidIdentifier(
                f"{label} region code (positions 3-8) has a non-digit at position {i + 1}"
            )


def _all_in(text: str, alphabet: str) -> bool:
    return all(c in alphabet for c in text)
