"""The department's memory of the row sets its answers covered, for the difference check.

An answer's row set is kept as stable row references, never identifiers: a
BLAKE2b-64 hash, keyed with a secret only this department holds (`row_refs.key`
in its data dir, 0600, created at first start), of the row's key-field value
normalised as matching does (or, for a dataset without a key field, of the
row's whole content) and of its occurrence number among the rows with that
value, so a set has exactly as many references as the answer has rows.

Per asking agency and dataset, the sets answered in the last `window_days`
are kept as compressed bitmaps (pyroaring's BitMap64) in a SQLite file beside
the disclosure log; sets past the window are dropped, and at most
`max_sets` are kept per agency and dataset (the oldest go first: an agency
that floods its own history only forgets its own oldest answers, which the
window would forget anyway). With each set, a keyed hash of the filter that
chose it: the same set again is a repeat only under the same filter.
`record_unless_near` is the check and the record
in one transaction, so two racing queries cannot both pass against a history
that holds neither.

A self-join's left side checks both sides' sets and then the rows its answer
covers (`RowSets.self_join`); that matched set is kept with the k it was
checked at (`bar`), and a later set is near it within the smaller k.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyroaring import BitMap64

from fedgate.adapters.sources import Source
from fedgate.core.datasets import DatasetDecl
from fedgate.core.errors import ConfigError, DisclosureLogFailed, InvalidIdentifier, InvalidInput, StoreClosed
from fedgate.core.filters import Filter
from fedgate.crypto.ids import normaliser
from fedgate.core.identity import Identity
from fedgate.query.match_side import JoinSide
from fedgate.query.safeguards import AnswerRows

log = logging.getLogger(__name__)

SECRET_BYTES = 32
DEFAULT_WINDOW_DAYS = 90
# Sets kept per agency and dataset: 90 days of a busy agency's queries on one dataset. Each is a
# compressed bitmap of at most the dataset's row count in 8-byte references (far less when compressed).
DEFAULT_MAX_SETS = 2000
_DAY_S = 86_400.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS row_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT, agency TEXT NOT NULL, dataset TEXT NOT NULL,
    answered_at REAL NOT NULL, rows INTEGER NOT NULL, filter_tag BLOB NOT NULL, refs BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS row_sets_by_key ON row_sets (agency, dataset, answered_at);
"""
# Added with self-join checks: a kept matched set's own k (NULL for every other set, and for sets kept before).
_BAR_COLUMN = "ALTER TABLE row_sets ADD COLUMN bar INTEGER"


def load_or_create_secret(path: Path) -> bytes:
    """The department's row-reference key (raw bytes, mode 0600), created on first start."""
    if path.exists():
        raw = path.read_bytes()
        if len(raw) != SECRET_BYTES:
            raise ConfigError(str(path), f"row reference key file must hold exactly {SECRET_BYTES} bytes")
        return raw
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = os.urandom(SECRET_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
    return secret


@dataclass(frozen=True)
class RefBasis:
    """What a dataset's row references are made of: its first key field (with its kind), or every field."""

    columns: tuple[str, ...]
    kind: str | None  # the key's identifier kind; None: the row's whole content


def ref_basis(decl: DatasetDecl) -> RefBasis:
    """The first declared key field, so every kind of query on a dataset names its rows alike."""
    key = next((f for f in decl.fields if f.key), None)
    if key is None or key.key is None:
        return RefBasis(tuple(f.name for f in decl.fields), None)
    return RefBasis((key.name,), key.key.value)


class RowRefs:
    """Builds one answer's set of row references, row by row."""

    def __init__(self, secret: bytes, basis: RefBasis) -> None:
        self._secret = secret
        self._normalise = normaliser(basis.kind) if basis.kind else None
        self._seen: dict[bytes, int] = {}  # occurrences of each value after the first (duplicates only)
        self.refs = BitMap64()
        self.rows = 0  # counted apart: a 64-bit collision must not change an answer

    def add(self, values: Sequence[object]) -> int:
        """Add a row, given its basis columns' values; its reference."""
        material = self._material(values)
        ref = self._hash(material)
        if ref in self.refs:  # the same value again: the n-th occurrence has a reference of its own
            n = self._seen.get(material, 1)
            self._seen[material] = n + 1
            ref = self._hash(material + b"\x1e" + str(n).encode())
        self.refs.add(ref)
        self.rows += 1
        return ref

    def add_rows(self, rows: Iterable[Sequence[object]]) -> None:
        for row in rows:
            self.add(row)

    def _material(self, values: Sequence[object]) -> bytes:
        if self._normalise is None:
            return "\x1f".join("\x00" if v is None else repr(v) for v in values).encode()
        value = values[0]
        if value is None or value == "":
            return b"\x00missing"
        try:
            return b"k" + self._normalise(str(value)).encode()
        except InvalidIdentifier:
            return b"r" + str(value).encode()  # an invalid key is still a row: referenced by its raw text

    def _hash(self, material: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(material, digest_size=8, key=self._secret).digest(), "big")


def _open(path: Path) -> sqlite3.Connection:
    """The history's file, durable like the disclosure log beside it (WAL, synchronous=FULL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + _SCHEMA)
    if "bar" not in {row[1] for row in conn.execute("PRAGMA table_info(row_sets)")}:
        conn.execute(_BAR_COLUMN)
    return conn


class RowHistory:
    """Per agency and dataset, the row sets answered within the window (SQLite, one connection under a lock)."""

    def __init__(self, path: Path, secret: bytes, window_days: int = DEFAULT_WINDOW_DAYS,
                 max_sets: int = DEFAULT_MAX_SETS) -> None:
        self.path = path
        self._secret = secret  # filters are kept as keyed hashes: their text may name a person
        self.window_s = window_days * _DAY_S
        self.max_sets = max_sets
        self._conn: sqlite3.Connection | None = _open(path)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def record_unless_near(self, answer: AnswerRows, k: int, now: float | None = None) -> bool:
        """Record the answer's set unless an earlier one of its agency and dataset differs from it by
        fewer than k rows (the same set is near unless its filter is the same too); True if recorded. Blocking.

        Against a kept matched set (a self-join's, `AnswerRows.matched`, kept with the k it was checked at), the
        smaller of the two k: each answer was held to its own bar, and their difference is an aggregate like it."""
        refs = answer.refs if isinstance(answer.refs, BitMap64) else BitMap64(answer.refs)  # type: ignore[arg-type]
        now = time.time() if now is None else now
        with self._lock:
            if self._conn is None:
                raise StoreClosed("the row-set history is closed: the adapter is shutting down; retry later")
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    tag = hashlib.blake2b(answer.filter_text.encode(), digest_size=16, key=self._secret).digest()
                    near, same = self._near(conn, answer.agency, answer.dataset, refs, tag, k, now)
                    if same is not None:  # a repeat: its set stays in the window, without a second copy
                        conn.execute("UPDATE row_sets SET answered_at = ? WHERE id = ?", (now, same))
                    elif not near:
                        self._insert(conn, answer, refs, tag, now, k if answer.matched else None)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                log.error("row-set history %s: could not check or record a row set: %s", self.path, exc)
                raise DisclosureLogFailed("the department could not write its row-set history, so it did not "
                                          "serve the request; retry later") from exc
        return not near

    def _near(self, conn: sqlite3.Connection, agency: str, dataset: str, refs: BitMap64, tag: bytes, k: int,
              now: float) -> tuple[bool, int | None]:
        """Whether a kept set is near this one, and the id of the same set under the same filter (a repeat)."""
        conn.execute("DELETE FROM row_sets WHERE answered_at < ?", (now - self.window_s,))
        # Only sets within k in size can be within k in difference (|S Δ S'| >= ||S| - |S'||): the others'
        # bitmaps, up to megabytes each, are not even read.
        n = len(refs)
        rows = conn.execute("SELECT id, filter_tag, refs, bar FROM row_sets WHERE agency = ? AND dataset = ?"
                            " AND rows > ? AND rows < ?", (agency, dataset, n - k, n + k)).fetchall()
        near, same = False, None
        for row_id, kept_tag, blob, bar in rows:
            difference = refs.symmetric_difference_cardinality(BitMap64.deserialize(blob))
            if difference == 0 and kept_tag == tag:
                same = row_id
            elif difference < (k if bar is None else min(k, bar)):
                near = True
        return near, same

    def _insert(self, conn: sqlite3.Connection, answer: AnswerRows, refs: BitMap64, tag: bytes, now: float,
                bar: int | None) -> None:
        refs.run_optimize()
        conn.execute("INSERT INTO row_sets (agency, dataset, answered_at, rows, filter_tag, refs, bar)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (answer.agency, answer.dataset, now, len(refs), tag, refs.serialize(), bar))
        conn.execute("DELETE FROM row_sets WHERE agency = ? AND dataset = ? AND id NOT IN ("
                     "SELECT id FROM row_sets WHERE agency = ? AND dataset = ? ORDER BY id DESC LIMIT ?)",
                     (answer.agency, answer.dataset, answer.agency, answer.dataset, self.max_sets))

    def kept(self, agency: str, dataset: str) -> int:
        """How many sets are kept for an agency and dataset (tests, operators)."""
        with self._lock:
            if self._conn is None:
                raise StoreClosed("the row-set history is closed")
            return int(self._conn.execute("SELECT count(*) FROM row_sets WHERE agency = ? AND dataset = ?",
                                          (agency, dataset)).fetchone()[0])


class RowSets:
    """A department's row references and their history: what its services need for the difference check."""

    def __init__(self, secret: bytes, history: RowHistory) -> None:
        self._secret = secret
        self.history = history

    @classmethod
    def open(cls, data_dir: Path, window_days: int = DEFAULT_WINDOW_DAYS) -> RowSets:
        """The key and the history in the adapter's data dir, created at first start."""
        secret = load_or_create_secret(data_dir / "row_refs.key")
        return cls(secret, RowHistory(data_dir / "row_sets.db", secret, window_days))

    def builder(self, decl: DatasetDecl) -> RowRefs:
        return RowRefs(self._secret, ref_basis(decl))

    def read(self, source: Source, decl: DatasetDecl, where: Filter | None) -> RowRefs:
        """The references of the rows passing `where`, reading only the columns they are made of (blocking)."""
        refs = self.builder(decl)
        refs.add_rows(source.rows(list(ref_basis(decl).columns), where))
        return refs

    def self_join(self, subject: str, decl: DatasetDecl, source: Source, left: JoinSide, right: JoinSide,
                  total_rows: int) -> list[AnswerRows]:
        """A self-join's sets, in the order they are checked: each side's rows, then the rows the answer covers.

        Those are the left rows less the ones whose token found no match on the
        right. Rows that make no token (an invalid key, a missing value) stay: the
        answer reports them apart, so its cardinality is |left| - their number -
        the unmatched. Left out when the matched rows are exactly one side's
        token rows: the answer then tells nothing that side's does not. Blocking;
        reads the dataset once per side.
        """
        keys: set[str] = set()
        right_refs, right_tokens = self.builder(decl), BitMap64()
        for basis, ident in _keyed_rows(source, decl, right):
            ref = right_refs.add(basis)
            if ident is not None:
                keys.add(ident)
                right_tokens.add(ref)
        left_refs, left_tokens, matched, covered = self.builder(decl), BitMap64(), BitMap64(), BitMap64()
        for basis, ident in _keyed_rows(source, decl, left):
            ref = left_refs.add(basis)
            if ident is not None:
                left_tokens.add(ref)
                if ident not in keys:
                    continue
                matched.add(ref)
            covered.add(ref)
        sets = [self.answer(subject, decl, left_refs, total_rows, left.filter_text),
                self.answer(subject, decl, right_refs, total_rows, right.filter_text)]
        if matched not in (left_tokens, right_tokens):
            # Its filter tag names both sides, so only this very self-join is its repeat.
            tag = "\x1e".join(["self-join", *_tag(left), *_tag(right)])
            sets.append(AnswerRows(Identity.parse(subject).org, decl.name, covered, total_rows, tag, matched=True))
        return sets

    @staticmethod
    def answer(subject: str, decl: DatasetDecl, refs: RowRefs, total_rows: int, filter_text: str) -> AnswerRows:
        """The answer's row set, under the agency of the supervisor the logged entry names."""
        return AnswerRows(Identity.parse(subject).org, decl.name, refs.refs, total_rows, filter_text.strip())


def _tag(side: JoinSide) -> list[str]:
    return [side.key_field, ",".join(side.values), side.filter_text.strip()]


def _keyed_rows(source: Source, decl: DatasetDecl, side: JoinSide) -> Iterator[tuple[tuple[object, ...], str | None]]:
    """Each row of a join side: its reference basis values, and its normalised key if it makes a token (as
    `pool_tasks.tokens_for` decides: a valid key and every value field present), else None."""
    basis = ref_basis(decl).columns
    key = decl.field(side.key_field)
    if key is None or key.key is None:
        raise InvalidInput(f"'{side.key_field}' is not a key field of '{decl.qualified_name}'")
    normalise_key = normaliser(key.key.value)
    columns = list(dict.fromkeys([*basis, side.key_field, *side.values]))  # a column asked twice is read once
    at = {name: i for i, name in enumerate(columns)}
    for row in source.rows(columns, side.where):
        raw = row[at[side.key_field]]
        ident: str | None = None
        if raw is not None and raw != "" and all(row[at[v]] not in (None, "") for v in side.values):
            try:
                ident = normalise_key(str(raw))
            except InvalidIdentifier:
                ident = None
        yield tuple(row[at[c]] for c in basis), ident
