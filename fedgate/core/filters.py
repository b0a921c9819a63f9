"""Row filters: a small, safe language that restricts a dataset before matching, counting or disclosure.

Grammar (keywords are case-insensitive, field names are not)::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | atom
    atom       := "(" expr ")" | comparison
    comparison := FIELD OP literal
                | FIELD "in" "(" literal ("," literal)* ")"
                | FIELD "is" ["not"] "null"
    OP         := "=" | "!=" | "<" | "<=" | ">" | ">="
    literal    := integer (at most 18 digits) | 'string' ('' is a quote; at most 256 characters)

The gateway parses a filter to validate it and to learn which fields it touches;
the adapter parses the same text again and evaluates it itself, as a Python
predicate over rows or as a SQLAlchemy expression with bound parameters. No SQL
text ever comes from the caller.

Logic is SQL's three-valued logic: a comparison with a null is *unknown*, and a
row is selected only when the whole filter is true. So ``not x = 1`` does not
select rows where ``x`` is null; write ``x is null or not x = 1`` for that.

Error messages name a position and what was expected but never a value from the
text: a literal may be an identifier or a classified value.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import string
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias, assert_never

from fedgate.core.datasets import FieldType
from fedgate.core.errors import InvalidInput

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = [
    "MAX_COMPARISONS", "MAX_DEPTH", "MAX_DIGITS", "MAX_IN_ITEMS", "MAX_STRING", "MAX_TEXT",
    "OPERATORS", "KEYWORDS",
    "And", "Comparison", "Filter", "FilterSyntaxError", "InList", "IsNull", "Not", "Or",
    "check", "fields_of", "parse", "parse_checked", "predicate", "redacted_text", "to_sqlalchemy", "to_text",
]

# Limits are checked while reading, so the cost of hostile text is bounded by MAX_TEXT.
MAX_TEXT: Final = 4096
MAX_DEPTH: Final = 32
MAX_COMPARISONS: Final = 64
MAX_IN_ITEMS: Final = 256
MAX_STRING: Final = 256
MAX_DIGITS: Final = 18  # so every integer fits a signed 64-bit database column

OPERATORS: Final = ("=", "!=", "<", "<=", ">", ">=")
KEYWORDS: Final = frozenset({"and", "or", "not", "in", "is", "null"})

LiteralValue: TypeAlias = int | str
_Truth: TypeAlias = bool | None  # None is SQL's "unknown"

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_INT = 10**MAX_DIGITS - 1
_SPACE = frozenset(" \t\r\n")
_DIGITS = frozenset(string.digits)
_WORD_START = frozenset(string.ascii_letters + "_")
_WORD = _WORD_START | _DIGITS
_FULL_WIDTH = frozenset("\u3000\uff08\uff09\uff0c\uff1d\uff1c\uff1e\uff01\uff07\u2018\u2019\u201c\u201d")
_OPS: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class FilterSyntaxError(InvalidInput):
    """Filter text that does not parse; ``str()`` is ``filter: <message> at position <n>`` (1-based)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"filter: {message} at position {position}")
        self.reason = message
        self.position = position


# ---------------------------------------------------------------------------
# AST: frozen nodes that validate themselves, so an unprintable filter cannot exist
# ---------------------------------------------------------------------------


def _is_control(ch: str) -> bool:
    # Control, format (bidi overrides, zero-width, BOM) and lone surrogate characters are
    # invisible or unencodable: they could disguise a filter in logs and reviews.
    o = ord(ch)
    if 0x20 <= o < 0x7F:
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs")


def _check_field(name: object) -> None:
    if not isinstance(name, str) or not _FIELD.fullmatch(name):
        raise InvalidInput("filter: a field name must be a letter or '_' then letters, digits or '_' (max 63)")
    if name.lower() in KEYWORDS:
        raise InvalidInput(f"filter: '{name}' is a keyword, not a field name")


def _check_literal(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput("filter: values must be integers or strings")
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise InvalidInput(f"filter: integer literal longer than {MAX_DIGITS} digits")
    elif len(value) > MAX_STRING:
        raise InvalidInput(f"filter: string literal longer than {MAX_STRING} characters")
    elif any(_is_control(ch) for ch in value):
        raise InvalidInput("filter: control character in a string literal")


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op value``."""

    field: str
    op: str
    value: LiteralValue

    def __post_init__(self) -> None:
        _check_field(self.field)
        if self.op not in OPERATORS:
            raise InvalidInput(f"filter: operator must be one of {', '.join(OPERATORS)}")
        _check_literal(self.value)


@dataclass(frozen=True, slots=True)
class InList:
    """``field in (v1, v2, ...)``."""

    field: str
    values: tuple[LiteralValue, ...]

    def __post_init__(self) -> None:
        _check_field(self.field)
        object.__setattr__(self, "values", tuple(self.values))
        if not 1 <= len(self.values) <= MAX_IN_ITEMS:
            raise InvalidInput(f"filter: an 'in' list takes 1 to {MAX_IN_ITEMS} values")
        for v in self.values:
            _check_literal(v)


@dataclass(frozen=True, slots=True)
class IsNull:
    """``field is null``, or ``field is not null`` when negated."""

    field: str
    negated: bool = False

    def __post_init__(self) -> None:
        _check_field(self.field)
        if not isinstance(self.negated, bool):
            raise InvalidInput("filter: IsNull.negated must be a bool")


@dataclass(frozen=True, slots=True)
class Not:
    """``not expr``."""

    expr: Filter

    def __post_init__(self) -> None:
        _check_node(self.expr)


@dataclass(frozen=True, slots=True)
class And:
    """``a and b and ...``: two or more items."""

    items: tuple[Filter, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", _check_items(self.items, "and"))


@dataclass(frozen=True, slots=True)
class Or:
    """``a or b or ...``: two or more items."""

    items: tuple[Filter, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", _check_items(self.items, "or"))


Filter: TypeAlias = Comparison | InList | IsNull | Not | And | Or
_Leaf: TypeAlias = Comparison | InList | IsNull
_NODES = (Comparison, InList, IsNull, Not, And, Or)


def _check_node(node: object) -> None:
    if not isinstance(node, _NODES):
        raise InvalidInput("filter: expected a filter node")


def _check_items(items: Sequence[Filter], word: str) -> tuple[Filter, ...]:
    # Fewer than two items would not survive to_text/parse unchanged.
    items = tuple(items)
    if len(items) < 2:
        raise InvalidInput(f"filter: '{word}' needs at least two items")
    for item in items:
        _check_node(item)
    return items


# ---------------------------------------------------------------------------
# Reading text
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "field", "kw", "int", "str", "op", "(", ")", ",", "end"
    value: LiteralValue
    pos: int  # 1-based


class _Lexer:
    """Hands out one token at a time, so the first error in reading order is the one reported."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._i = 0
        self._peeked: _Token | None = None

    def peek(self) -> _Token:
        if self._peeked is None:
            self._peeked = self._scan()
        return self._peeked

    def take(self) -> _Token:
        tok = self.peek()
        self._peeked = None
        return tok

    def _scan(self) -> _Token:
        text, i, n = self._text, self._i, len(self._text)
        while i < n and text[i] in _SPACE:
            i += 1
        self._i = i
        if i >= n:
            return _Token("end", "", n + 1)
        ch = text[i]
        if ch in "(),":
            self._i = i + 1
            return _Token(ch, ch, i + 1)
        if ch in "=!<>":
            return self._operator(i)
        if ch == "'":
            return self._string(i)
        if ch == "-" or ch in _DIGITS:
            return self._integer(i)
        if ch in _WORD_START:
            return self._word(i)
        raise FilterSyntaxError(_unexpected(ch), i + 1)

    def _operator(self, i: int) -> _Token:
        two = self._text[i:i + 2]
        if two == "==":
            raise FilterSyntaxError("'==' is not an operator (use '=')", i + 1)
        if two == "<>":
            raise FilterSyntaxError("'<>' is not an operator (use '!=')", i + 1)
        if two in ("!=", "<=", ">="):
            self._i = i + 2
            return _Token("op", two, i + 1)
        if two[0] == "!":
            raise FilterSyntaxError("'!' is not an operator (use '!=' or 'not')", i + 1)
        self._i = i + 1
        return _Token("op", two[0], i + 1)

    def _integer(self, i: int) -> _Token:
        text, n = self._text, len(self._text)
        start = i + 1 if text[i] == "-" else i
        j = start
        while j < n and text[j] in _DIGITS:
            j += 1
        digits = j - start
        if digits == 0:
            raise FilterSyntaxError("expected digits after '-'", i + 1)
        if digits > MAX_DIGITS:
            raise FilterSyntaxError(f"integer literal longer than {MAX_DIGITS} digits", i + 1)
        if digits > 1 and text[start] == "0":
            raise FilterSyntaxError("integer literal with a leading zero", i + 1)
        if j < n and (text[j] in _WORD or text[j] == "."):
            # Floats, exponents, hex and suffixes are all refused: amounts are integers (fen).
            raise FilterSyntaxError("integers are whole decimal numbers (no '.', exponent or suffix)", i + 1)
        self._i = j
        return _Token("int", int(text[i:j]), i + 1)

    def _string(self, i: int) -> _Token:
        text = self._text
        parts: list[str] = []
        length = 0
        j = i + 1
        while True:
            k = text.find("'", j)
            if k < 0:
                raise FilterSyntaxError("unterminated string", i + 1)
            chunk = text[j:k]
            for offset, ch in enumerate(chunk):
                if ch in _SPACE and ch != " ":
                    raise FilterSyntaxError("tab or line break inside a string", j + offset + 1)
            escaped = text.startswith("'", k + 1)
            length += len(chunk) + escaped
            if length > MAX_STRING:
                raise FilterSyntaxError(f"string literal longer than {MAX_STRING} characters", i + 1)
            parts.append(chunk)
            if not escaped:
                self._i = k + 1
                return _Token("str", "".join(parts), i + 1)
            parts.append("'")
            j = k + 2

    def _word(self, i: int) -> _Token:
        text, n = self._text, len(self._text)
        j = i + 1
        while j < n and text[j] in _WORD:
            j += 1
        if j - i > 63:
            raise FilterSyntaxError("field name longer than 63 characters", i + 1)
        self._i = j
        word = text[i:j]
        if word.lower() in KEYWORDS:
            return _Token("kw", word.lower(), i + 1)
        return _Token("field", word, i + 1)


def _unexpected(ch: str) -> str:
    # Only ASCII punctuation is echoed: one such character cannot carry a value.
    if ch == '"':
        return "strings take single quotes, not '\"'"
    if ch in _FULL_WIDTH:
        return "unexpected full-width or typographic character (use ASCII spaces, quotes and punctuation)"
    if ch in string.punctuation:
        return f"unexpected character '{ch}'"
    return "unexpected character"


class _Parser:
    def __init__(self, text: str) -> None:
        self._lex = _Lexer(text)
        self._depth = 0
        self._comparisons = 0

    def parse(self) -> Filter:
        node = self._or()
        tok = self._lex.peek()
        if tok.kind != "end":
            raise FilterSyntaxError("unbalanced ')'" if tok.kind == ")" else
                                    "expected 'and', 'or' or the end of the filter", tok.pos)
        return node

    def _keyword(self, word: str) -> bool:
        tok = self._lex.peek()
        return tok.kind == "kw" and tok.value == word

    def _enter(self, pos: int) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise FilterSyntaxError(f"nesting deeper than {MAX_DEPTH} levels", pos)

    def _or(self) -> Filter:
        return self._joined("or", self._and, Or)

    def _and(self) -> Filter:
        return self._joined("and", self._not, And)

    def _joined(self, word: str, operand: Callable[[], Filter],
                join: Callable[[tuple[Filter, ...]], Filter]) -> Filter:
        """Operands separated by the keyword `word`: one alone as it is, two or more joined."""
        items = [operand()]
        while self._keyword(word):
            self._lex.take()
            items.append(operand())
        return items[0] if len(items) == 1 else join(tuple(items))

    def _not(self) -> Filter:
        if self._keyword("not"):
            self._enter(self._lex.take().pos)
            inner = self._not()
            self._depth -= 1
            return Not(inner)
        return self._atom()

    def _atom(self) -> Filter:
        tok = self._lex.take()
        if tok.kind == "(":
            self._enter(tok.pos)
            inner = self._or()
            close = self._lex.take()
            if close.kind == "end":
                raise FilterSyntaxError("unbalanced '('", tok.pos)
            if close.kind != ")":
                raise FilterSyntaxError("expected 'and', 'or' or ')'", close.pos)
            self._depth -= 1
            return inner
        if tok.kind == "field":
            return self._comparison(tok)
        raise FilterSyntaxError("expected a field name, 'not' or '('", tok.pos)

    def _comparison(self, field_tok: _Token) -> Filter:
        self._comparisons += 1
        if self._comparisons > MAX_COMPARISONS:
            raise FilterSyntaxError(f"more than {MAX_COMPARISONS} comparisons", field_tok.pos)
        field = str(field_tok.value)
        tok = self._lex.take()
        if tok.kind == "op":
            return Comparison(field, str(tok.value), self._literal(f"expected a value after '{tok.value}'"))
        if tok.kind == "kw" and tok.value == "in":
            return InList(field, self._in_list())
        if tok.kind == "kw" and tok.value == "is":
            negated = self._keyword("not")
            if negated:
                self._lex.take()
            null = self._lex.take()
            if not (null.kind == "kw" and null.value == "null"):
                raise FilterSyntaxError("expected 'null' after 'is not'" if negated
                                        else "expected 'null' or 'not null' after 'is'", null.pos)
            return IsNull(field, negated)
        raise FilterSyntaxError("expected an operator, 'in' or 'is' after a field name", tok.pos)

    def _in_list(self) -> tuple[LiteralValue, ...]:
        opening = self._lex.take()
        if opening.kind != "(":
            raise FilterSyntaxError("expected '(' after 'in'", opening.pos)
        values = [self._literal("expected a value in the 'in' list")]
        while True:
            sep = self._lex.take()
            if sep.kind == ")":
                return tuple(values)
            if sep.kind == "end":
                raise FilterSyntaxError("unbalanced '('", opening.pos)
            if sep.kind != ",":
                raise FilterSyntaxError("expected ',' or ')' in the 'in' list", sep.pos)
            if len(values) == MAX_IN_ITEMS:
                raise FilterSyntaxError(f"'in' list longer than {MAX_IN_ITEMS} values", self._lex.peek().pos)
            values.append(self._literal("expected a value in the 'in' list"))

    def _literal(self, expected: str) -> LiteralValue:
        tok = self._lex.take()
        if tok.kind in ("int", "str"):
            return tok.value
        if tok.kind == "kw" and tok.value == "null":
            expected += " (test for null with 'is null')"
        raise FilterSyntaxError(expected, tok.pos)


def parse(text: str) -> Filter | None:
    """Parse filter text; None for empty or blank text (all rows). Raises FilterSyntaxError."""
    if not isinstance(text, str):
        raise InvalidInput(f"filter: must be text, not {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise FilterSyntaxError(f"text longer than {MAX_TEXT} characters", MAX_TEXT + 1)
    for i, ch in enumerate(text):
        if ch not in _SPACE and _is_control(ch):
            raise FilterSyntaxError("control or invisible formatting character", i + 1)
    if not text.strip(" \t\r\n"):
        return None
    result = _Parser(text).parse()
    # Canonical spacing can make the text longer; refusing here keeps parse(to_text(f)) == f
    # true for every filter parse accepts, so the canonical form is always safe to forward.
    if len(to_text(result)) > MAX_TEXT:
        raise FilterSyntaxError(f"text longer than {MAX_TEXT} characters once written canonically", 1)
    return result


# ---------------------------------------------------------------------------
# Writing, inspecting and type checking
# ---------------------------------------------------------------------------


def _literal_text(value: LiteralValue) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _operand(node: Filter, redact: bool) -> str:
    # Nested and/or are always parenthesised, so the AST's shape survives a round trip.
    text = _text(node, redact)
    return f"({text})" if isinstance(node, And | Or) else text


def _text(node: Filter, redact: bool = False) -> str:
    def lit(value: LiteralValue) -> str:
        return "?" if redact else _literal_text(value)

    if isinstance(node, Comparison):
        return f"{node.field} {node.op} {lit(node.value)}"
    if isinstance(node, InList):
        return f"{node.field} in ({', '.join(lit(v) for v in node.values)})"
    if isinstance(node, IsNull):
        return f"{node.field} is {'not null' if node.negated else 'null'}"
    if isinstance(node, Not):
        return "not " + _operand(node.expr, redact)
    if isinstance(node, And):
        return " and ".join(_operand(item, redact) for item in node.items)
    if isinstance(node, Or):
        return " or ".join(_operand(item, redact) for item in node.items)
    assert_never(node)


def to_text(f: Filter | None) -> str:
    """Canonical text: lower-case keywords, single spaces, minimal parentheses; "" for None."""
    return "" if f is None else _text(f)


def redacted_text(f: Filter | None) -> str:
    """Canonical text with every literal written as ``?``: for audit entries and logs."""
    return "" if f is None else _text(f, redact=True)


def _leaves(f: Filter) -> Iterator[_Leaf]:
    """The comparisons of a filter, left to right (iterative: built ASTs may be deep)."""
    stack: list[Filter] = [f]
    while stack:
        node = stack.pop()
        if isinstance(node, Not):
            stack.append(node.expr)
        elif isinstance(node, And | Or):
            stack.extend(reversed(node.items))
        else:
            yield node


def fields_of(f: Filter | None) -> frozenset[str]:
    """The field names a filter reads."""
    return frozenset() if f is None else frozenset(leaf.field for leaf in _leaves(f))


def _parse_date(value: str) -> dt.date | None:
    # fromisoformat alone also takes '20240101' and week dates; only YYYY-MM-DD is a date here.
    if not _DATE.fullmatch(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _check_value(field: str, ftype: FieldType, value: LiteralValue) -> None:
    if ftype == FieldType.INT:
        if not isinstance(value, int):
            raise InvalidInput(f"filter: field '{field}' is an integer; compare it with an integer, not a string")
    elif ftype == FieldType.DATE:
        if not isinstance(value, str):
            raise InvalidInput(f"filter: field '{field}' is a date; compare it with a 'YYYY-MM-DD' string")
        if _parse_date(value) is None:
            raise InvalidInput(f"filter: field '{field}' is a date; a value is not a valid 'YYYY-MM-DD' date")
    elif ftype == FieldType.STRING:
        if not isinstance(value, str):
            raise InvalidInput(f"filter: field '{field}' is a string; compare it with a 'quoted string'")
    else:
        raise InvalidInput(f"filter: field '{field}' has a type filters do not support")


def parse_checked(text: str, types: Mapping[str, FieldType]) -> Filter | None:
    """Parse filter text and type-check it against a dataset's fields, as every party does for itself."""
    f = parse(text)
    check(f, types)
    return f


def check(f: Filter | None, types: Mapping[str, FieldType]) -> None:
    """Raise InvalidInput for an unknown field or a literal of the wrong type for its field."""
    if f is None:
        return
    for leaf in _leaves(f):
        ftype = types.get(leaf.field)
        if ftype is None:
            raise InvalidInput(f"filter: unknown field '{leaf.field}'")
        values = (leaf.value,) if isinstance(leaf, Comparison) else leaf.values if isinstance(leaf, InList) else ()
        for value in values:
            _check_value(leaf.field, ftype, value)


# ---------------------------------------------------------------------------
# Evaluating: Python predicate over rows, SQLAlchemy expression for SQL sources
# ---------------------------------------------------------------------------

_Eval: TypeAlias = Callable[[Sequence[object]], _Truth]


def _comparable(x: object, like: LiteralValue) -> LiteralValue | None:
    """x as a value of like's kind, or None (unknown, as for a null) if it is null or of another kind."""
    if isinstance(like, str):
        if isinstance(x, str):
            return x
        # dates from a SQL source compare as their ISO text, as CSV dates do
        return x.isoformat() if type(x) is dt.date else None
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _index(columns: Mapping[str, int], field: str) -> int:
    try:
        return columns[field]
    except KeyError:
        raise InvalidInput(f"filter: unknown field '{field}'") from None


def _compile(node: Filter, columns: Mapping[str, int]) -> _Eval:
    if isinstance(node, Comparison):
        i, value, cmp = _index(columns, node.field), node.value, _OPS[node.op]

        def comparison(row: Sequence[object]) -> _Truth:
            x = _comparable(row[i], value)
            return None if x is None else bool(cmp(x, value))
        return comparison
    if isinstance(node, InList):
        i = _index(columns, node.field)
        ints = frozenset(v for v in node.values if isinstance(v, int))
        strs = frozenset(v for v in node.values if isinstance(v, str))

        def in_list(row: Sequence[object]) -> _Truth:
            x = row[i]
            if isinstance(x, int) and not isinstance(x, bool):
                return x in ints if ints else None
            x = _comparable(x, "")
            if x is None or not strs:
                return None
            return x in strs
        return in_list
    if isinstance(node, IsNull):
        i, negated = _index(columns, node.field), node.negated
        return lambda row: (row[i] is None) != negated
    if isinstance(node, Not):
        inner = _compile(node.expr, columns)

        def negation(row: Sequence[object]) -> _Truth:
            r = inner(row)
            return None if r is None else not r
        return negation
    if isinstance(node, And | Or):
        items = [_compile(item, columns) for item in node.items]
        # Kleene logic: the deciding value short-circuits; otherwise any unknown makes it unknown.
        decisive = isinstance(node, Or)

        def junction(row: Sequence[object]) -> _Truth:
            result: _Truth = not decisive
            for item in items:
                r = item(row)
                if r is decisive:
                    return decisive
                if r is None:
                    result = None
            return result
        return junction
    assert_never(node)


def predicate(f: Filter | None, columns: Sequence[str]) -> Callable[[Sequence[object]], bool]:
    """A test for rows given as tuples in ``columns`` order (str/int/None; dates as ISO text).

    A comparison with a null, or with a value of another kind than the literal
    (run ``check`` first), is unknown; a row passes only if the filter is true.
    """
    if f is None:
        return lambda row: True
    index: dict[str, int] = {}
    for i, name in enumerate(columns):
        index.setdefault(name, i)
    evaluate = _compile(f, index)
    return lambda row: evaluate(row) is True


def to_sqlalchemy(f: Filter | None, table: sa.Table) -> sa.ColumnElement[bool]:
    """A boolean SQLAlchemy expression over ``table``; every literal is a bound parameter.

    Literals are checked against the column's SQL type (integer, string, date) and
    'YYYY-MM-DD' strings become dates for Date columns. String ordering follows
    the database's collation (code-point order in SQLite).
    """
    import sqlalchemy as sa  # only SQL sources need it; parsing stays dependency-free

    def column(field: str) -> sa.ColumnElement[Any]:
        try:
            return table.c[field]
        except KeyError:
            raise InvalidInput(f"filter: unknown field '{field}'") from None

    def bind(col: sa.ColumnElement[Any], field: str, value: LiteralValue) -> object:
        # Checked here as well as in check(): the adapter trusts its own table, not the caller.
        if isinstance(col.type, sa.Date):
            date = _parse_date(value) if isinstance(value, str) else None
            if date is None:
                raise InvalidInput(f"filter: field '{field}' is a date; compare it with a 'YYYY-MM-DD' string")
            return date
        if isinstance(col.type, sa.Integer) and not isinstance(value, int):
            raise InvalidInput(f"filter: field '{field}' is an integer; compare it with an integer, not a string")
        if isinstance(col.type, sa.String) and not isinstance(value, str):
            raise InvalidInput(f"filter: field '{field}' is a string; compare it with a 'quoted string'")
        return value

    def build(node: Filter) -> sa.ColumnElement[bool]:
        if isinstance(node, Comparison):
            col = column(node.field)
            expr: sa.ColumnElement[bool] = _OPS[node.op](col, bind(col, node.field, node.value))
            return expr
        if isinstance(node, InList):
            col = column(node.field)
            return col.in_([bind(col, node.field, v) for v in node.values])
        if isinstance(node, IsNull):
            col = column(node.field)
            return col.is_not(None) if node.negated else col.is_(None)
        if isinstance(node, Not):
            return sa.not_(build(node.expr))
        if isinstance(node, And):
            return sa.and_(*(build(item) for item in node.items))
        if isinstance(node, Or):
            return sa.or_(*(build(item) for item in node.items))
        assert_never(node)

    return sa.true() if f is None else build(f)
