"""The safeguard pipeline without servers: each safeguard refusing and passing, phase order, config loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedgate.core.classification import default_levels
from fedgate.crypto.ticket import TicketRefused
from fedgate.core.errors import ConfigError, FailedPrecondition, InvalidInput, QuotaExceeded, RemoteProtocolError
from fedgate.core.identity import Identity, Role
from fedgate.query.audit_params import QueryParams
from fedgate.query.safeguards import (
    DEFAULT_MAX_MATCH_ROWS,
    MAX_DISCLOSE_ROWS,
    DailyQuota,
    MinSetSize,
    Phase,
    Quota,
    Release,
    ReleasedField,
    Request,
    SafeguardConfig,
    Safeguards,
    peer_token_bound,
)
from fedgate.query.sizes import Sizes, Suppressed

ALICE = Identity(Role.SUPERVISOR, "dcb", "alice")
QUOTA = Quota(10, 30)
CONFIG = SafeguardConfig(min_set_size=10, quotas={"supervisor": Quota(2, 30)}, max_match_rows=50)


class Ledger:
    """An in-memory quota ledger, as the gateway's QuotaBook counts."""

    def __init__(self, quota: Quota | None = QUOTA) -> None:
        self.quota, self.queries, self.rows = quota, 0, 0
        self.calls: list[str] = []

    def charge_query(self, who: Identity) -> int | None:
        self.calls.append("query")
        if self.quota is None:
            return None
        if self.queries >= self.quota.queries_per_day:
            raise QuotaExceeded("daily query quota used up (rule: quotas.supervisor.queries_per_day)")
        self.queries += 1
        return max(self.quota.disclosed_rows_per_day - self.rows, 0)

    def charge_rows(self, who: Identity, count: int) -> None:
        self.calls.append(f"rows {count}")
        self.rows += count


def _pipeline(ledger: Ledger | None = None) -> Safeguards:
    return Safeguards.for_gateway(CONFIG, default_levels(), ledger or Ledger())


def _request(kind: str, limit: int | None = None, rows: bool = False, levels: tuple[str, ...] = ()) -> Request:
    return Request(ALICE, kind, QueryParams(), limit, rows, levels)


# --- ADMIT ---

def test_admit_binds_the_values_each_kind_logs() -> None:
    pipeline = _pipeline()
    count = _request("count", levels=("L2", "L3"))
    pipeline.admit(count)
    assert (count.params.min_aggregate, count.params.min_set_size, count.params.limit) == (5, None, None)
    match = _request("match", 100, rows=True)
    pipeline.admit(match)
    p = match.params
    # A match binds a minimum aggregate too (its cardinality is one): 0 here, no level touched.
    assert (p.min_set_size, p.max_match_rows, p.limit, p.limit_requested, p.min_aggregate) == (10, 50, 30, 100, 0)
    disclose = _request("disclose", 20, rows=True)
    pipeline.admit(disclose)
    assert (disclose.params.limit, disclose.params.limit_requested, disclose.params.max_match_rows) == (20, None, None)


@pytest.mark.parametrize("limit", [0, -1, MAX_DISCLOSE_ROWS + 1])
def test_a_bad_limit_is_refused_before_any_quota_is_charged(limit: int) -> None:
    ledger = Ledger()
    with pytest.raises(InvalidInput, match=f"limit must be between 1 and {MAX_DISCLOSE_ROWS}"):
        _pipeline(ledger).admit(_request("disclose", limit, rows=True))
    assert ledger.calls == []


def test_the_query_quota_refuses_once_used_up() -> None:
    pipeline = _pipeline(Ledger(Quota(1, 30)))
    pipeline.admit(_request("count"))
    with pytest.raises(QuotaExceeded, match="queries_per_day"):
        pipeline.admit(_request("count"))


def test_the_row_quota_lowers_the_limit_and_refuses_a_disclosure_at_zero() -> None:
    ledger = Ledger(Quota(10, 30))
    ledger.rows = 30
    with pytest.raises(QuotaExceeded, match=r"disclosed-row quota used up \(rule: quotas.supervisor"):
        _pipeline(ledger).admit(_request("disclose", 5, rows=True))
    plain_match = _request("match", 5)  # no rows asked for: nothing to refuse, the limit is what is left
    _pipeline(ledger).admit(plain_match)
    assert (plain_match.limit, plain_match.params.limit_requested) == (0, 5)


def test_no_quota_for_a_role_leaves_the_limit_alone() -> None:
    request = _request("disclose", 500, rows=True)
    _pipeline(Ledger(None)).admit(request)
    assert request.limit == 500 and request.params.limit_requested is None


# --- SIZES ---

def _admitted(kind: str, levels: tuple[str, ...] = ()) -> tuple[Safeguards, Request]:
    pipeline = _pipeline()
    request = _request(kind, 1 if kind in ("match", "disclose") else None, levels=levels)
    pipeline.admit(request)
    return pipeline, request


def test_min_set_size_refuses_a_small_or_empty_side_and_passes_a_large_one() -> None:
    pipeline, request = _admitted("match")
    check = pipeline.size_check(request)
    check(Sizes(set_rows={"left": 10, "right": 10}))
    for small in (9, 0):  # an empty side is refused like a small one: 0 and 1 answer alike
        with pytest.raises(FailedPrecondition) as err:
            check(Sizes(set_rows={"left": 10, "right": small}))
        assert str(err.value) == ("the right set has fewer than 10 rows after its filter (safeguard min_set_size): "
                                  "no result")


def test_min_aggregate_suppresses_a_small_count_by_its_highest_level() -> None:
    pipeline, request = _admitted("count", levels=("L2", "L3"))
    check = pipeline.size_check(request)
    check(Sizes(aggregated_rows=5))
    for small in (4, 0):  # zero is suppressed like four: the answer is only "fewer than 5"
        with pytest.raises(Suppressed) as err:
            check(Sizes(aggregated_rows=small))
        assert err.value.below == 5
        assert str(err.value) == ("count suppressed: fewer than 5 rows, the minimum aggregation size for level L3 "
                                  "(safeguard min_aggregate)")


def test_min_aggregate_names_matched_rows_for_a_sum() -> None:
    pipeline, request = _admitted("sum", levels=("L3",))
    with pytest.raises(FailedPrecondition, match="sum suppressed: fewer than 5 matched rows"):
        pipeline.size_check(request)(Sizes(aggregated_rows=3))


def test_an_unfiltered_count_has_no_aggregate_floor() -> None:
    pipeline, request = _admitted("count")
    pipeline.size_check(request)(Sizes(aggregated_rows=1))
    assert request.params.min_aggregate == 0


# --- RELEASE (what a department checks, with the entry's numbers) ---

DEPARTMENT = Safeguards.for_department(default_levels())


def test_a_department_runs_only_release_checks() -> None:
    assert DEPARTMENT.checks and all(Phase.RELEASE in c.phases for c in DEPARTMENT.checks)
    assert not any(isinstance(c, DailyQuota) for c in DEPARTMENT.checks)


@pytest.mark.parametrize("name, level, form, refused", [
    ("district", "L2", "plaintext", ""),
    ("name", "L3", "masked", ""),
    ("name", "L3", "plaintext", "at most as masked, not plaintext"),
    ("resident_id", "L4", "masked", "at most as aggregate, not masked"),
    ("name", "L3", "aggregate", "not aggregate"),
])
def test_disclosure_ceiling(name: str, level: str, form: str, refused: str) -> None:
    release = Release(QueryParams(), (ReleasedField(name, form, level),))
    if not refused:
        DEPARTMENT.release(release)
        return
    with pytest.raises(TicketRefused, match=refused):
        DEPARTMENT.release(release)


def test_rows_leave_only_from_a_set_of_the_logged_minimum_size() -> None:
    params = QueryParams(min_set_size=100)
    DEPARTMENT.release(Release(params, set_rows=100))
    for rows in (0, 99):
        with pytest.raises(FailedPrecondition, match="fewer than 100 rows .safeguard min_set_size.: nothing"):
            DEPARTMENT.release(Release(params, set_rows=rows))
    with pytest.raises(FailedPrecondition):  # an empty set never releases, whatever minimum was logged
        DEPARTMENT.release(Release(QueryParams(), set_rows=0))


def test_the_peer_token_bound_comes_from_the_entry() -> None:
    logged = QueryParams(max_match_rows=50)
    assert peer_token_bound(logged) == 50
    assert peer_token_bound(QueryParams()) == DEFAULT_MAX_MATCH_ROWS  # logged before the bound was
    DEPARTMENT.release(Release(logged, peer_tokens=50))
    with pytest.raises(RemoteProtocolError, match="more than 50 peer tokens"):
        DEPARTMENT.release(Release(logged, peer_tokens=51))


def test_release_refuses_a_bad_row_limit() -> None:
    DEPARTMENT.release(Release(QueryParams(), limit=MAX_DISCLOSE_ROWS))
    with pytest.raises(InvalidInput):
        DEPARTMENT.release(Release(QueryParams(), limit=0))


def test_the_gateway_charges_released_rows() -> None:
    ledger = Ledger()
    _pipeline(ledger).release(Release(QueryParams(), rows=7, caller=ALICE))
    assert ledger.rows == 7


# --- order and configuration ---

def test_phases_run_their_checks_in_the_configured_order() -> None:
    names = [c.name for c in _pipeline().in_phase(Phase.ADMIT)]
    assert names.index("limit") < names.index("quotas")  # the quota lowers a limit already checked
    assert [c.name for c in _pipeline().in_phase(Phase.SIZES)] == ["min_set_size", "min_aggregate"]
    order: list[str] = []

    class Recorder(MinSetSize):
        def admit(self, request: Request) -> None:
            order.append(f"admit {self._minimum}")

    Safeguards([Recorder(1), Recorder(2)]).admit(_request("count"))
    assert order == ["admit 1", "admit 2"]


def test_config_loads_the_shipped_file_and_defaults(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[3] / "policies" / "safeguards.toml"
    config = SafeguardConfig.from_file(shipped)
    assert (config.min_set_size, config.max_match_rows) == (100, 5_000_000)
    assert config.quotas["supervisor"] == Quota(500, 5000)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert SafeguardConfig.from_file(empty) == SafeguardConfig()


@pytest.mark.parametrize("text, words", [
    ("min_set_size = 0\n", "min_set_size"),
    ("max_match_rows = -5\n", "max_match_rows"),
    ("min_set_size = 'ten'\n", "min_set_size"),
    ("[quotas.supervisor]\nqueries_per_day = -1\ndisclosed_rows_per_day = 5\n", "queries_per_day"),
    ("[quotas.supervisor]\nqueries_per_day = 1\n", "disclosed_rows_per_day"),
    ("min_sets_size = 10\n", "min_sets_size"),
], ids=["zero-min-set", "negative-bound", "not-int", "negative-quota", "missing-quota-key", "unknown-key"])
def test_bad_config_values_are_refused_naming_the_key(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "safeguards.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        SafeguardConfig.from_file(path)
    assert words in str(err.value) and "safeguards.toml" in str(err.value)
