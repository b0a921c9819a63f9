"""A department's own rules over requests for its data: which need its approval, which it refuses.

A department writes them in its adapter configuration (``[[rules]]``) and
publishes them to the gateway with its registration, as canonical JSON. Both
sides evaluate them with this module against the same logged request: the
gateway, to hold a request for approval (or refuse it) before any department
is asked; the adapter, authoritatively, before it serves a ticket. The
gateway's central policy still applies first; a department rule can only make
a request stricter (refuse over approve over allow).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fedgate.core.audit_entry import AuditEntry
from fedgate.core.datasets import DatasetDecl
from fedgate.core.errors import InvalidInput
from fedgate.core.identity import Identity
from fedgate.query.audit_params import QueryParams

APPROVE = "approve"
REFUSE = "refuse"
ALLOW = "allow"
EFFECTS = (APPROVE, REFUSE)
KINDS = ("count", "disclose", "match", "sum", "compare")
FORMS = ("plaintext", "masked", "aggregate")
AGGREGATES = ("any", "exact", "noisy")
DEFAULT_APPROVAL_TTL_S = 72 * 3600
MAX_APPROVERS = 5
CRITERIA = ("datasets", "levels", "forms", "kinds", "agencies")
RULES_VERSION = 1


@dataclass(frozen=True)
class RuleRequest:
    """What a department's rules look at in one logged request, restricted to the department's own data."""

    kind: str                    # count | disclose | match | sum | compare
    agency: str                  # the asking supervisor's organisation
    datasets: frozenset[str]     # the department's datasets it touches (unqualified names)
    levels: frozenset[str]       # the levels of the department's fields it uses (keys, values, disclosed)
    forms: frozenset[str]        # plaintext | masked (disclosed fields), aggregate (nothing of it disclosed)
    noisy: bool | None           # an aggregate answered with noise, exactly, or no aggregate (None)


@dataclass(frozen=True)
class DepartmentRule:
    """One rule: its criteria (an empty one matches anything) and what it requires when all match."""

    name: str
    effect: str                                   # approve | refuse
    datasets: frozenset[str] = frozenset()
    levels: frozenset[str] = frozenset()
    forms: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    agencies: frozenset[str] = frozenset()
    aggregate: str = "any"                        # any | exact | noisy
    approvers: int = 1                            # distinct approvers an approve rule needs (2: two-person)

    def __post_init__(self) -> None:
        where = f"department rule '{self.name}'"
        if not self.name or len(self.name) > 64 or any(c in self.name for c in "\n\r,|"):
            raise InvalidInput("a department rule needs a name of 1-64 characters without commas, bars or newlines")
        if self.effect not in EFFECTS:
            raise InvalidInput(f"{where}: effect must be one of {', '.join(EFFECTS)}, not {self.effect!r}")
        if not set(self.kinds) <= set(KINDS):
            raise InvalidInput(f"{where}: kinds are among {', '.join(KINDS)}")
        if not set(self.forms) <= set(FORMS):
            raise InvalidInput(f"{where}: forms are among {', '.join(FORMS)}")
        if self.aggregate not in AGGREGATES:
            raise InvalidInput(f"{where}: aggregate is one of {', '.join(AGGREGATES)}")
        if not 1 <= self.approvers <= MAX_APPROVERS:
            raise InvalidInput(f"{where}: approvers is between 1 and {MAX_APPROVERS}")

    def matches(self, req: RuleRequest) -> bool:
        if self.datasets and not self.datasets & req.datasets:
            return False
        if self.levels and not self.levels & req.levels:
            return False
        if self.forms and not self.forms & req.forms:
            return False
        if self.kinds and req.kind not in self.kinds:
            return False
        if self.agencies and req.agency not in self.agencies:
            return False
        if self.aggregate != "any" and req.noisy is not (self.aggregate == "noisy"):
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "effect": self.effect, "datasets": sorted(self.datasets),
                "levels": sorted(self.levels), "forms": sorted(self.forms), "kinds": sorted(self.kinds),
                "agencies": sorted(self.agencies), "aggregate": self.aggregate, "approvers": self.approvers}

    @classmethod
    def build(cls, name: str, effect: str, criteria: Mapping[str, Iterable[str]], aggregate: str = "any",
              approvers: int = 1) -> DepartmentRule:
        """A rule from its criteria by name (datasets, levels, forms, kinds, agencies)."""
        unknown = set(criteria) - set(CRITERIA)
        if unknown:
            raise InvalidInput(f"department rule '{name}': unknown criterion {sorted(unknown)[0]!r}")
        sets = {k: frozenset(str(v) for v in criteria.get(k, ())) for k in CRITERIA}
        return cls(name, effect, sets["datasets"], sets["levels"], sets["forms"], sets["kinds"], sets["agencies"],
                   aggregate, approvers)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DepartmentRule:
        return cls.build(str(obj["name"]), str(obj["effect"]), {k: obj.get(k, ()) for k in CRITERIA},
                         str(obj.get("aggregate", "any")), int(obj.get("approvers", 1)))


@dataclass(frozen=True)
class Verdict:
    """What a department's rules say about one request: allow, approve (by `approvers`) or refuse."""

    effect: str
    rules: tuple[str, ...] = ()
    approvers: int = 0

    def describe(self, department: str) -> str:
        """The rule text the audit entry gets, beside the central policy's rule."""
        names = ", ".join(f"'{n}'" for n in self.rules)
        if self.effect == REFUSE:
            return f"department {department} rule {names} refuses"
        if self.effect == APPROVE:
            return f"department {department} rule {names} needs {self.approvers} approval(s)"
        return ""


@dataclass(frozen=True)
class DepartmentRules:
    """A department's rules, its approvers' verifier keys, and how long a request may wait for approval."""

    rules: tuple[DepartmentRule, ...] = ()
    approvers: tuple[str, ...] = ()     # C2SP verifier keys (name+id+key) of the people who may approve
    approval_ttl_s: int = DEFAULT_APPROVAL_TTL_S

    def __post_init__(self) -> None:
        names = [r.name for r in self.rules]
        for name in names:
            if names.count(name) > 1:
                raise InvalidInput(f"department rule '{name}' is declared twice")
        needed = max((r.approvers for r in self.rules if r.effect == APPROVE), default=0)
        if needed > len(self.approvers):
            raise InvalidInput(f"a department rule needs {needed} approvers but only {len(self.approvers)} "
                               "approver key(s) are listed under [approvals] keys")
        if self.approval_ttl_s < 60:
            raise InvalidInput("approvals must be allowed at least a minute before they expire")

    def verdict(self, req: RuleRequest | None) -> Verdict:
        """The strictest effect of the rules matching `req` (None: the request touches none of our data)."""
        if req is None:
            return Verdict(ALLOW)
        matched = [r for r in self.rules if r.matches(req)]
        refusing = tuple(r.name for r in matched if r.effect == REFUSE)
        if refusing:
            return Verdict(REFUSE, refusing)
        approving = [r for r in matched if r.effect == APPROVE]
        if approving:
            return Verdict(APPROVE, tuple(r.name for r in approving), max(r.approvers for r in approving))
        return Verdict(ALLOW)

    def to_json(self) -> str:
        """Canonical JSON, as registration carries it and the registry keeps it."""
        return json.dumps({"v": RULES_VERSION, "rules": [r.to_json() for r in self.rules],
                           "approvers": list(self.approvers), "approval_ttl_s": self.approval_ttl_s},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> DepartmentRules:
        """Parse registered rules; InvalidInput names what is wrong."""
        if not text:
            return cls()
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict) or obj.get("v") != RULES_VERSION:
                raise ValueError("not version 1 department rules")
            return cls(tuple(DepartmentRule.from_json(r) for r in obj["rules"]),
                       tuple(str(k) for k in obj["approvers"]), int(obj["approval_ttl_s"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"the department rules are malformed ({exc})"[:300]) from None


NO_RULES = DepartmentRules()


def request_of(entry: AuditEntry, params: QueryParams, department: str,
               decls: Mapping[str, DatasetDecl]) -> RuleRequest | None:
    """The part of a logged query that concerns `department`'s data, as its rules see it (None: none).

    `decls` holds the department's own datasets by qualified name; a field they do not declare is ignored
    (the ticket check refuses it anyway).
    """
    prefix = f"{department}."
    own: set[str] = {d for d in entry.datasets if d.startswith(prefix)}
    levels: set[str] = set()
    forms: set[str] = set()

    def level_of(dataset: str, name: str) -> None:
        decl = decls.get(dataset)
        f = decl.field(name) if decl is not None else None
        if f is not None:
            levels.add(f.level)

    for ref, side in params.sides.items():
        if not ref.dataset.startswith(prefix):
            continue
        own.add(ref.dataset)
        for name in (side.key_field, *side.value_fields):
            if name:
                level_of(ref.dataset, name)
    for fref, form in params.forms.items():
        if fref.dataset.startswith(prefix):
            own.add(fref.dataset)
            forms.add(form.form)
            level_of(fref.dataset, fref.field)
    for qualified in entry.fields:  # fields the request named (e.g. a count's filter fields)
        dataset, _, name = qualified.rpartition(".")
        if dataset in own:
            level_of(dataset, name)
    if not own:
        return None
    kind = entry.action.removeprefix("query.")
    noisy = None if kind == "disclose" else params.noise_epsilon_micro is not None
    return RuleRequest(kind, _agency(entry.subject), frozenset(d[len(prefix):] for d in own),
                       frozenset(levels), frozenset(forms or {"aggregate"}), noisy)


def _agency(subject: str) -> str:
    try:
        return Identity.parse(subject).org
    except ValueError:  # an entry's subject is always a verified identity; "" matches no agency rule
        return ""


def departments_of(entry: AuditEntry, params: QueryParams) -> list[str]:
    """The departments whose data a logged query touches, in order of first mention."""
    names: Iterable[str] = (*entry.datasets, *(r.dataset for r in params.sides),
                            *(f.dataset for f in params.forms))
    return list(dict.fromkeys(n.partition(".")[0] for n in names if "." in n))


__all__ = ["ALLOW", "APPROVE", "REFUSE", "DepartmentRule", "DepartmentRules", "RuleRequest", "Verdict",
           "NO_RULES", "departments_of", "request_of"]
