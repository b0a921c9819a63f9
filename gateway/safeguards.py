"""Daily quota counters in the registry database: the I/O behind the `quotas` safeguard (fedgate.query.safeguards)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from fedgate.core.errors import QuotaExceeded
from fedgate.core.identity import Identity
from fedgate.query.safeguards import Quota, SafeguardConfig

_meta = sa.MetaData()
usage = sa.Table(
    "fedgate_quota_usage", _meta,
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("queries", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
)


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


class QuotaBook:
    """Per-subject daily counters, kept in the registry database so replicas and restarts share them."""

    def __init__(self, engine: sa.Engine, safeguards: SafeguardConfig) -> None:
        self._engine = engine
        self._safeguards = safeguards
        _meta.create_all(engine)

    def _quota(self, who: Identity) -> Quota | None:
        return self._safeguards.quotas.get(who.role.value)

    def _open_day(self, conn: sa.Connection, subject: str, day: str) -> None:
        """The subject's row for the day, created at zero if missing; a concurrent creator is no error."""
        insert = (sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert)(usage)
        conn.execute(insert.values(subject=subject, day=day, queries=0, rows=0).on_conflict_do_nothing())

    def charge_query(self, who: Identity) -> int | None:
        """Count one query; raise QuotaExceeded when the day's allowance is used up.

        Returns how many rows may still be disclosed today (None: no quota).
        """
        quota = self._quota(who)
        if quota is None:
            return None
        subject, day = who.spiffe_id, _today()
        mine = (usage.c.subject == subject) & (usage.c.day == day)
        with self._engine.begin() as conn:
            self._open_day(conn, subject, day)
            # One conditional UPDATE: concurrent queries (other replicas too) cannot both take the last one.
            charged = conn.execute(usage.update().where(mine, usage.c.queries < quota.queries_per_day)
                                   .values(queries=usage.c.queries + 1))
            if charged.rowcount != 1:
                raise QuotaExceeded(f"daily query quota used up: {quota.queries_per_day} queries per day for "
                                    f"role {who.role.value} (rule: quotas.{who.role.value}.queries_per_day)")
            rows = int(conn.execute(sa.select(usage.c.rows).where(mine)).scalar_one())
        return max(quota.disclosed_rows_per_day - rows, 0)

    def charge_rows(self, who: Identity, count: int) -> None:
        """Count rows disclosed to `who` today (nothing without a quota)."""
        if self._quota(who) is None or count <= 0:
            return
        subject, day = who.spiffe_id, _today()
        with self._engine.begin() as conn:
            self._open_day(conn, subject, day)  # a query charged before midnight may disclose after it
            conn.execute(usage.update().where(usage.c.subject == subject, usage.c.day == day)
                         .values(rows=usage.c.rows + count))
