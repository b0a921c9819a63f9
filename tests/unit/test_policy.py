"""The default Casbin policy, decision by decision, and the loader's guard rails."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from fedgate.core.classification import default_levels, policies_dir
from fedgate.core.errors import ConfigError
from fedgate.gateway.policy import ACTIONS, Policy

LEVELS = ("L1", "L2", "L3", "L4", "*")
SUBJECTS = {
    "supervisor": ("supervisor/dcb/alice", "dcb"),
    "officer": ("officer/audit/bob", "audit"),
    "department": ("dept/hrss", "hrss"),
    "gateway": ("gateway", ""),
    "stranger": ("contractor/x/y", "x"),
}
ALL = set(LEVELS)
# What the default policy allows: role -> action -> levels. Everything else is denied.
EXPECTED: dict[str, dict[str, set[str]]] = {
    "supervisor": {
        "list": ALL, "count": ALL, "sum": ALL, "compare": ALL, "match": ALL,
        "filter": {"L1", "L2", "L3"},
        "disclose.plain": {"L1", "L2"},
        "disclose.masked": {"L1", "L2", "L3"},
    },
    "officer": {"list": ALL, "audit.read": ALL, "policy.reload": ALL},
    "department": {"register": ALL, "list": ALL, "audit.read.own": ALL, "approval.decide": ALL},
    "gateway": {},
    "stranger": {},
}
CASES = [(role, act, lvl) for role in SUBJECTS for act in sorted(ACTIONS) for lvl in LEVELS]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_dir(policies_dir(), default_levels())


@pytest.mark.parametrize("role, action, level", CASES, ids=[f"{r}-{a}-{lv}" for r, a, lv in CASES])
def test_default_policy_decision(policy: Policy, role: str, action: str, level: str) -> None:
    subject, domain = SUBJECTS[role]
    decision = policy.decide(subject, domain, "hrss.pensions.name", action, level)
    expected = level in EXPECTED[role].get(action, set())
    assert decision.allowed is expected, decision.rule
    if expected:
        assert decision.rule.startswith("p, ") and action in decision.rule
    else:
        assert "denied by default" in decision.rule


def test_l4_fields_never_leave_in_any_disclosure_form(policy: Policy) -> None:
    from fedgate.core.identity import Identity, Role

    alice = Identity(Role.SUPERVISOR, "dcb", "alice")
    assert policy.disclosure_form(alice, "hrss.pensions.resident_id", "L4")[0] == "never"
    assert policy.disclosure_form(alice, "hrss.pensions.name", "L3")[0] == "masked"
    assert policy.disclosure_form(alice, "hrss.pensions.last_paid_on", "L2")[0] == "plaintext"


def test_denials_are_not_logged_with_their_arguments(policy: Policy, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        policy.decide("supervisor/dcb/alice", "dcb", "hrss.pensions.resident_id", "disclose.plain", "L4")
    assert not [r for r in caplog.records if r.name.startswith("casbin")]


def _copy(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    shutil.copytree(policies_dir(), d, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return d


@pytest.mark.parametrize("line, words", [
    ("p, supervisor, *, *, disclose.everything, L1", "unknown action 'disclose.everything'"),
    ("p, supervisor, *, *, disclose.plain, L9", "unknown level 'L9'"),
    ("p, supervisor, *, *, disclose.plain, L4, deny", "deny rules do not exist"),
    ("x, supervisor, *, *, list, *", "lines start with p or g"),
], ids=["action", "level", "deny", "kind"])
def test_bad_policy_lines_name_the_line(tmp_path: Path, line: str, words: str) -> None:
    d = _copy(tmp_path)
    path = d / "policy.csv"
    text = path.read_text() + line + "\n"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        Policy.from_dir(d, default_levels())
    assert f"line {len(text.splitlines())}" in str(err.value) and words in str(err.value)


def test_reload_swaps_rules_and_a_broken_edit_keeps_the_old_ones(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    policy = Policy.from_dir(d, default_levels())
    ask = ("supervisor/dcb/alice", "dcb", "hrss.pensions.name", "disclose.plain", "L3")
    assert not policy.decide(*ask).allowed
    path = d / "policy.csv"
    path.write_text(path.read_text() + "p, supervisor, dcb, hrss.pensions.*, disclose.plain, L3\n")
    policy.reload()
    assert policy.decide(*ask).rule == "p, supervisor, dcb, hrss.pensions.*, disclose.plain, L3"
    # Only in domain dcb: another agency's supervisor is still refused.
    assert not policy.decide("supervisor/nj/eve", "nj", *ask[2:]).allowed
    path.write_text(path.read_text() + "p, supervisor, *, *, fly, L1\n")
    with pytest.raises(ConfigError):
        policy.reload()
    assert policy.decide(*ask).allowed


def test_masks_by_kind_type_and_level(tmp_path: Path) -> None:
    from fedgate.core.classification import Levels

    levels = default_levels()
    assert levels.mask_for("resident_id", "string", "L3").apply("11010519491231002X") == "110105********002X"
    assert levels.mask_for(None, "string", "L3").apply("张三丰") == "张**"
    assert levels.mask_for(None, "int", "L3").apply("350000") == "3*****"
    d = _copy(tmp_path)
    text = (d / "levels.toml").read_text().replace('int = "keep:1:0"           # amounts', 'int = "keep:0:2"  # x')
    (d / "levels.toml").write_text(text)
    custom = Levels.from_file(d / "levels.toml")
    assert custom.mask_for(None, "int", "L3").apply("350000") == "****00"
    assert custom.mask_for(None, "int", "L2").apply("350000") == "3*****"
    (d / "levels.toml").write_text(text.replace('"keep:0:2"', '"first-two"'))
    with pytest.raises(ConfigError, match="masks.int"):
        Levels.from_file(d / "levels.toml")
