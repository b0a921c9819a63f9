"""The department's memory of the row sets its answers covered, for the difference check.

An answer's row set is kept as stable row references, never identifiers: a
BLAKE2b-64 hash, keyed with a secret only this department holds (`row_refs.key`
in its data dir, 0600, created at first start), of the row's key-field value
normalised as matching does (or, for a dataset without a key field, of the
row's whole content) and of its occurrence number among the rows with that
value, so a set has exactly as many references as the answer has rows.

Per asking agency and dataset, the sets answered in the last `window_days`
are kept as sorted arrays of references (`ref_sets.RefSet`, 8 bytes a row;
sets kept before that format as pyroaring BitMap64s, read as they are) in a
SQLite file beside the disclosure log; sets past the window are dropped, and at most
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
import sqlite3
import threading
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyroaring import BitMap64

from fedgate.adapters import secret_file
from fedgate.adapters.ref_sets import RefSet, Refs, chunks_of, chunks_of_blob, difference_below, sorted_unique
from fedgate.adapters.sources import Source
from fedgate.core.datasets import DatasetDecl
from fedgate.core.errors import DisclosureLogFailed, InvalidIdentifier, InvalidInput, StoreClosed
from fedgate.core.filters import Filter
from fedgate.crypto.ids import normaliser
from fedgate.core.identity import Identity
from fedgate.query.match_side import JoinSide
from fedgate.query.safeguards import AnswerRows

log = logging.getLogger(__name__)

DEFAULT_WINDOW_DAYS = 90
# Sets kept per agency and dataset: 90 days of a busy agency's queries on one dataset. Each holds at most the
# dataset's row count in 8-byte references.
DEFAULT_MAX_SETS = 2000
_DAY_S = 86_400.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS row_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT, agency TEXT NOT NULL, dataset TEXT NOT NULL,
    answered_at REAL NOT NULL, rows INTEGER NOT NULL, filter_tag BLOB NOT NULL, refs BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS row_sets_by_key ON row_sets (agency, dataset, answered_at);
"""
# Columns added since: a kept matched set's own k (NULL for every other set); how `refs` is stored (NULL: a
# pyroaring BitMap64, as sets were kept before; _SORTED: `ref_sets.RefSet.to_bytes`).
_ADDED_COLUMNS = {"bar": "ALTER TABLE row_sets ADD COLUMN bar INTEGER",
                  "format": "ALTER TABLE row_sets ADD COLUMN format INTEGER"}
_SORTED = 1


def load_or_create_secret(path: Path) -> bytes:
    """The department's row-reference key (raw bytes, mode 0600), created on first start."""
    return secret_file.load_or_create_secret(path, "row reference key")


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
    """Builds one answer's set of row references, row by row; hashed as rows come, references resolved once.

    Each row's reference is its material's keyed hash. A value seen before (its
    hash already taken) gets the hash of its material and its occurrence
    number instead: the n-th occurrence after the first, n. That is decided
    once every row is in (`in_row_order`), from the sorted hashes, so no
    per-row set lookup is made; the materials are kept (packed) for the rows
    that turn out to repeat.
    """

    def __init__(self, secret: bytes, basis: RefBasis) -> None:
        self._hasher = hashlib.blake2b(digest_size=8, key=secret)  # copied per row: the key is absorbed once
        self._normalise = normaliser(basis.kind) if basis.kind else None
        self._digests = bytearray()
        self._materials = bytearray()
        self._ends = array("Q")  # where each row's material ends in _materials
        self._order: Refs | None = None
        self._set: RefSet | None = None
        self.rows = 0  # counted apart: a 64-bit collision must not change an answer

    def add(self, values: Sequence[object]) -> None:
        """Add a row, given its basis columns' values."""
        self.add_rows((values,))

    def add_rows(self, rows: Iterable[Sequence[object]]) -> None:
        material, copy = self._material, self._hasher.copy
        digests, materials, ends = self._digests, self._materials, self._ends
        count = 0
        for row in rows:
            m = material(row)
            h = copy()
            h.update(m)
            digests += h.digest()
            materials += m
            ends.append(len(materials))
            count += 1
        self.rows += count
        self._order = self._set = None

    def in_row_order(self) -> Refs:
        """Every row's reference, in the order the rows were added."""
        if self._order is None:
            refs = np.frombuffer(bytes(self._digests), dtype=">u8").astype(np.uint64)
            for row, n in self._repeats(refs):
                refs[row] = self._hash(self._row_material(row) + b"\x1e" + str(n).encode())
            self._order = refs
        return self._order

    @property
    def refs(self) -> RefSet:
        if self._set is None:
            self._set = RefSet(sorted_unique(self.in_row_order()))
        return self._set

    def _repeats(self, refs: Refs) -> list[tuple[int, int]]:
        """The rows whose hash an earlier row took, in row order, each with its occurrence number."""
        order = np.argsort(refs, kind="stable")  # equal hashes stay in row order
        ordered = refs[order]
        later = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
        seen: dict[bytes, int] = {}
        out = []
        for row in sorted(int(r) for r in order[later]):
            material = self._row_material(row)
            n = seen.get(material, 1)
            seen[material] = n + 1
            out.append((row, n))
        return out

    def _row_material(self, row: int) -> bytes:
        return bytes(self._materials[self._ends[row - 1] if row else 0:self._ends[row]])

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
        h = self._hasher.copy()
        h.update(material)
        return int.from_bytes(h.digest(), "big")


def _open(path: Path) -> sqlite3.Connection:
    """The history's file, durable like the disclosure log beside it (WAL, synchronous=FULL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + _SCHEMA)
    present = {row[1] for row in conn.execute("PRAGMA table_info(row_sets)")}
    for name, statement in _ADDED_COLUMNS.items():
        if name not in present:
            conn.execute(statement)
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
        refs = RefSet.of(answer.refs)  # type: ignore[arg-type]  # opaque to the safeguards: references here
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

    def _near(self, conn: sqlite3.Connection, agency: str, dataset: str, refs: RefSet, tag: bytes, k: int,
              now: float) -> tuple[bool, int | None]:
        """Whether a kept set is near this one, and the id of the same set under the same filter (a repeat)."""
        conn.execute("DELETE FROM row_sets WHERE answered_at < ?", (now - self.window_s,))
        # Only sets within k in size can be within k in difference (|S Δ S'| >= ||S| - |S'||): the others'
        # references, up to megabytes each, are not even read.
        n = len(refs)
        rows = conn.execute("SELECT id, filter_tag, bar, format FROM row_sets WHERE agency = ? AND dataset = ?"
                            " AND rows > ? AND rows < ?", (agency, dataset, n - k, n + k)).fetchall()
        near, same = False, None
        for row_id, kept_tag, bar, stored in rows:
            bound = k if bar is None else min(k, bar)
            difference = self._difference(conn, row_id, stored, refs, bound)
            if difference == 0 and kept_tag == tag:
                same = row_id
            elif difference < bound:
                near = True
        return near, same

    @staticmethod
    def _difference(conn: sqlite3.Connection, row_id: int, stored: int | None, refs: RefSet, bound: int) -> int:
        """|refs Δ kept| below `bound` (exact), or a number at least `bound`: read only as far as it takes."""
        if stored == _SORTED:
            with conn.blobopen("row_sets", "refs", row_id, readonly=True) as blob:
                return difference_below(refs.values, chunks_of_blob(blob), bound)
        (blob,) = conn.execute("SELECT refs FROM row_sets WHERE id = ?", (row_id,)).fetchone()
        return difference_below(refs.values, chunks_of(RefSet.of(BitMap64.deserialize(blob)).values), bound)

    def _insert(self, conn: sqlite3.Connection, answer: AnswerRows, refs: RefSet, tag: bytes, now: float,
                bar: int | None) -> None:
        conn.execute("INSERT INTO row_sets (agency, dataset, answered_at, rows, filter_tag, refs, bar, format)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (answer.agency, answer.dataset, now, len(refs), tag, refs.to_bytes(), bar, _SORTED))
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
        right_refs, right_tokens = self.builder(decl), []
        for row, (basis, ident) in enumerate(_keyed_rows(source, decl, right)):
            right_refs.add(basis)
            if ident is not None:
                keys.add(ident)
                right_tokens.append(row)
        left_refs, left_tokens, matched, covered = self.builder(decl), [], [], []
        for row, (basis, ident) in enumerate(_keyed_rows(source, decl, left)):
            left_refs.add(basis)
            if ident is not None:
                left_tokens.append(row)
                if ident not in keys:
                    continue
                matched.append(row)
            covered.append(row)

        def chosen(refs: RowRefs, rows: list[int]) -> RefSet:
            return RefSet(sorted_unique(refs.in_row_order()[np.asarray(rows, dtype=np.intp)]))

        matched_refs = chosen(left_refs, matched)
        sets = [self.answer(subject, decl, left_refs, total_rows, left.filter_text),
                self.answer(subject, decl, right_refs, total_rows, right.filter_text)]
        if matched_refs not in (chosen(left_refs, left_tokens), chosen(right_refs, right_tokens)):
            # Its filter tag names both sides, so only this very self-join is its repeat.
            tag = "\x1e".join(["self-join", *_tag(left), *_tag(right)])
            sets.append(AnswerRows(Identity.parse(subject).org, decl.name, chosen(left_refs, covered), total_rows, tag,
                                   matched=True))
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
