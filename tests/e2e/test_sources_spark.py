"""The Spark source end to end (issue 16): the same queries on the same rows give the same answers whether the
departments' adapters read CSV/SQLite or Parquet through Spark in local mode. Real processes throughout."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import re
from pathlib import Path
from typing import Any

import pytest

import support
from deployment import Deployment, deployed
from fedgate.adapters.sources.spark import SESSIONS, SparkSource, SparkSpec
from fedgate.demo.deployment import datasets_toml

pytestmark = pytest.mark.spark

WHY = ("--purpose", "核查", "--case", "SPARK-16")
MATCH = ("hrss.subsidies.uscc", "samr.companies.uscc")
# Each query as a supervisor asks it; each answers with JSON.
QUERIES: dict[str, tuple[str, ...]] = {
    "count": ("count", "hrss.subsidies"),
    # (One filter for both hrss answers: the difference check refuses two sets that differ by a few rows.)
    "count filtered": ("count", "hrss.subsidies", "--filter", "amount_fen > 10000"),
    "count companies": ("count", "samr.companies", "--filter", "status in ('存续', '注销')"),
    "match keyed": ("match", *MATCH, "--mode", "keyed", "--disclose", "company_name", "--limit", "5"),
    "match ecdh": ("match", *MATCH, "--mode", "ecdh", "--disclose", "company_name", "--limit", "5"),
    "sum": ("sum", *MATCH, "--field", "amount_fen"),
    "compare": ("compare", "hrss.subsidies.uscc", "hrss.subsidies.uscc", "--left-value", "amount_fen",
                "--right-value", "amount_fen", "--weights", "2:1", "--disclose", "company_name"),
    "masked disclosure": ("disclose", "hrss.subsidies", "--field", "uscc", "--field", "company_name",
                          "--filter", "amount_fen > 10000", "--limit", "20"),
}
# What differs between two deployments however equal their data: the query's identity and timing.
VOLATILE = {"query_id", "entry_index", "duration_ms", "elapsed_s", "issued_at", "trace_id", "cosignatures",
            "at", "time", "timestamp", "seconds"}


def _answer(value: Any) -> Any:
    """The answer with what names the query rather than answers it left out."""
    if isinstance(value, dict):
        return {k: _answer(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_answer(v) for v in value]
    return value


def _answers(d: Deployment) -> dict[str, Any]:
    out = {}
    for name, args in QUERIES.items():
        done = d.fedgate("query", *args, *WHY, "--json")
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
        out[name] = _answer(json.loads(done.stdout))
    return out


def test_spark_sources_answer_as_csv_and_sqlite_sources_do(tmp_path: Path) -> None:
    why = support.spark_missing()
    if why:
        pytest.skip(why)
    with deployed(tmp_path / "files") as d:
        expected = _answers(d)
    with deployed(tmp_path / "spark", spark=True) as d:
        got = _answers(d)
    assert got == expected
    # The answers are the data's, not an empty agreement: subsidies 1..20 against companies 0..14.
    assert expected["count"]["rows"] == 20 and expected["count filtered"]["rows"] == 10
    assert expected["match keyed"]["cardinality"] == 14 and expected["sum"]["totals"] == {"amount_fen": 105_000}
    assert expected["masked disclosure"]["fields"][0]["form"] == "masked"

    # Each query hrss served ran as Spark jobs grouped under its query id, for its operator to find in the UI;
    # the jobs' descriptions say what was done, never a filter's value or an identifier.
    jobs = _jobs(tmp_path / "spark" / "spark-events", "fedgate-hrss")
    groups = {group for group, _ in jobs} - {"fedgate-adapter"}  # (start-up checks, heartbeats)
    served = [name for name, args in QUERIES.items() if "hrss.subsidies" in " ".join(args)]
    assert len(groups) == len(served) and all(re.fullmatch("[0-9a-f]{32}", g) for g in groups), jobs
    # Every match's tokens (and the sum's and comparison's ciphertexts) were made on the executors, not streamed.
    made = {group for group, text in jobs if text.startswith("fedgate: computing tokens")}
    matched = [name for name in served if args_match(QUERIES[name])]
    assert len(made) == len(matched), jobs
    # And every matched row they disclosed was found again and masked there too, not streamed to the adapter.
    masked = {group for group, text in jobs if text.startswith("fedgate: masking disclosed rows")}
    assert masked <= made and len(masked) == len([name for name in matched if "--disclose" in QUERIES[name]]), jobs
    ids = {support.uscc(i) for i in range(21)}
    assert not [text for _, text in jobs if "10000" in text or any(i in text for i in ids)]


def args_match(args: tuple[str, ...]) -> bool:
    """Whether the query matches two sets (its adapters make tokens), rather than counting or disclosing rows."""
    return args[0] in ("match", "sum", "compare")


def _jobs(events: Path, app: str) -> list[tuple[str, str]]:
    """(job group, description) of every job of the Spark application named `app`, from the event logs."""
    for log in events.iterdir():
        lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
        if any(e["Event"] == "SparkListenerApplicationStart" and e["App Name"] == app for e in lines):
            return [(e["Properties"].get("spark.jobGroup.id", ""), e["Properties"].get("spark.job.description", ""))
                    for e in lines if e["Event"] == "SparkListenerJobStart"]
    raise AssertionError(f"no Spark event log of {app} in {events}")


async def test_a_stopped_adapter_ends_its_spark_session_and_jvm(servers) -> None:
    why = support.spark_missing()
    if why:
        pytest.skip(why)
    from pyspark import SparkContext

    if SparkContext._active_spark_context is not None:
        # The unit tests' shared session runs in this process (they ran first here): no adapter's stop could end
        # its JVM. The test then runs alone in a fresh interpreter, where the adapter's session is the only one.
        alone = subprocess.run([sys.executable, "-m", "pytest", f"{__file__}::{test_a_stopped_adapter_ends_its_spark_session_and_jvm.__name__}",
                                "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
                               capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
        assert alone.returncode == 0 and "1 passed" in alone.stdout, alone.stdout[-3000:] + alone.stderr[-2000:]
        return
    parquet = servers.tmp / "companies.parquet"
    source = {"kind": "spark", "path": str(parquet), "format": "parquet", "master": "local[1]",
              "conf": support.SPARK_TEST_CONF}
    # The file is written by this process's own Spark session, the one the adapter's source then joins.
    writer = SparkSource(SparkSpec("spark", table="unread", master="local[1]", conf=tuple(support.SPARK_TEST_CONF.items())))
    SESSIONS.get().createDataFrame([(support.uscc(i), "存续") for i in range(12)], "uscc string, status string") \
        .write.parquet(str(parquet))
    decl = support.COMPANIES_DECL.spec(kind="sqlite", where='path = "x"')
    gw = await servers.gateway()
    adapter = await servers.adapter("samr", gw, datasets_toml([dataclasses.replace(decl, source=source)]))
    writer.close()  # the adapter's source still uses the session
    assert adapter.datasets[0].row_count == 12
    jvm = SparkContext._gateway.proc  # the start-up checks started it, in this process
    assert jvm.poll() is None
    servers.adapters.remove(adapter)
    await adapter.stop(0)
    assert jvm.poll() is not None and SparkContext._gateway is None
