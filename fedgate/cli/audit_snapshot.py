"""Verifying an audit store read directly (`fedgate audit verify --db`), in one consistent, read-only view.

An officer's copy may be a read-only file (made with ``VACUUM INTO``), and a
live store keeps growing while it is read. So the store is opened so that it
cannot be written (SQLite ``mode=ro`` and ``query_only``; a PostgreSQL
read-only transaction), no schema is created, and everything is read in one
transaction: the latest checkpoint and the entries come from the same moment.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fedgate.client.audit_verify import LogTampered, TrustedState, VerifyReport, verify_log
from fedgate.crypto.checkpoint import VerifierKey
from fedgate.crypto.cosignature import WitnessKey
from fedgate.core.errors import FedgateError
from fedgate.gateway.audit_store import checkpoints, cosignatures, entries, with_cosignatures


@dataclass(frozen=True)
class Snapshot:
    latest: str | None                    # the latest signed checkpoint note
    checkpoints: dict[int, str]           # size -> signed note
    entries: Iterator[tuple[int, bytes]]  # (index, body) in index order; valid inside `read_snapshot`


def verify_store(url: str, vkey: VerifierKey, trusted: TrustedState | None = None,
                 witnesses: Sequence[WitnessKey] = (), quorum: int = 0) -> VerifyReport:
    """Replay a log straight from its store (forensics when no gateway can run).

    The store is opened read-only (a forensic copy may be a read-only file) and
    read in one transaction, so a gateway appending meanwhile cannot make the
    entries run past the latest checkpoint read.
    """
    with read_snapshot(url) as snapshot:
        if snapshot.latest is None:
            raise LogTampered(0, "the store holds no checkpoint at all")
        return verify_log(snapshot.entries, snapshot.checkpoints, snapshot.latest, vkey, trusted,
                          witnesses=witnesses, quorum=quorum)


@contextmanager
def read_snapshot(url: str) -> Iterator[Snapshot]:
    """The store at `url` (a SQLite path or a SQLAlchemy URL), read in one read-only transaction."""
    engine, shown = read_only_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            cosigned: dict[int, list[str]] = {}
            # A store written before witnessing has no cosignature table (and read-only, gets none).
            if sa.inspect(conn).has_table(cosignatures.name):
                for size, line in conn.execute(sa.select(cosignatures.c.size, cosignatures.c.line)
                                               .order_by(cosignatures.c.witness)):
                    cosigned.setdefault(int(size), []).append(str(line))
            notes = {int(size): with_cosignatures(str(note), cosigned.get(int(size), ())) for size, note in
                     conn.execute(sa.select(checkpoints.c.size, checkpoints.c.note))}
            latest = notes[max(notes)] if notes else None
            rows = conn.execution_options(yield_per=1000).execute(
                sa.select(entries.c.idx, entries.c.body).order_by(entries.c.idx))
            yield Snapshot(latest, notes, ((int(r.idx), bytes(r.body)) for r in rows))
    except sa.exc.SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise FedgateError(f"{shown}: cannot be read as a fedgate audit store ({cause})") from None
    finally:
        engine.dispose()


def read_only_engine(url: str) -> tuple[sa.Engine, str]:
    """An engine that can only read the store, and the store's name for messages (no password)."""
    if "://" not in url:
        path, shown = Path(url), url
    else:
        parsed = sa.make_url(url)
        shown = parsed.render_as_string(hide_password=True)
        if parsed.get_backend_name() != "sqlite":
            # REPEATABLE READ: every statement sees the snapshot the first one took.
            return sa.create_engine(parsed, poolclass=sa.NullPool, execution_options={
                "isolation_level": "REPEATABLE READ", "postgresql_readonly": True}), shown
        if not parsed.database or parsed.database == ":memory:" or parsed.query:
            raise FedgateError(f"{shown}: give the audit database's file path (or a plain sqlite:/// URL)")
        path = Path(parsed.database)
    if not path.is_file():
        raise FedgateError(f"{shown}: no such audit database")
    # mode=ro: the file is never created, written or switched to WAL (a VACUUM INTO copy is in
    # rollback-journal mode and may be read-only); no schema is created either.
    engine = sa.create_engine(f"sqlite+pysqlite:///file:{path.resolve()}?mode=ro&uri=true", poolclass=sa.NullPool)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite opens no transaction for SELECTs; take that over so "begin" opens one.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA query_only=ON")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # A deferred BEGIN: the first SELECT takes a read snapshot that holds until the end.
        conn.exec_driver_sql("BEGIN")

    return engine, str(path)
