"""Daily quotas hold when many queries of one supervisor are charged at once, through two gateway replicas."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import support
from fedgate.core.errors import QuotaExceeded
from fedgate.gateway.registry_store import make_engine
from fedgate.gateway.safeguards import QuotaBook, usage
from fedgate.query.safeguards import Quota, SafeguardConfig

QUERIES, ROWS = 20, 50
SAFEGUARDS = SafeguardConfig(quotas={"supervisor": Quota(QUERIES, ROWS)})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        with support.private_pg_schema("fg_quota") as pg:
            yield pg


def test_concurrent_charges_never_exceed_the_daily_quota_nor_fail(url: str) -> None:
    engines = [make_engine(url) for _ in range(2)]
    replicas = [QuotaBook(engine, SAFEGUARDS) for engine in engines]
    granted: list[int | None] = []
    refused: list[Exception] = []
    start = threading.Barrier(8)

    def supervisor_queries(book: QuotaBook) -> None:
        start.wait()
        for _ in range(10):  # 80 attempts in all against a quota of 20
            try:
                granted.append(book.charge_query(support.SUPERVISOR))
                book.charge_rows(support.SUPERVISOR, 1)
            except Exception as exc:  # every refusal is collected; only QuotaExceeded is right
                refused.append(exc)

    threads = [threading.Thread(target=supervisor_queries, args=(replicas[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    others = [e for e in refused if not isinstance(e, QuotaExceeded)]
    assert not others, f"charges failed instead of being counted: {others[:3]}"
    assert len(granted) == QUERIES, f"{len(granted)} queries granted against a quota of {QUERIES}"
    with engines[0].connect() as conn:  # every granted query charged one row, none lost
        assert conn.execute(sa.select(usage.c.queries, usage.c.rows)).all() == [(QUERIES, QUERIES)]
    with pytest.raises(QuotaExceeded):
        replicas[0].charge_query(support.SUPERVISOR)
    for engine in engines:
        engine.dispose()
