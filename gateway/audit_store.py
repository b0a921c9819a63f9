"""Storage of the audit log: entries, Merkle tree nodes and signed checkpoints.

The store never hashes and crypto never queries (transparency-dev style):
`fedgate.crypto.merkle` plans which node IDs a proof needs, this module reads
them. SQLite (WAL, synchronous=FULL, so an acknowledged append survives a
kill -9) is the embedded default; the same SQLAlchemy Core code runs on
PostgreSQL for shared, replicated deployments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from typing import TypeVar

import sqlalchemy as sa

from fedgate.crypto.merkle import NodeID, range_nodes
from fedgate.gateway.registry_store import SqlStore

T = TypeVar("T")
# (size, read frontier hashes) -> (completed nodes, signed checkpoint note, value for the caller)
Builder = Callable[[int, Callable[[], list[bytes]]], tuple[Sequence[tuple[NodeID, bytes]], str, T]]
# Any fixed 64-bit number: PostgreSQL advisory locks are named by integers.
_APPEND_LOCK_KEY = 0x6665646761746531  # "fedgate1"

_meta = sa.MetaData()
entries = sa.Table(
    "fedgate_audit_entries", _meta,
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
)
nodes = sa.Table(
    "fedgate_audit_nodes", _meta,
    sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)
checkpoints = sa.Table(
    "fedgate_audit_checkpoints", _meta,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("note", sa.Text, nullable=False),
)

# Witness cosignature lines per checkpoint size, one per witness (its first for that size): served
# appended to the checkpoint's note, as C2SP tlog-cosignature has them. A truncated and re-signed
# log keeps them only by dropping them; kept, they no longer verify against the new checkpoint.
cosignatures = sa.Table(
    "fedgate_audit_cosignatures", _meta,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("witness", sa.Text, primary_key=True),
    sa.Column("line", sa.Text, nullable=False),
)


def with_cosignatures(note: str, lines: Sequence[str]) -> str:
    """The signed note with the cosignature lines appended (a note ends in its signature lines)."""
    return note + "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class StoredEntry:
    """An entry as stored: its index in the log and its canonical bytes (the leaf the tree hashes)."""

    index: int
    body: bytes  # AuditEntry.canonical()


@dataclass(frozen=True)
class LogState:
    """The log as of one instant: its size, latest checkpoint and the tree frontier of that checkpoint."""

    size: int                       # entries stored
    checkpoint: tuple[int, str] | None  # (size, signed note) of the latest checkpoint
    frontier: list[bytes]           # hashes of range_nodes(0, checkpoint size)


class SharedTurn:
    """One department's admission turn, shared by every gateway replica on one PostgreSQL log.

    A session-level advisory lock on a connection of its own, taken without
    blocking (the caller polls, so no thread waits on another replica) and
    given back once the adapter has admitted the ticket. Not thread-safe: one
    holder at a time, as the replica's own per-department lock guarantees.
    """

    def __init__(self, engine: sa.Engine, department: str) -> None:
        self._engine = engine
        digest = sha256(f"fedgate-admission/{department}".encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._conn: sa.Connection | None = None
        self._held = False

    def try_take(self) -> bool:
        if self._conn is None:
            self._conn = self._engine.connect()
        self._held = bool(self._conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"),
                                             {"k": self._key}).scalar_one())
        self._conn.commit()  # a session lock outlives the transaction; don't leave one open
        return self._held

    def give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._held:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                conn.commit()
        except BaseException:
            # Closing the server session is what surely releases the lock.
            conn.invalidate()
            raise
        finally:
            self._held = False
            conn.close()


class AuditStore(SqlStore):
    """Append-only tables for the audit log; one writer at a time (the AuditLog's lock)."""

    _tables = _meta
    _closed_message = "the audit store is closed: the gateway is shutting down"

    def size(self) -> int:
        with self._engine.connect() as conn:
            return self._count(conn)

    def shared_turn(self, department: str) -> SharedTurn | None:
        """`department`'s admission turn across replicas; None unless the store can be shared (PostgreSQL)."""
        if self._engine.dialect.name != "postgresql":
            return None
        return SharedTurn(self._engine, department)

    @staticmethod
    def _count(conn: sa.Connection) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(entries)).scalar_one())

    @contextmanager
    def snapshot(self) -> Iterator[sa.Connection]:
        """A read-only connection whose every read sees the same committed state of the log.

        Another gateway replica may append between two reads: PostgreSQL gets a
        REPEATABLE READ transaction (one snapshot for all its statements); SQLite,
        in WAL mode, keeps the snapshot of a read transaction's first read. The
        pysqlite driver only begins transactions before writes, hence the BEGIN.
        """
        if self._engine.dialect.name == "postgresql":
            with self._engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
                with conn.begin():
                    conn.execute(sa.text("SET TRANSACTION READ ONLY"))
                    yield conn
            return
        with self._engine.connect() as conn:
            if self._engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                conn.rollback()

    def state(self) -> LogState:
        """Size, latest checkpoint and its frontier, read in one snapshot (see `snapshot`)."""
        with self.snapshot() as conn:
            row = conn.execute(sa.select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
            checkpoint = (int(row.size), str(row.note)) if row else None
            size = self._count(conn)
            at = checkpoint[0] if checkpoint else 0
            return LogState(size, checkpoint, self._node_hashes(conn, range_nodes(0, at)))

    def append_next(self, body: bytes, build: Builder[T]) -> T:
        """Append `body` at the current end of the log, atomically, whoever else writes to it.

        `build(size, frontier)` gets the log's size and a function reading the
        hashes of its frontier, and returns the nodes the new leaf completes,
        the signed checkpoint of the new size and a value handed back. On
        PostgreSQL a transaction-scoped advisory lock serialises writers, so
        gateway replicas can share one log; SQLite has one writer process.
        """
        with self._writes.begin() as conn:
            if self._engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})
            size = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(entries.c.idx) + 1, 0))).scalar_one())
            new_nodes, note, result = build(size, lambda: self._node_hashes(conn, range_nodes(0, size)))
            conn.execute(entries.insert().values(idx=size, body=body))
            conn.execute(nodes.insert(), [{"level": n.level, "idx": n.index, "hash": h} for n, h in new_nodes])
            conn.execute(checkpoints.insert().values(size=size + 1, note=note))
        return result

    def node_hashes(self, ids: Sequence[NodeID]) -> list[bytes]:
        """The stored hashes of `ids`, in the same order; KeyError names a missing node."""
        with self._engine.connect() as conn:
            return self._node_hashes(conn, ids)

    @staticmethod
    def _node_hashes(conn: sa.Connection, ids: Sequence[NodeID]) -> list[bytes]:
        if not ids:
            return []
        cond = sa.or_(*(sa.and_(nodes.c.level == n.level, nodes.c.idx == n.index) for n in ids))
        found = {(r.level, r.idx): bytes(r.hash) for r in conn.execute(sa.select(nodes).where(cond))}
        missing = [n for n in ids if (n.level, n.index) not in found]
        if missing:
            raise KeyError(f"audit tree node {missing[0]} is missing from the store")
        return [found[(n.level, n.index)] for n in ids]

    def entries(self, start: int = 0, stop: int | None = None, batch: int = 1000) -> Iterator[StoredEntry]:
        """Entries in index order from `start` (inclusive) to `stop` (exclusive), read in batches."""
        return self._scan(start, stop, batch, newest_first=False)

    def entries_newest_first(self, batch: int = 1000, before: int | None = None) -> Iterator[StoredEntry]:
        """Every entry (below index `before`, if given), newest first, read in batches."""
        return self._scan(0, before, batch, newest_first=True)

    def _scan(self, start: int, stop: int | None, batch: int, *, newest_first: bool) -> Iterator[StoredEntry]:
        """Entries within [start, stop), one short read transaction per batch."""
        order = entries.c.idx.desc() if newest_first else entries.c.idx
        low, high = start, stop
        while high is None or low < high:
            query = sa.select(entries).where(entries.c.idx >= low).order_by(order).limit(batch)
            if high is not None:
                query = query.where(entries.c.idx < high)
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for r in rows:
                yield StoredEntry(int(r.idx), bytes(r.body))
            # Resume past the last row read, in the direction of the scan.
            if newest_first:
                high = int(rows[-1].idx)
            else:
                low = int(rows[-1].idx) + 1

    def add_cosignature(self, size: int, witness: str, line: str) -> bool:
        """Keep `witness`'s cosignature on the checkpoint of `size`; False if it has one there already."""
        try:
            with self._writes.begin() as conn:
                if conn.execute(sa.select(cosignatures.c.size).where(
                        cosignatures.c.size == size, cosignatures.c.witness == witness)).first():
                    return False
                conn.execute(cosignatures.insert().values(size=size, witness=witness, line=line))
        except sa.exc.IntegrityError:
            return False  # another replica kept one for that size meanwhile
        return True

    @staticmethod
    def _cosigned(conn: sa.Connection, size: int, note: str) -> str:
        lines = conn.execute(sa.select(cosignatures.c.line).where(cosignatures.c.size == size)
                             .order_by(cosignatures.c.witness)).scalars().all()
        return with_cosignatures(note, lines)

    def latest_checkpoint_with_size(self) -> tuple[int, str] | None:
        """The latest checkpoint (size, signed note with its cosignatures)."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
            return (int(row.size), self._cosigned(conn, int(row.size), row.note)) if row else None

    def latest_checkpoint(self) -> str | None:
        found = self.latest_checkpoint_with_size()
        return found[1] if found else None

    def checkpoint_at(self, size: int) -> str | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(checkpoints.c.note).where(checkpoints.c.size == size)).first()
            return self._cosigned(conn, size, row.note) if row else None

    def checkpoints(self, start_size: int = 1) -> Iterator[tuple[int, str]]:
        """Every stored checkpoint (size, signed note with its cosignatures) in size order."""
        with self._engine.connect() as conn:
            cosigned: dict[int, list[str]] = {}
            for c in conn.execute(sa.select(cosignatures).where(cosignatures.c.size >= start_size)
                                  .order_by(cosignatures.c.witness)):
                cosigned.setdefault(int(c.size), []).append(c.line)
            for r in conn.execute(sa.select(checkpoints).where(checkpoints.c.size >= start_size)
                                  .order_by(checkpoints.c.size)):
                yield int(r.size), with_cosignatures(r.note, cosigned.get(int(r.size), ()))
