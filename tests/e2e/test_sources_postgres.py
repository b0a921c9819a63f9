"""PostgreSQL sources (issue 12, point 4): tables in a schema, views, declared types, a failure mid-life.

Every object lives in a schema (and a public view) of its own, named with a
random suffix and dropped afterwards: other tests use the same database.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import support
from fedgate.adapters.config import DatasetConfig, SourceSpec
from fedgate.adapters.server import check_source
from fedgate.client.gateway import GatewayClient
from fedgate.core.datasets import DatasetDecl, FieldDecl
from fedgate.core.errors import DataSourceError, RemoteCallFailed
from fedgate.server.tls import TlsFiles

pytestmark = pytest.mark.postgres

ROWS = 120
WHY = ("核查数据源", "DC-2026-113")
REF = re.compile(r"source failed \(ref ([0-9a-f]{8})\)")


class Pg:
    def __init__(self, suffix: str) -> None:
        self.schema = f"fg_src_{suffix}"
        self.public_view = f"fg_src_{suffix}_open"
        self.engine = sa.create_engine(support.PG_URL)

    def sql(self, *statements: str) -> None:
        with self.engine.begin() as conn:
            for s in statements:
                conn.execute(sa.text(s))


@pytest.fixture
def pg() -> Iterator[Pg]:
    if not support.postgres_reachable():
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432 (database 'test', user 'postgres')")
    db = Pg(secrets.token_hex(4))
    s = db.schema
    db.sql(f"CREATE SCHEMA {s}",
           f"CREATE TABLE {s}.subsidies (uscc text, amount_fen bigint, paid_on date, paid_text text, "
           "ratio numeric(10, 0), stamped timestamp, note varchar(40))",
           f"INSERT INTO {s}.subsidies SELECT 'U' || i, i * 100, DATE '2024-01-01' + i, "
           f"to_char(DATE '2024-01-01' + i, 'YYYY-MM-DD'), i, now(), 'n' || i FROM generate_series(1, {ROWS}) i",
           f"CREATE VIEW {s}.large AS SELECT uscc, amount_fen FROM {s}.subsidies WHERE amount_fen > 5000",
           f"CREATE VIEW {db.public_view} AS SELECT uscc, amount_fen FROM {s}.subsidies")
    try:
        yield db
    finally:
        db.sql(f"DROP VIEW IF EXISTS {db.public_view}", f"DROP SCHEMA IF EXISTS {s} CASCADE")
        db.engine.dispose()


def config(table: str, **types: str) -> DatasetConfig:
    fields = tuple(FieldDecl.build(name, ftype, "L2", "plain" if name == "uscc" else None)
                   for name, ftype in {"uscc": "string", **types}.items())
    return DatasetConfig(DatasetDecl("hrss", "subsidies", fields), SourceSpec("sql", url=support.PG_URL, table=table))


def checked_rows(ds: DatasetConfig) -> int:
    return check_source(ds, ds.open_source()).row_count


def test_a_table_in_a_schema_a_view_and_a_view_in_a_schema_are_sources(pg: Pg) -> None:
    assert checked_rows(config(f"{pg.schema}.subsidies", amount_fen="int", paid_on="date")) == ROWS
    assert checked_rows(config(pg.public_view, amount_fen="int")) == ROWS
    assert checked_rows(config(f"{pg.schema}.large", amount_fen="int")) == ROWS - 50
    source = config(f"{pg.schema}.large", amount_fen="int").open_source()
    assert min(v for (v,) in source.rows(["amount_fen"])) == 5100
    with pytest.raises(DataSourceError, match="no such table or view .*schema.table"):
        checked_rows(config("subsidies_nowhere"))


@pytest.mark.parametrize(("field", "declared", "real"), [
    ("uscc", "int", "TEXT"),
    ("ratio", "int", "NUMERIC(10, 0)"),
    ("stamped", "date", "TIMESTAMP WITHOUT TIME ZONE"),
    ("amount_fen", "string", "BIGINT"),
])
def test_a_column_of_another_type_is_refused_at_start(pg: Pg, field: str, declared: str, real: str) -> None:
    types = {"uscc": "string", field: declared}
    ds = DatasetConfig(DatasetDecl("hrss", "subsidies", tuple(
        FieldDecl.build(n, t, "L2", "plain" if i == 0 else None) for i, (n, t) in enumerate(types.items()))),
        SourceSpec("sql", url=support.PG_URL, table=f"{pg.schema}.subsidies"))
    with pytest.raises(DataSourceError) as err:
        checked_rows(ds)
    assert str(err.value).startswith("dataset 'subsidies': ")
    assert f"field '{field}' is declared {declared}, but its column is {real}" in str(err.value)


def test_a_text_column_of_dates_is_a_date_field_only_if_every_value_is_one(pg: Pg) -> None:
    assert checked_rows(config(f"{pg.schema}.subsidies", paid_text="date")) == ROWS
    pg.sql(f"UPDATE {pg.schema}.subsidies SET paid_text = '01/02/2024' WHERE amount_fen = 700")
    with pytest.raises(DataSourceError) as err:
        checked_rows(config(f"{pg.schema}.subsidies", paid_text="date"))
    assert "field 'paid_text' is declared date, but 1 row(s) of its TEXT column hold a value that is not a " \
        "YYYY-MM-DD date" in str(err.value)
    assert "01/02/2024" not in str(err.value)


DECL = """
[[datasets]]
name = "subsidies"
source = {{ kind = "sql", url = "{url}", table = "{table}" }}

[[datasets.fields]]
name = "uscc"
type = "string"
level = "L2"
key = "plain"

[[datasets.fields]]
name = "amount_fen"
type = "int"
level = "L2"
"""


async def test_a_schema_table_served_then_renamed_leaves_only_a_reference(servers, pg: Pg, caplog) -> None:
    caplog.set_level(logging.ERROR)
    gw = await servers.gateway(servers.tmp / "gw")
    hrss = await servers.adapter("hrss", gw, DECL.format(url=support.PG_URL, table=f"{pg.schema}.subsidies"))
    tls = TlsFiles.in_dir(servers.certs, support.SUPERVISOR)
    async with GatewayClient(f"127.0.0.1:{gw.port}", tls, timeout=60) as c:
        assert (await c.count_rows("hrss.subsidies", *WHY))[0] == ROWS
        pg.sql(f"ALTER TABLE {pg.schema}.subsidies RENAME TO moved")
        with pytest.raises(RemoteCallFailed) as err:
            await c.count_rows("hrss.subsidies", *WHY)
    details = err.value.details
    assert err.value.code == "UNAVAILABLE" and (found := REF.search(details)), details
    ref = found.group(1)
    internals = [pg.schema, "postgres", "psycopg", "5432", "127.0.0.1", "does not exist", "relation"]
    assert not [s for s in internals if s in details], details
    async with GatewayClient(f"127.0.0.1:{gw.port}", TlsFiles.in_dir(servers.certs, support.OFFICER)) as officer:
        entries = [e for _, e in await officer.search(limit=1000)]
    outcome = next(e for e in entries if e.action == "query.count" and e.status == "UNAVAILABLE")
    assert f"ref {ref}" in outcome.reason
    assert not [s for s in internals if s in outcome.canonical().decode()]
    for entry in entries:  # (registrations may name the adapter's endpoint, never its database)
        assert not [s for s in (pg.schema, "postgres", "psycopg", "5432") if s in entry.canonical().decode()]
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and ref in r.getMessage()]
    assert logged and pg.schema in logged[0] and "127.0.0.1" in logged[0]
    assert any(d.decision == "stopped" and f"source failed (ref {ref})" in d.reason
               for d in hrss.disclosures.disclosures())

