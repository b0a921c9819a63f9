"""The dataset registry, persisted through SQLAlchemy Core.

SQLite (WAL, synchronous=FULL) is the embedded default; any SQLAlchemy URL
works, PostgreSQL included, so stateless gateway replicas can share one
registry. Calls are blocking and short; the service runs them in a thread.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from fedgate.datasets import DatasetDecl, FieldDecl, RegisteredDataset
from fedgate.matching_keys import MatchingKey

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


@dataclass(frozen=True)
class Department:
    code: str
    display_name: str
    endpoint: str
    matching_key: MatchingKey | None = None


def _fields_json(decl: DatasetDecl) -> str:
    return json.dumps([
        {"name": f.name, "type": f.type.value, "level": f.level,
         "key": f.key.value if f.key else None, "description": f.description}
        for f in decl.fields
    ], ensure_ascii=False)


def _fields_from_json(text: str) -> tuple[FieldDecl, ...]:
    return tuple(FieldDecl.build(d["name"], d["type"], d["level"], d["key"], d["description"])
                 for d in json.loads(text))


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


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


class RegistryStore:
    """Departments and their dataset declarations."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        _meta.create_all(engine)

    @classmethod
    def open(cls, url: str) -> RegistryStore:
        return cls(make_engine(url))

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def replace_department(self, code: str, display_name: str, endpoint: str,
                           decls: list[DatasetDecl], matching_key: MatchingKey | None = None) -> tuple[int, int]:
        """Make `decls` the department's whole dataset set, atomically; returns (registered, removed)."""
        now = dt.datetime.now(dt.UTC)
        names = [d.name for d in decls]
        with self._engine.begin() as conn:
            exists = conn.execute(sa.select(departments.c.code).where(departments.c.code == code)).first()
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
        return len(decls), removed

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
        if r is None:
            return None
        key = (MatchingKey(bytes(r.matching_key), bytes(r.matching_key_sig), r.matching_cert)
               if r.matching_key else None)
        return Department(r.code, r.display_name, r.endpoint, key)
