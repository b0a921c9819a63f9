"""Storage of the audit log: entries, Merkle tree nodes and signed checkpoints.

The store never hashes and crypto never queries (transparency-dev style):
`fedgate.crypto.merkle` plans which node IDs a proof needs, this module reads
them. SQLite (WAL, synchronous=FULL, so an acknowledged append survives a
kill -9) is the embedded default; the same SQLAlchemy Core code runs on
PostgreSQL for shared, replicated deployments.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from fedgate.crypto.merkle import NodeID
from fedgate.gateway.registry_store import make_engine

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


@dataclass(frozen=True)
class StoredEntry:
    index: int
    body: bytes


class AuditStore:
    """Append-only tables for the audit log; one writer at a time (the AuditLog's lock)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        _meta.create_all(engine)

    @classmethod
    def open(cls, url: str) -> AuditStore:
        return cls(make_engine(url))

    def close(self) -> None:
        self._engine.dispose()

    def size(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(entries)).scalar_one())

    def append(self, index: int, body: bytes, new_nodes: Sequence[tuple[NodeID, bytes]], note: str) -> None:
        """Store one entry, the tree nodes it completed and the checkpoint of the new size, atomically."""
        with self._engine.begin() as conn:
            conn.execute(entries.insert().values(idx=index, body=body))
            conn.execute(nodes.insert(), [{"level": n.level, "idx": n.index, "hash": h} for n, h in new_nodes])
            conn.execute(checkpoints.insert().values(size=index + 1, note=note))

    def node_hashes(self, ids: Sequence[NodeID]) -> list[bytes]:
        """The stored hashes of `ids`, in the same order; KeyError names a missing node."""
        if not ids:
            return []
        cond = sa.or_(*(sa.and_(nodes.c.level == n.level, nodes.c.idx == n.index) for n in ids))
        with self._engine.connect() as conn:
            found = {(r.level, r.idx): bytes(r.hash) for r in conn.execute(sa.select(nodes).where(cond))}
        missing = [n for n in ids if (n.level, n.index) not in found]
        if missing:
            raise KeyError(f"audit tree node {missing[0]} is missing from the store")
        return [found[(n.level, n.index)] for n in ids]

    def entries(self, start: int = 0, stop: int | None = None, batch: int = 1000) -> Iterator[StoredEntry]:
        """Entries in index order from `start` (inclusive) to `stop` (exclusive), read in batches."""
        position = start
        while stop is None or position < stop:
            query = sa.select(entries).where(entries.c.idx >= position).order_by(entries.c.idx).limit(batch)
            if stop is not None:
                query = query.where(entries.c.idx < stop)
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for r in rows:
                yield StoredEntry(int(r.idx), bytes(r.body))
            position = int(rows[-1].idx) + 1

    def entries_newest_first(self, batch: int = 1000) -> Iterator[StoredEntry]:
        """Every entry, newest first, read in batches."""
        below: int | None = None
        while True:
            query = sa.select(entries).order_by(entries.c.idx.desc()).limit(batch)
            if below is not None:
                query = query.where(entries.c.idx < below)
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for r in rows:
                yield StoredEntry(int(r.idx), bytes(r.body))
            below = int(rows[-1].idx)

    def latest_checkpoint_with_size(self) -> tuple[int, str] | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
        return (int(row.size), row.note) if row else None

    def latest_checkpoint(self) -> str | None:
        found = self.latest_checkpoint_with_size()
        return found[1] if found else None

    def checkpoint_at(self, size: int) -> str | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(checkpoints.c.note).where(checkpoints.c.size == size)).first()
        return row.note if row else None

    def checkpoints(self, start_size: int = 1) -> Iterator[tuple[int, str]]:
        """Every stored checkpoint (size, signed note) in size order."""
        with self._engine.connect() as conn:
            for r in conn.execute(sa.select(checkpoints).where(checkpoints.c.size >= start_size)
                                  .order_by(checkpoints.c.size)):
                yield int(r.size), r.note
