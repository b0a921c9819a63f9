"""A department's own rules: criteria, the strictest verdict, the request as they see it, and their JSON."""

from __future__ import annotations

import pytest

from fedgate.core.audit_entry import AuditEntry
from fedgate.core.datasets import DatasetDecl, FieldDecl
from fedgate.core.errors import InvalidInput
from fedgate.query.audit_params import FieldForm, FieldRef, QueryParams
from fedgate.query.department_rules import (APPROVE, REFUSE, DepartmentRule, DepartmentRules, RuleRequest,
                                            request_of)

DECL = DatasetDecl("hrss", "pensions", (FieldDecl.build("resident_id", "string", "L4", "resident_id"),
                                        FieldDecl.build("name", "string", "L3"),
                                        FieldDecl.build("district", "string", "L2")))
DECLS = {DECL.qualified_name: DECL}
VKEYS = ("a+00000000+AAAA", "b+00000000+AAAA")


def _rule(name: str, effect: str, approvers: int = 1, aggregate: str = "any", **criteria: list[str]) -> DepartmentRule:
    return DepartmentRule.build(name, effect, criteria, aggregate, approvers)


def _entry(action: str, datasets: tuple[str, ...], subject: str = "spiffe://fedgate/supervisor/dcb/alice") -> AuditEntry:
    return AuditEntry("t", subject, "supervisor", action, "/m", "allow", "STARTED", datasets=datasets)


def test_the_strictest_matching_rule_wins() -> None:
    rules = DepartmentRules((_rule("plain-ok", APPROVE, forms=["plaintext"]),
                             _rule("l4-two", APPROVE, 2, levels=["L4"]),
                             _rule("no-tax", REFUSE, agencies=["tax"])), VKEYS)
    req = RuleRequest("match", "dcb", frozenset({"pensions"}), frozenset({"L4", "L3"}), frozenset({"plaintext"}),
                      False)
    assert rules.verdict(req).effect == APPROVE and rules.verdict(req).approvers == 2
    assert rules.verdict(req).rules == ("plain-ok", "l4-two")
    tax = RuleRequest("count", "tax", frozenset({"pensions"}), frozenset(), frozenset({"aggregate"}), True)
    assert rules.verdict(tax).effect == REFUSE and rules.verdict(tax).rules == ("no-tax",)
    other = RuleRequest("count", "dcb", frozenset({"pensions"}), frozenset({"L2"}), frozenset({"aggregate"}), True)
    assert rules.verdict(other).effect == "allow" and rules.verdict(None).effect == "allow"


def test_exact_and_noisy_aggregates_are_told_apart_and_a_disclosure_is_neither() -> None:
    rules = DepartmentRules((_rule("exact-needs-approval", APPROVE, aggregate="exact"),), VKEYS[:1])
    base = dict(kind="count", agency="dcb", datasets=frozenset({"pensions"}), levels=frozenset(),
                forms=frozenset({"aggregate"}))
    assert rules.verdict(RuleRequest(**base, noisy=False)).effect == APPROVE  # type: ignore[arg-type]
    assert rules.verdict(RuleRequest(**base, noisy=True)).effect == "allow"  # type: ignore[arg-type]
    assert rules.verdict(RuleRequest(**base, noisy=None)).effect == "allow"  # type: ignore[arg-type]


def test_the_request_a_department_sees_is_its_own_part() -> None:
    params = QueryParams()
    params.side("hrss.pensions", "left").key_field = "resident_id"
    params.side("civil.deaths", "right").key_field = "resident_id"
    params.forms[FieldRef("hrss.pensions", "name")] = FieldForm("masked", "L3")
    entry = _entry("query.match", ("hrss.pensions", "civil.deaths"))
    req = request_of(entry, params, "hrss", DECLS)
    assert req == RuleRequest("match", "dcb", frozenset({"pensions"}), frozenset({"L4", "L3"}),
                              frozenset({"masked"}), False)
    civil = request_of(entry, params, "civil", {})
    assert civil is not None and civil.forms == frozenset({"aggregate"}) and civil.datasets == frozenset({"deaths"})
    assert request_of(entry, params, "samr", {}) is None


def test_rules_survive_their_json_and_bad_rules_are_refused() -> None:
    rules = DepartmentRules((_rule("l4-two", APPROVE, 2, levels=["L4"]), _rule("no-sums", REFUSE, kinds=["sum"])),
                            VKEYS, 3600)
    assert DepartmentRules.from_json(rules.to_json()) == rules
    with pytest.raises(InvalidInput, match="approvers"):
        DepartmentRules((_rule("l4-three", APPROVE, 3),), VKEYS)
    with pytest.raises(InvalidInput):
        _rule("x", "allow")
    with pytest.raises(InvalidInput):
        _rule("x", REFUSE, kinds=["delete"])
    with pytest.raises(InvalidInput):
        DepartmentRules.from_json('{"v": 2}')
