"""The adapter's own record: the audit checkpoints it accepted and every ticket it served or refused.

Kept in the department's own SQLite file (WAL, synchronous=FULL), so a
department can show what left it without trusting the gateway's log.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from fedgate.audit_entry import utc_now
from fedgate.crypto.checkpoint import Checkpoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted_checkpoints (
    size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, accepted_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS disclosures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, query_id TEXT NOT NULL,
    entry_index INTEGER, checkpoint_size INTEGER, action TEXT NOT NULL, dataset TEXT NOT NULL,
    decision TEXT NOT NULL, reason TEXT NOT NULL, result_rows INTEGER);
"""


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


class DisclosureLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def last_accepted_note(self) -> str | None:
        """The signed note of the largest checkpoint accepted so far (the caller re-verifies it)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT note FROM accepted_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def accept(self, cp: Checkpoint, note: str, disclosure: Disclosure) -> None:
        """Record a served ticket and the checkpoint it brought, in one transaction."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("INSERT OR IGNORE INTO accepted_checkpoints VALUES (?, ?, ?, ?)",
                                   (cp.size, cp.root_hash, note, utc_now()))
                self._insert(disclosure)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def record(self, disclosure: Disclosure) -> None:
        """Record a refusal, or the result of a served request."""
        with self._lock:
            self._insert(disclosure)

    def _insert(self, d: Disclosure) -> None:
        self._conn.execute(
            "INSERT INTO disclosures (time, query_id, entry_index, checkpoint_size, action, dataset, decision,"
            " reason, result_rows) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (d.time, d.query_id, d.entry_index, d.checkpoint_size, d.action, d.dataset, d.decision, d.reason,
             d.result_rows))

    def disclosures(self) -> list[Disclosure]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT time, query_id, entry_index, checkpoint_size, action, dataset, decision, reason,"
                " result_rows FROM disclosures ORDER BY id").fetchall()
        return [Disclosure(*r) for r in rows]
