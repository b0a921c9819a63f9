"""Helpers for tests that run real fedgate servers on loopback with mTLS."""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from fedgate.crypto.ids import make_uscc
from fedgate.identity import Identity, Role

SUPERVISOR = Identity(Role.SUPERVISOR, "dcb", "alice")
OFFICER = Identity(Role.OFFICER, "audit", "bob")
DEPARTMENTS = ("hrss", "samr", "tax", "civil", "vehicle")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def gateway_toml(data_dir: Path, certs: Path) -> str:
    return (f'listen = "127.0.0.1:0"\ndata_dir = "{data_dir}"\nworkers = 0\n\n[tls]\n'
            f'ca = "{certs}/ca.pem"\ncert = "{certs}/gateway.pem"\nkey = "{certs}/gateway.key"\n')


def adapter_toml(dept: str, gateway: str, certs: Path, datasets: str, cert_stem: str | None = None,
                 vkey: Path | None = None) -> str:
    stem = cert_stem or f"dept-{dept}"
    return (f'department = "{dept}"\nlisten = "127.0.0.1:0"\ngateway = "{gateway}"\n'
            f'gateway_log_key = "{vkey or certs / "log-signing.vkey"}"\n'
            f'register_timeout_s = 10\nworkers = 0\n\n[tls]\nca = "{certs}/ca.pem"\ncert = "{certs}/{stem}.pem"\n'
            f'key = "{certs}/{stem}.key"\n\n{datasets}')


def uscc(i: int) -> str:
    """A valid unified social credit code, numbered i."""
    return make_uscc(f"91330100MA2{i:06d}")


SUBSIDIES_CSV = "uscc,company_name,amount_fen\n" + "".join(
    f"{uscc(i)},公司{i},{1000 * i}\n" for i in range(1, 21))

SUBSIDIES_DECL = """
[[datasets]]
name = "subsidies"
description = "稳岗补贴"
source = {{ kind = "csv", path = "{path}" }}

[[datasets.fields]]
name = "uscc"
type = "string"
level = "L3"
key = "uscc"

[[datasets.fields]]
name = "company_name"
type = "string"
level = "L2"

[[datasets.fields]]
name = "amount_fen"
type = "int"
level = "L3"
"""

COMPANIES_DECL = """
[[datasets]]
name = "companies"
source = {{ kind = "{kind}", {where}, table = "companies" }}

[[datasets.fields]]
name = "uscc"
type = "string"
level = "L2"
key = "uscc"

[[datasets.fields]]
name = "status"
type = "string"
level = "L1"
"""


def write_companies(engine_url: str, n: int = 15) -> None:
    engine = sa.create_engine(engine_url)
    meta = sa.MetaData()
    table = sa.Table("companies", meta, sa.Column("uscc", sa.String), sa.Column("status", sa.String))
    with engine.begin() as conn:
        meta.drop_all(conn)
        meta.create_all(conn)
        conn.execute(table.insert(), [{"uscc": uscc(i), "status": "存续"} for i in range(n)])
    engine.dispose()


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        engine = sa.create_engine(PG_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def private_pg_schema(prefix: str) -> Iterator[str]:
    """A URL of the test PostgreSQL whose tables all live in a fresh schema, dropped afterwards; skips when
    PostgreSQL is not reachable. Other tests (and other runs) use their own schemas at the same time."""
    import pytest

    if not postgres_reachable():
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432 (database 'test', user 'postgres')")
    schema = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


def pensions_csv(n: int = 150) -> str:
    """n pensioners: resident_id (L4 key), name (L3), monthly_amount_fen (L3), district (L2)."""
    import datetime as dt

    from fedgate.crypto.ids import make_resident_id

    lines = ["resident_id,name,monthly_amount_fen,district"]
    for i in range(n):
        rid = make_resident_id("330106", dt.date(1940 + i % 30, 1 + i % 12, 1 + i % 28), i % 1000)
        district = "西湖区" if i % 3 else "上城区"
        lines.append(f"{rid},张{'伟芳娜敏静'[i % 5]}{i},{150_000 + 100 * i},{district}")
    return "\n".join(lines) + "\n"


PENSIONS_DECL = """
[[datasets]]
name = "pensions"
source = {{ kind = "csv", path = "{path}" }}

[[datasets.fields]]
name = "resident_id"
type = "string"
level = "L4"
key = "resident_id"

[[datasets.fields]]
name = "name"
type = "string"
level = "L3"

[[datasets.fields]]
name = "monthly_amount_fen"
type = "int"
level = "L3"

[[datasets.fields]]
name = "district"
type = "string"
level = "L2"
"""
