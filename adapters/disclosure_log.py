"""The adapter's own record: the audit checkpoints it accepted and every ticket it served or refused.

Kept in the department's own SQLite file (WAL, synchronous=FULL), so a
department can show what left it without trusting the gateway's log.

It is also the once-only store: each logged entry is admitted at most once
per action and side (`Use`), durably and in the same transaction that
records the admission, so a ticket replayed later, after a restart, or
concurrently with its first use is refused (``TicketReplayed``).

One connection is shared by the handler threads under a lock, and closing
takes the same lock: a write racing shutdown either lands before the close or
gets ``StoreClosed``, never a connection sqlite3 has freed (that was a
segmentation fault). A write that fails in SQLite (a full disk, an I/O error)
is logged here with its cause and raised as ``DisclosureLogFailed``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from fedgate.core.audit_entry import utc_now
from fedgate.crypto.checkpoint import Checkpoint
from fedgate.core.errors import DisclosureLogFailed, NotFound, StoreClosed, TicketReplayed

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted_checkpoints (
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, accepted_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS disclosures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, query_id TEXT NOT NULL,
    entry_index INTEGER, checkpoint_size INTEGER, action TEXT NOT NULL, dataset TEXT NOT NULL,
    decision TEXT NOT NULL, reason TEXT NOT NULL, result_rows INTEGER,
    subject TEXT NOT NULL DEFAULT '', purpose TEXT NOT NULL DEFAULT '', case_number TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS admitted_uses (
    entry_index INTEGER NOT NULL, action TEXT NOT NULL, role TEXT NOT NULL, query_id TEXT NOT NULL,
    admitted_at TEXT NOT NULL, PRIMARY KEY (entry_index, action, role));
"""
# Schema version 1 added admitted_uses. Entries admitted before it are taken as used by every side their
# action has ('' for a count or disclosure; left and right for a match kind: a self-join's two sides).
# Version 2 added who asked, why and under which case (from the verified audit entry) to each disclosure;
# rows written before it keep '' there (the gateway's entry, joined by query id, still has them).
_SCHEMA_VERSION = 2
_ASKER_COLUMNS = ("subject", "purpose", "case_number")
_BACKFILL = """
INSERT OR IGNORE INTO admitted_uses (entry_index, action, role, query_id, admitted_at)
    SELECT d.entry_index, d.action, r.role, d.query_id, d.time FROM disclosures d
    JOIN (SELECT '' AS role UNION ALL SELECT 'left' UNION ALL SELECT 'right') r
      ON (r.role = '') = (d.action IN ('query.count', 'query.disclose'))
    WHERE d.decision = 'admitted' AND d.entry_index IS NOT NULL
"""
REPLAYED = "ticket replayed: this department already admitted the logged request for this action; it serves it once"


@dataclass(frozen=True)
class Use:
    """What a ticket's admission uses up: one logged entry, for one action, on one side ('' if unsided)."""

    entry_index: int
    action: str
    role: str = ""


@dataclass(frozen=True)
class Disclosure:
    time: str
    query_id: str
    entry_index: int | None
    checkpoint_size: int | None
    action: str
    dataset: str
    decision: str  # admitted | served | refused | stopped (cancelled, timed out or failed after admission)
    reason: str
    result_rows: int | None
    # From the audit entry the ticket proved: the asking supervisor's SPIFFE ID (its agency is the second
    # path segment), the purpose and the case. '' where no entry was verified (a forged or altered ticket).
    subject: str = ""
    purpose: str = ""
    case_number: str = ""


_COLUMNS = ("time, query_id, entry_index, checkpoint_size, action, dataset, decision, reason, result_rows, "
            "subject, purpose, case_number")


class DisclosureLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = sqlite3.connect(path, isolation_level=None,
                                                                 check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        self._migrate(self._conn)
        self._lock = threading.Lock()
        # Writes asked for through the async methods and not finished yet (`aclose` waits for them).
        self._pending = 0
        self._pending_lock = threading.Lock()

    def close(self) -> None:
        """Close the file once the write in progress (if any) is done; later calls raise StoreClosed."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def aclose(self, timeout: float = 10.0) -> None:
        """Close after the writes already asked for are written (waiting at most `timeout` seconds).

        Handlers cancelled by a server stop record how their session ended as
        they unwind, a few event-loop turns after the stop returns: give them
        those turns, then wait for every pending write.
        """
        deadline = time.monotonic() + timeout
        for _ in range(5):
            await asyncio.sleep(0)
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._pending:
            log.warning("disclosure log %s: closing with %d write(s) still pending after %.0f s",
                        self.path, self._pending, timeout)
        await asyncio.to_thread(self.close)

    @contextmanager
    def _connection(self, what: str) -> Iterator[sqlite3.Connection]:
        """The open connection, under the lock; SQLite errors logged and raised as DisclosureLogFailed."""
        with self._lock:
            if self._conn is None:
                raise StoreClosed("the disclosure log is closed: the adapter is shutting down; retry later")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                # The cause (disk full, I/O error, a read-only file) is for this department's
                # operator; the caller gets a message without the department's internals.
                log.error("disclosure log %s: could not %s: %s", self.path, what, exc)
                raise DisclosureLogFailed(
                    "the department could not write its disclosure log, so it did not serve the request; "
                    "retry later") from exc

    def last_accepted_note(self) -> str | None:
        """The signed note of the largest checkpoint accepted so far (the caller re-verifies it)."""
        with self._connection("read the last accepted checkpoint") as conn:
            row = conn.execute("SELECT note FROM accepted_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return row[0] if row else None

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= _SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version < 1:
                conn.execute(_BACKFILL)
            # CREATE TABLE IF NOT EXISTS left an older log's table as it was: add the columns, keep every row.
            have = {row[1] for row in conn.execute("PRAGMA table_info(disclosures)")}
            for column in _ASKER_COLUMNS:
                if column not in have:
                    conn.execute(f"ALTER TABLE disclosures ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def accept(self, cp: Checkpoint, note: str, use: Use, disclosure: Disclosure) -> None:
        """Record an admitted ticket, the checkpoint it brought and the use it takes, in one transaction;
        TicketReplayed (and nothing written) if that use was taken before."""
        with self._connection("record an admitted ticket") as conn:
            # IMMEDIATE takes the write lock first: of two presentations racing (even from two
            # connections), the second reads the first's use once it has committed.
            conn.execute("BEGIN IMMEDIATE")
            try:
                # OR IGNORE: a use taken before inserts nothing, and the transaction is rolled back.
                taken = conn.execute("INSERT OR IGNORE INTO admitted_uses VALUES (?, ?, ?, ?, ?)",
                                     (use.entry_index, use.action, use.role, disclosure.query_id, utc_now()))
                if taken.rowcount != 1:
                    raise TicketReplayed(REPLAYED)
                conn.execute("INSERT OR IGNORE INTO accepted_checkpoints VALUES (?, ?, ?, ?)",
                             (cp.size, cp.root_hash, note, utc_now()))
                self._insert(conn, disclosure)
                conn.execute("COMMIT")
            except BaseException:
                # SQLite rolls a transaction back itself on some errors (a full disk): a second
                # ROLLBACK would fail with "no transaction is active" and hide the real error.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def record(self, disclosure: Disclosure) -> None:
        """Record a refusal, or the result of a served request."""
        with self._connection("record a disclosure") as conn:
            self._insert(conn, disclosure)

    async def accept_async(self, cp: Checkpoint, note: str, use: Use, disclosure: Disclosure) -> None:
        """`accept` in a thread; the write completes even if the caller is cancelled."""
        await self._write(self.accept, cp, note, use, disclosure)

    async def record_async(self, disclosure: Disclosure) -> None:
        """`record` in a thread; the write completes even if the caller is cancelled."""
        await self._write(self.record, disclosure)

    async def _write(self, fn: Callable[..., T], *args: object) -> T:
        with self._pending_lock:
            self._pending += 1

        def run() -> T:
            try:
                return fn(*args)
            finally:
                with self._pending_lock:
                    self._pending -= 1

        # Shielded, like the audit log's append: a record asked for is written (or fails) in
        # full, and `aclose` can count on every pending write ending on its own.
        write = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            return await asyncio.shield(write)
        except asyncio.CancelledError:
            await asyncio.wait([write])
            raise

    @staticmethod
    def _insert(conn: sqlite3.Connection, d: Disclosure) -> None:
        conn.execute(
            f"INSERT INTO disclosures ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (d.time, d.query_id, d.entry_index, d.checkpoint_size, d.action, d.dataset, d.decision, d.reason,
             d.result_rows, d.subject, d.purpose, d.case_number))

    def was_used(self, use: Use) -> bool:
        """Whether a ticket was admitted for this use before (the check that counts is `accept`'s)."""
        with self._connection("read the admitted uses") as conn:
            return conn.execute("SELECT 1 FROM admitted_uses WHERE entry_index = ? AND action = ? AND role = ?",
                                (use.entry_index, use.action, use.role)).fetchone() is not None

    def used(self) -> list[Use]:
        """Every use admitted so far, in entry order."""
        with self._connection("read the admitted uses") as conn:
            rows = conn.execute("SELECT entry_index, action, role FROM admitted_uses"
                                " ORDER BY entry_index, action, role").fetchall()
        return [Use(*r) for r in rows]

    def disclosures(self) -> list[Disclosure]:
        with self._connection("read the disclosures") as conn:
            return _read(conn)


def _read(conn: sqlite3.Connection) -> list[Disclosure]:
    # An older log read without migrating (read_disclosures) lacks the asker's columns: read them as ''.
    have = {row[1] for row in conn.execute("PRAGMA table_info(disclosures)")}
    columns = ", ".join(c if c in have else f"'' AS {c}" for c in _COLUMNS.split(", "))
    rows = conn.execute(f"SELECT {columns} FROM disclosures ORDER BY id").fetchall()
    return [Disclosure(*r) for r in rows]


def read_disclosures(path: Path) -> list[Disclosure]:
    """Every record of the disclosure log at `path`, read-only (the adapter may be running and writing it).

    The department's view reads it this way: it never migrates or writes another process's log.
    """
    if not path.is_file():
        raise NotFound(f"no disclosure log at {path}; give the adapter's configuration (its data_dir holds "
                       "disclosures.db) or the log's path")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise NotFound(f"cannot open the disclosure log at {path}: {exc}") from None
    try:
        return _read(conn)
    except sqlite3.Error as exc:
        raise NotFound(f"{path} is not a readable disclosure log: {exc}") from None
    finally:
        conn.close()
