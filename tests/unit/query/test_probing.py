"""Probing detectors (fedgate.query.probing): each fires on its pattern and stays quiet on ordinary work."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import ConfigError
from fedgate.query.probing import ALERT_ACTION, Alert, ProbeWatch, Shape, observed
from fedgate.query.safeguards import AlertConfig, SafeguardConfig

ALICE = "spiffe://fedgate/supervisor/dcb/alice"
CAROL = "spiffe://fedgate/supervisor/dcb/carol"
DAVE = "spiffe://fedgate/supervisor/tax/dave"
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
CONFIG = AlertConfig(refusals=5, same_filter=6, bisection_run=4, window_minutes=60, bisection_minutes=10)
_digests = itertools.count()


def query(subject: str, minute: float, *, filt: str = "amount >= ?", dataset: str = "hrss.subsidies",
          status: str = "OK", action: str = "query.count", query_id: str = "", side: str = "") -> AuditEntry:
    """An outcome entry as the gateway logs it: the filter redacted, a fresh salted digest each time."""
    suffix = f"{side}.{dataset}" if side else dataset
    params = {"params_version": "1"}
    if filt:
        params |= {f"filter.{suffix}": filt, f"filter_digest.{suffix}": f"{next(_digests):064x}"}
    return AuditEntry(time=(T0 + dt.timedelta(minutes=minute)).isoformat(timespec="milliseconds")
                      .replace("+00:00", "Z"), subject=subject, role="supervisor", action=action,
                      method="/fedgate.v1.QueryService/CountRows", decision="allow" if status == "OK" else "deny",
                      status=status, datasets=(dataset,), query_id=query_id, params=tuple(sorted(params.items())))


def feed(watch: ProbeWatch, entries: list[AuditEntry], start: int = 0) -> list[Alert]:
    return [a for i, e in enumerate(entries, start) for a in watch.observe(i, e)]


def test_bisection_of_a_range_filter_fires_once_with_its_entries() -> None:
    watch = ProbeWatch(CONFIG)
    alerts = feed(watch, [query(ALICE, m) for m in (0, 1, 2, 3)])
    assert [(a.detector, a.subject, a.agency, a.count, a.indexes) for a in alerts] == [
        ("bisection", ALICE, "dcb", 4, (0, 1, 2, 3))]
    assert alerts[0].shape == Shape("hrss.subsidies", "amount >= ?") and alerts[0].scope == "caller"
    # The next step is already covered by that alert: no repeat for the same entries.
    assert feed(watch, [query(ALICE, 4)], start=4) == []


def test_range_queries_spread_over_the_window_are_not_a_bisection() -> None:
    alerts = feed(ProbeWatch(CONFIG), [query(ALICE, m) for m in (0, 12, 24, 36, 48)])
    assert alerts == []  # five within the hour: below same_filter, and never four within ten minutes


def test_equality_filters_repeated_are_near_identical_but_not_bisection() -> None:
    alerts = feed(ProbeWatch(CONFIG), [query(ALICE, m, filt="name = ?") for m in range(6)])
    assert [(a.detector, a.count) for a in alerts] == [("same_filter", 6)]


def test_same_digest_repeated_is_one_question_not_many() -> None:
    entry = query(ALICE, 0, filt="name = ?")
    repeats = [entry.__class__(**{**entry.__dict__, "time": query(ALICE, m).time}) for m in range(8)]
    assert feed(ProbeWatch(CONFIG), repeats) == []


def test_refused_and_suppressed_answers_fire() -> None:
    entries = [query(ALICE, m, filt=f, status=s) for m, (f, s) in enumerate(
        [("name = ?", "FAILED_PRECONDITION"), ("", "PERMISSION_DENIED"), ("region = ?", "FAILED_PRECONDITION"),
         ("amount < ?", "FAILED_PRECONDITION"), ("", "PERMISSION_DENIED")])]
    alerts = feed(ProbeWatch(CONFIG), entries)
    assert [(a.detector, a.count, a.indexes) for a in alerts] == [("refusals", 5, (0, 1, 2, 3, 4))]
    assert "refused or suppressed" in alerts[0].reason()


def test_two_supervisors_of_one_agency_splitting_a_probe_are_caught_together() -> None:
    watch = ProbeWatch(CONFIG)
    alerts = feed(watch, [query(ALICE if m % 2 else CAROL, m) for m in range(4)])
    assert [(a.detector, a.scope, set(a.subjects), a.agency) for a in alerts] == [
        ("bisection", "agency", {ALICE, CAROL}, "dcb")]
    # The same split across agencies is two callers with two steps each: nothing.
    assert feed(ProbeWatch(CONFIG), [query(ALICE if m % 2 else DAVE, m) for m in range(4)]) == []


def test_a_supervisor_doing_varied_normal_work_raises_nothing() -> None:
    work = [("hrss.subsidies", "region = ?"), ("samr.companies", "status = ?"), ("hrss.subsidies", ""),
            ("mca.deaths", "year >= ? and year < ?"), ("hrss.subsidies", "amount >= ?"),
            ("samr.companies", "status = ? and region = ?"), ("hrss.pensions", "region = ?")]
    day = [query(ALICE, 4 * i, dataset=d, filt=f, status="FAILED_PRECONDITION" if i in (3, 11) else "OK")
           for i, (d, f) in enumerate(work * 3)]
    assert feed(ProbeWatch(CONFIG), day) == []


def test_match_sides_and_comparison_outcomes() -> None:
    # Both sides' filters are shapes; a comparison's two outcomes (one query id) count once.
    entries = [query(ALICE, m, side="left", action="query.compare", query_id=f"q{m // 2}") for m in range(8)]
    alerts = feed(ProbeWatch(CONFIG), entries)
    assert [(a.detector, a.count, a.indexes) for a in alerts] == [("bisection", 4, (0, 2, 4, 6))]


def test_entries_that_are_not_supervisor_query_outcomes_are_ignored() -> None:
    officer = query("spiffe://fedgate/officer/audit/bob", 0)
    assert observed(0, officer) is None
    assert observed(0, query(ALICE, 0, status="STARTED")) is None
    assert observed(0, query(ALICE, 0, action="registry.list")) is None


def test_disabled_watch_raises_nothing() -> None:
    off = AlertConfig(enabled=False, refusals=1, same_filter=1, bisection_run=1)
    assert feed(ProbeWatch(off), [query(ALICE, 0, status="FAILED_PRECONDITION")]) == []


def test_a_rebuilt_watch_counts_on_and_does_not_repeat_logged_alerts() -> None:
    first = ProbeWatch(CONFIG)
    history = [query(ALICE, m) for m in range(4)]
    (alert,) = feed(first, history)
    logged = [*enumerate(history), (4, alert.entry(history[-1].time))]
    rebuilt = ProbeWatch(CONFIG)
    rebuilt.remember(logged)
    assert feed(rebuilt, [query(ALICE, 5)], start=5) == []  # the four before are that alert's
    later = feed(rebuilt, [query(ALICE, 6 + m) for m in range(3)], start=6)
    # A new run of four; and, counted on its own key, six of the shape within the hour (the old ones included).
    assert [(a.detector, a.indexes) for a in later] == [("same_filter", (0, 1, 2, 3, 5, 6)),
                                                        ("bisection", (5, 6, 7, 8))]
    # Without the alert in the log, the rebuilt windows alone complete the run with the next query.
    fresh = ProbeWatch(CONFIG)
    fresh.remember(enumerate(history[:3]))
    assert [a.indexes for a in feed(fresh, [history[3]], start=3)] == [(0, 1, 2, 3)]


def test_alert_entry_holds_no_value_only_who_what_and_where() -> None:
    (alert,) = feed(ProbeWatch(CONFIG), [query(ALICE, m) for m in range(4)])
    entry = alert.entry("2026-12-01T09:04:00.000Z")
    assert AuditEntry.from_canonical(entry.canonical()) == entry
    assert (entry.action, entry.subject, entry.datasets, entry.status) == (
        ALERT_ACTION, ALICE, ("hrss.subsidies",), "ALERT")
    params = dict(entry.params)
    assert params["alert.detector"] == "bisection" and params["alert.entries"] == "0,1,2,3"
    assert params["alert.agency"] == "dcb" and params["alert.shape"] == "amount >= ?"
    assert dict(entry.result_sizes) == {"count": 4, "threshold": 4, "window_s": 600, "subjects": 1}


def test_config_reads_alerts_table_and_refuses_nonsense(tmp_path: Path) -> None:
    path = tmp_path / "safeguards.toml"
    path.write_text("[alerts]\nrefusals = 3\nbisection_minutes = 5\n")
    assert SafeguardConfig.from_file(path).alerts == AlertConfig(refusals=3, bisection_minutes=5)
    path.write_text("[alerts]\nrefusals = 0\n")
    with pytest.raises(ConfigError, match="alerts.refusals"):
        SafeguardConfig.from_file(path)
    path.write_text("[alerts]\nrefusal = 3\n")
    with pytest.raises(ConfigError, match="alerts.refusal"):
        SafeguardConfig.from_file(path)
