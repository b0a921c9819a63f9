"""The dataset registry, persisted through SQLAlchemy Core.

SQLite (WAL, synchronous=FULL) is the embedded default; any SQLAlchemy URL
works, PostgreSQL included, so stateless gateway replicas can share one
registry. Calls are blocking and short; the service runs them in a thread.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import sqlalchemy as sa

from fedgate.core.datasets import DatasetDecl, FieldDecl, RegisteredDataset
from fedgate.core.errors import FailedPrecondition, StoreClosed
from fedgate.core.matching_keys import MatchingKey
from fedgate.query.department_rules import NO_RULES, DepartmentRules

_meta = sa.MetaData()
departments = sa.Table(
    "fedgate_departments", _meta,
    sa.Column("code", sa.String(63), primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The adapter's signed X25519 matching key, relayed to peers as is (they verify it).
    sa.Column("matching_key", sa.LargeBinary, nullable=True),
    sa.Column("matching_key_sig", sa.LargeBinary, nullable=True),
    sa.Column("matching_cert", sa.Text, nullable=True),
)
datasets = sa.Table(
    "fedgate_datasets", _meta,
    sa.Column("department", sa.String(63), sa.ForeignKey("fedgate_departments.code"), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("fields", sa.Text, nullable=False),  # JSON list of field declarations
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Each department's own rules over requests for its data (fedgate.query.department_rules), as it registered
# them: a table of its own, so a registry created before it gains it on start (create_all).
department_rules = sa.Table(
    "fedgate_department_rules", _meta,
    sa.Column("department", sa.String(63), primary_key=True),
    sa.Column("rules", sa.Text, nullable=False),
)

# What the gateway last heard from each department's adapter (health checks and heartbeats).
# Tables of their own, so a registry created before them gains them on start (create_all).
liveness = sa.Table(
    "fedgate_adapter_liveness", _meta,
    sa.Column("department", sa.String(63), primary_key=True),
    sa.Column("endpoint", sa.Text, nullable=False),  # the endpoint these facts are about
    sa.Column("reachable", sa.Boolean, nullable=True),  # the latest health check; NULL: none yet
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_contact", sa.DateTime(timezone=True), nullable=True),
)
live_counts = sa.Table(
    "fedgate_live_counts", _meta,
    sa.Column("department", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Liveness:
    """The latest facts about a department's adapter, as stored (the registry decides what they mean)."""

    reachable: bool | None
    checked_at: dt.datetime | None
    last_contact: dt.datetime | None


@dataclass(frozen=True)
class LiveCount:
    row_count: int
    counted_at: dt.datetime


@dataclass(frozen=True)
class Department:
    """A registered department: its code, its name for people, and where its adapter listens."""

    code: str
    display_name: str
    endpoint: str  # host:port the gateway dials
    matching_key: MatchingKey | None = None
    rules: DepartmentRules = NO_RULES


def _fields_json(decl: DatasetDecl) -> str:
    return json.dumps([
        {"name": f.name, "type": f.type.value, "level": f.level,
         "key": f.key.value if f.key else None, "description": f.description,
         **({"bounds": list(f.bounds)} if f.bounds else {})}
        for f in decl.fields
    ], ensure_ascii=False)


def _fields_from_json(text: str) -> tuple[FieldDecl, ...]:
    # "bounds" is absent from fields stored before bounds could be declared.
    return tuple(FieldDecl.build(d["name"], d["type"], d["level"], d["key"], d["description"],
                                 bounds=tuple(d["bounds"]) if d.get("bounds") else None)
                 for d in json.loads(text))


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _utc_or_none(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else _utc(value)


def make_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    return engine


class RegistrationRaced(FailedPrecondition):
    """Another registration changed the department's adapter between a caller's check and its write."""

    def __init__(self, department: str) -> None:
        super().__init__(f"department '{department}': its registration changed meanwhile (another adapter "
                         "registered at the same moment); check which adapter should serve it, then retry")


class WriteGate:
    """A store's writes and its close() take turns.

    close() waits for the write in progress, and every later write is refused
    with StoreClosed: a disposed engine would silently open a new pool.
    """

    def __init__(self, engine: sa.Engine, closed_message: str) -> None:
        self._engine = engine
        self._closed_message = closed_message
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A write transaction (as `Engine.begin`), or StoreClosed once the store is closed."""
        with self._lock:
            if self._closed:
                raise StoreClosed(self._closed_message)
            with self._engine.begin() as conn:
                yield conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._engine.dispose()


class SqlStore:
    """A store on one engine: its tables created at start, its writes through a gate that closes at shutdown."""

    _tables: ClassVar[sa.MetaData]
    _closed_message: ClassVar[str]  # what a write after shutdown is refused with

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._tables.create_all(engine)
        self._writes = WriteGate(engine, self._closed_message)

    @classmethod
    def open(cls, url: str) -> Self:
        """The store at `url` (a SQLAlchemy URL)."""
        return cls(make_engine(url))

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def close(self) -> None:
        self._writes.close()


class RegistryStore(SqlStore):
    """Departments and their dataset declarations."""

    _tables = _meta
    _closed_message = "the registry is closed: the gateway is shutting down"

    def replace_department(self, code: str, display_name: str, endpoint: str, decls: list[DatasetDecl],
                           matching_key: MatchingKey | None = None, *, expected: str | None,
                           rules: DepartmentRules = NO_RULES) -> tuple[int, int]:
        """Make `decls` the department's whole dataset set, atomically; returns (registered, removed).

        `expected`: the endpoint the caller found registered (None: none). If another registration
        changed it meanwhile (a concurrent takeover, another replica), nothing is written: RegistrationRaced.
        """
        try:
            with self._writes.begin() as conn:
                counts = self._replace(conn, code, display_name, endpoint, decls, matching_key, expected)
                conn.execute(department_rules.delete().where(department_rules.c.department == code))
                conn.execute(department_rules.insert().values(department=code, rules=rules.to_json()))
                return counts
        except sa.exc.IntegrityError:  # another registration inserted the department first
            raise RegistrationRaced(code) from None

    def _replace(self, conn: sa.Connection, code: str, display_name: str, endpoint: str, decls: list[DatasetDecl],
                 matching_key: MatchingKey | None, expected: str | None) -> tuple[int, int]:
        now = dt.datetime.now(dt.UTC)
        names = [d.name for d in decls]
        current = conn.execute(sa.select(departments.c.endpoint).where(departments.c.code == code)
                               .with_for_update()).first()
        if (current.endpoint if current else None) not in (expected, endpoint):
            raise RegistrationRaced(code)  # the caller's check of the registered adapter is stale
        exists = current is not None
        row = {"display_name": display_name, "endpoint": endpoint, "updated_at": now,
               "matching_key": matching_key.public_key if matching_key else None,
               "matching_key_sig": matching_key.signature if matching_key else None,
               "matching_cert": matching_key.certificate_pem if matching_key else None}
        if exists:
            conn.execute(departments.update().where(departments.c.code == code).values(**row))
        else:
            conn.execute(departments.insert().values(code=code, **row))
        removed = conn.execute(
            datasets.delete().where(datasets.c.department == code, datasets.c.name.not_in(names))
        ).rowcount
        known = {r.name for r in conn.execute(
            sa.select(datasets.c.name).where(datasets.c.department == code))}
        for d in decls:
            values = {"description": d.description, "row_count": d.row_count,
                      "fields": _fields_json(d), "updated_at": now}
            if d.name in known:
                conn.execute(datasets.update().where(
                    datasets.c.department == code, datasets.c.name == d.name).values(**values))
            else:
                conn.execute(datasets.insert().values(
                    department=code, name=d.name, registered_at=now, **values))
        # A new endpoint starts with no history; the registration itself reached the adapter.
        conn.execute(liveness.delete().where(liveness.c.department == code, liveness.c.endpoint != endpoint))
        self._contact(conn, code, endpoint, now, reachable=True)
        conn.execute(live_counts.delete().where(live_counts.c.department == code))
        if decls:
            conn.execute(live_counts.insert(), [
                {"department": code, "name": d.name, "row_count": d.row_count, "counted_at": now} for d in decls])
        return len(decls), removed

    @staticmethod
    def _contact(conn: sa.Connection, code: str, endpoint: str, now: dt.datetime,
                 reachable: bool | None = None) -> None:
        """Note a sign of life (and, with `reachable`, a health check's outcome) for `endpoint`."""
        values: dict[str, Any] = {}
        if reachable is not None:
            values.update(reachable=reachable, checked_at=now)
        if reachable is not False:
            values["last_contact"] = now
        updated = conn.execute(liveness.update().where(
            liveness.c.department == code, liveness.c.endpoint == endpoint).values(**values)).rowcount
        if not updated:
            # The department's row is for another endpoint (or there is none): this one's facts replace it.
            conn.execute(liveness.delete().where(liveness.c.department == code))
            conn.execute(liveness.insert().values(department=code, endpoint=endpoint, **values))

    def record_check(self, code: str, endpoint: str, reachable: bool) -> None:
        """Store a health check of the department's adapter at `endpoint`, if that is still its endpoint."""
        now = dt.datetime.now(dt.UTC)
        with self._writes.begin() as conn:
            if self._is_current(conn, code, endpoint):
                self._contact(conn, code, endpoint, now, reachable=reachable)

    def record_heartbeat(self, code: str, endpoint: str, counts: dict[str, int]) -> None:
        """Store a heartbeat: contact now, and the current row counts of the department's registered datasets."""
        now = dt.datetime.now(dt.UTC)
        with self._writes.begin() as conn:
            if not self._is_current(conn, code, endpoint):
                return
            self._contact(conn, code, endpoint, now)
            known = {r.name for r in conn.execute(sa.select(datasets.c.name).where(datasets.c.department == code))}
            for name, rows in counts.items():
                if name not in known:
                    continue
                values = {"row_count": rows, "counted_at": now}
                if not conn.execute(live_counts.update().where(
                        live_counts.c.department == code, live_counts.c.name == name).values(**values)).rowcount:
                    conn.execute(live_counts.insert().values(department=code, name=name, **values))

    @staticmethod
    def _is_current(conn: sa.Connection, code: str, endpoint: str) -> bool:
        return conn.execute(sa.select(departments.c.code).where(
            departments.c.code == code, departments.c.endpoint == endpoint)).first() is not None

    def departments(self) -> list[Department]:
        """Every registered department (without matching keys), by code."""
        with self._engine.connect() as conn:
            return [Department(r.code, r.display_name, r.endpoint)
                    for r in conn.execute(sa.select(departments.c.code, departments.c.display_name,
                                                    departments.c.endpoint).order_by(departments.c.code))]

    def liveness(self) -> tuple[dict[str, Liveness], dict[tuple[str, str], LiveCount]]:
        """The stored liveness of every department's current endpoint, and every live row count."""
        with self._engine.connect() as conn:
            alive = {r.department: Liveness(r.reachable, _utc_or_none(r.checked_at), _utc_or_none(r.last_contact))
                     for r in conn.execute(sa.select(liveness).join(departments, sa.and_(
                         departments.c.code == liveness.c.department, departments.c.endpoint == liveness.c.endpoint)))}
            counts = {(r.department, r.name): LiveCount(int(r.row_count), _utc(r.counted_at))
                      for r in conn.execute(sa.select(live_counts))}
        return alive, counts

    def list_datasets(self, department: str | None = None) -> list[RegisteredDataset]:
        query = (sa.select(datasets, departments.c.display_name)
                 .join(departments, departments.c.code == datasets.c.department)
                 .order_by(datasets.c.department, datasets.c.name))
        if department:
            query = query.where(datasets.c.department == department)
        with self._engine.connect() as conn:
            return [
                RegisteredDataset(
                    DatasetDecl(r.department, r.name, _fields_from_json(r.fields), r.description, r.row_count),
                    r.display_name, _utc(r.registered_at))
                for r in conn.execute(query)
            ]

    def department(self, code: str) -> Department | None:
        with self._engine.connect() as conn:
            r = conn.execute(sa.select(departments).where(departments.c.code == code)).first()
            rules = conn.execute(sa.select(department_rules.c.rules)
                                 .where(department_rules.c.department == code)).scalar()
        if r is None:
            return None
        key = (MatchingKey(bytes(r.matching_key), bytes(r.matching_key_sig), r.matching_cert)
               if r.matching_key else None)
        return Department(r.code, r.display_name, r.endpoint, key, DepartmentRules.from_json(rules or ""))
