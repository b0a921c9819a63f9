"""The department's record of whose records each served answer covered, for subject reports (issue 15, part 4).

Per served answer (one side of a match), a row in `subject_uses.db` beside
the disclosure log: the query id and entry index, when, who asked (the
supervisor's SPIFFE ID), the purpose and case, the action, dataset and side,
the fields that left with their forms; and two sets of subject references
(`subject_refs`): the rows the answer covered and the rows that left as rows.
Sets are sorted arrays of 8-byte references in one blob each (`RefSet`), so a
million-row match side costs one 8 MB write, not a million inserts; a lookup
reads every blob and binary-searches it, which is the data office's time, not
a query's. No identifier is stored.

What "covered" means per kind: a count, the rows its filter passed; a
disclosure, that filtered set, of which the rows that left are also
`disclosed`; a match, sum or comparison side, the rows that made a token
(a valid key, every value present): the department never learns which of
them the other side held, only which it disclosed afterwards (a match's left
side), and those are `disclosed`.

The reports made from it are recorded in it too (`reports`): when, a keyed
hash of the subject, how many entries were shown and how many each covert
rule held back. Written by the adapter (uses) and the report command (reports),
each through its own connection (WAL; writers wait for each other).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedgate.adapters.ref_sets import RefSet, Refs
from fedgate.adapters.secret_file import load_or_create_secret
from fedgate.adapters.sources import Source
from fedgate.adapters.subject_refs import KEY_FILE, SubjectRefs, subject_columns
from fedgate.core.audit_entry import utc_now
from fedgate.core.datasets import DatasetDecl
from fedgate.core.errors import DisclosureLogFailed, NotFound, StoreClosed
from fedgate.core.filters import Filter

if TYPE_CHECKING:
    from fedgate.adapters.tickets import Admission

log = logging.getLogger(__name__)

STORE_FILE = "subject_uses.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS uses (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, at REAL NOT NULL, query_id TEXT NOT NULL,
    entry_index INTEGER, action TEXT NOT NULL, dataset TEXT NOT NULL, role TEXT NOT NULL,
    subject TEXT NOT NULL, purpose TEXT NOT NULL, case_number TEXT NOT NULL, fields TEXT NOT NULL,
    covered BLOB NOT NULL, disclosed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, subject_ref TEXT NOT NULL, dataset TEXT NOT NULL,
    shown INTEGER NOT NULL, withheld INTEGER NOT NULL, rules TEXT NOT NULL);
"""


def load_or_create_key(data_dir: Path, create: bool = True) -> bytes:
    """The department's subject-reference key (0600); created on the adapter's first start, never by a reader."""
    try:
        return load_or_create_secret(data_dir / KEY_FILE, "subject reference key", create)
    except NotFound:
        raise NotFound(f"no subject reference key in {data_dir}: the adapter has not recorded any use yet "
                       "(it creates the key at its start)") from None


@dataclass(frozen=True)
class SubjectUse:
    """One served answer (or match side) and the subject references of the rows it covered and disclosed."""

    time: str
    at: float                # epoch seconds: covert-case delays count from it
    query_id: str
    entry_index: int | None
    action: str
    dataset: str             # department.dataset
    role: str                # a match side (left, right); "" for a count or disclosure
    subject: str             # the asking supervisor's SPIFFE ID, from the verified audit entry
    purpose: str
    case_number: str
    fields: tuple[str, ...]  # "field:form" of each field that left as rows
    covered: RefSet
    disclosed: RefSet

    @classmethod
    def of(cls, admission: Admission, covered: RefSet, disclosed: RefSet | None = None,
           fields: Sequence[str] = (), role: str = "", now: float | None = None) -> SubjectUse:
        """The use an admitted ticket's answer made, named as its verified audit entry names it."""
        at = time.time() if now is None else now
        claims, entry = admission.ticket.claims, admission.entry
        return cls(utc_now(), at, claims.query_id, claims.entry_index, admission.action, admission.dataset, role,
                   entry.subject, entry.purpose, entry.case_number, tuple(fields), covered,
                   disclosed if disclosed is not None else RefSet(np.empty(0, dtype=np.uint64)))


@dataclass(frozen=True)
class FoundUse:
    """A recorded use that names the subject: whether the subject's record left as rows, or only counted."""

    use_id: int
    time: str
    at: float
    query_id: str
    action: str
    dataset: str
    role: str
    subject: str
    purpose: str
    case_number: str
    fields: tuple[str, ...]
    disclosed: bool


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + _SCHEMA)
    return conn


class SubjectUses:
    """The store (one connection under a lock), with the key its references are made with."""

    def __init__(self, path: Path, secret: bytes) -> None:
        self.path = path
        self.secret = secret
        self._conn: sqlite3.Connection | None = _open(path)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path, create_key: bool = True) -> SubjectUses:
        """The key and the store in the adapter's data dir (the key created at the adapter's first start)."""
        secret = load_or_create_key(data_dir, create=create_key)
        return cls(data_dir / STORE_FILE, secret)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _connection(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise StoreClosed("the subject-use store is closed: the adapter is shutting down; retry later")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                log.error("subject-use store %s: could not %s: %s", self.path, what, exc)
                raise DisclosureLogFailed("the department could not record whose records its answer covered, "
                                          "so it did not serve the request; retry later") from exc

    def refs(self, decl: DatasetDecl) -> SubjectRefs | None:
        """A builder for the dataset's subject references; None if it holds no resident ID or USCC key."""
        columns = subject_columns(decl)
        return SubjectRefs(self.secret, [k for _, k in columns]) if columns else None

    def read(self, source: Source, decl: DatasetDecl, where: Filter | None) -> RefSet | None:
        """The subject references of the rows passing `where`, reading their key columns only (blocking)."""
        refs = self.refs(decl)
        if refs is None:
            return None
        refs.add_rows(source.rows([name for name, _ in subject_columns(decl)], where))
        return refs.refs()

    def record(self, use: SubjectUse) -> None:
        """Record a use (blocking); DisclosureLogFailed if the store cannot be written."""
        with self._connection("record a use") as conn:
            conn.execute(
                "INSERT INTO uses (time, at, query_id, entry_index, action, dataset, role, subject, purpose,"
                " case_number, fields, covered, disclosed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (use.time, use.at, use.query_id, use.entry_index, use.action, use.dataset, use.role, use.subject,
                 use.purpose, use.case_number, ",".join(use.fields), use.covered.to_bytes(),
                 use.disclosed.to_bytes()))

    def find(self, refs: Sequence[int], dataset: str = "") -> list[FoundUse]:
        """Every recorded use whose covered rows hold one of `refs` (oldest first), optionally of one dataset."""
        wanted = np.asarray(sorted(refs), dtype=np.uint64)
        found = []
        with self._connection("read the recorded uses") as conn:
            query = ("SELECT id, time, at, query_id, action, dataset, role, subject, purpose, case_number, fields,"
                     " covered, disclosed FROM uses" + (" WHERE dataset = ?" if dataset else "") + " ORDER BY id")
            for row in conn.execute(query, (dataset,) if dataset else ()):
                if not _holds(row[11], wanted):
                    continue
                found.append(FoundUse(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                                      row[9], tuple(f for f in row[10].split(",") if f), _holds(row[12], wanted)))
        return found

    def record_report(self, subject_ref: str, dataset: str, shown: int, withheld: dict[str, int]) -> None:
        """Record that a report was made: a keyed hash of its subject, entries shown, entries each rule held back."""
        rules = ",".join(f"{name}:{n}" for name, n in sorted(withheld.items()))
        with self._connection("record a subject report") as conn:
            conn.execute("INSERT INTO reports (time, subject_ref, dataset, shown, withheld, rules)"
                         " VALUES (?, ?, ?, ?, ?, ?)",
                         (utc_now(), subject_ref, dataset, shown, sum(withheld.values()), rules))

    def reports(self) -> list[tuple[str, str, str, int, int, str]]:
        """Every report recorded: (time, subject_ref, dataset, shown, withheld, rules)."""
        with self._connection("read the recorded reports") as conn:
            rows = conn.execute("SELECT time, subject_ref, dataset, shown, withheld, rules FROM reports"
                                " ORDER BY id").fetchall()
        return [tuple(r) for r in rows]


def _holds(blob: bytes, wanted: Refs) -> bool:
    values = RefSet.from_bytes(blob).values
    if not len(values):
        return False
    at = np.searchsorted(values, wanted)
    inside = at < len(values)
    return bool(np.any(values[at[inside]] == wanted[inside]))
