"""Access decisions: Casbin over roles, domains, datasets/fields and classification levels.

The model and rules are data (`policies/model.conf`, `policies/policy.csv`);
this module loads and validates them, answers `decide(...)` with the rule that
allowed the request (for the audit entry), and swaps in a new rule set on
reload only once it has loaded cleanly, so a broken edit never leaves the
gateway without a policy.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import casbin
from casbin.util import key_match

from fedgate.core.classification import Levels, form_rank
from fedgate.core.errors import ConfigError, PolicyDenied
from fedgate.core.identity import Identity

ACTIONS = frozenset({
    "register", "list", "count", "filter", "match", "sum", "compare", "compare.weights",
    "disclose.plain", "disclose.masked", "audit.read", "audit.read.own", "policy.reload", "approval.decide",
})
ANY_LEVEL = "*"
# A compare.weights rule's last column: the weights it allows, "a:b" in lowest terms, separated by spaces.
WEIGHTS_ACTION = "compare.weights"
_WEIGHT = re.compile(r"^([1-9][0-9]{0,18}):([1-9][0-9]{0,18})$")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # the allowing policy line, or why nothing allowed it

    def require(self) -> str:
        """Return the rule, or raise PolicyDenied naming what was refused."""
        if not self.allowed:
            raise PolicyDenied(self.rule)
        return self.rule


def subject_of(identity: Identity) -> str:
    """The Casbin subject for a certificate identity, e.g. 'supervisor/dcb/alice'."""
    return identity.spiffe_id.split("://", 1)[1].split("/", 1)[1]


@dataclass(frozen=True)
class RuleSet:
    enforcer: casbin.SyncedEnforcer
    digest: str  # SHA-256 of model and policy text, for the reload audit entry
    rules: int


def _validate(policy_path: Path, levels: Levels) -> int:
    """Check every line of policy.csv before Casbin sees it; ConfigError names the line."""
    count = 0
    try:
        text = policy_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(policy_path), f"cannot read policy: {exc.strerror}") from None
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        where = f"line {lineno}"
        if cells[0] == "g":
            if len(cells) != 3:
                raise ConfigError(str(policy_path), f"{where}: a g line is: g, subject pattern, role")
            continue
        if cells[0] != "p":
            raise ConfigError(str(policy_path), f"{where}: lines start with p or g, not {cells[0]!r}")
        if len(cells) != 6:
            raise ConfigError(str(policy_path), f"{where}: a p line is: p, role, domain, object, action, level "
                                                "(deny rules do not exist: fedgate denies by default)")
        _, _, _, obj, act, lvl = cells
        if act not in ACTIONS:
            raise ConfigError(str(policy_path), f"{where}: unknown action {act!r} "
                                                f"(allowed: {', '.join(sorted(ACTIONS))})")
        if act == WEIGHTS_ACTION:
            _check_weights_rule(policy_path, where, obj, lvl)
        elif lvl != ANY_LEVEL and levels.get(lvl) is None:
            raise ConfigError(str(policy_path), f"{where}: unknown level {lvl!r} "
                                                f"(allowed: {', '.join(levels.names())} or *)")
        count += 1
    return count


def _check_weights_rule(policy_path: Path, where: str, obj: str, cell: str) -> None:
    """A compare.weights rule names a field pair and lists its weights: no wildcard weights."""
    if obj.count(">") != 1:
        raise ConfigError(str(policy_path), f"{where}: a {WEIGHTS_ACTION} rule's object is a field pair "
                                            "'dept.dataset.left_field>dept.dataset.right_field'")
    weights = cell.split()
    if not weights:
        raise ConfigError(str(policy_path), f"{where}: a {WEIGHTS_ACTION} rule lists the weights it allows, "
                                            "e.g. '1:1 5:6' (a wildcard is not allowed)")
    for w in weights:
        m = _WEIGHT.match(w)
        if m is None or math.gcd(int(m[1]), int(m[2])) != 1:
            raise ConfigError(str(policy_path), f"{where}: weights {w!r} are not positive integers a:b in "
                                                "lowest terms (e.g. 5:6, not 10:12)")


def weights_listed(requested: str, allowed: str) -> bool:
    """The matcher's test for a compare.weights rule: the requested "a:b" is one of the rule's listed weights."""
    return requested in allowed.split()


def load_rules(model_path: Path, policy_path: Path, levels: Levels) -> RuleSet:
    rules = _validate(policy_path, levels)
    try:
        enforcer = casbin.SyncedEnforcer(str(model_path), str(policy_path))
    except Exception as exc:  # pycasbin raises plain exceptions for syntax errors
        raise ConfigError(str(model_path), f"cannot load the Casbin model and policy: {exc}") from None
    # Subjects are SPIFFE paths; g lines map patterns such as supervisor/* onto roles.
    enforcer.add_named_matching_func("g", key_match)
    enforcer.add_function("weightsListed", weights_listed)
    enforcer.build_role_links()
    # pycasbin logs every denied request with its arguments when logging is on:
    # CoreEnforcer disables its loggers unless asked otherwise; make sure of it.
    for name in ("casbin", "casbin.enforcer", "casbin.policy", "casbin.role"):
        logging.getLogger(name).disabled = True
    digest = hashlib.sha256(model_path.read_bytes() + b"\0" + policy_path.read_bytes()).hexdigest()
    return RuleSet(enforcer, digest, rules)


class Policy:
    """The live rule set; `decide` is safe to call from any thread."""

    def __init__(self, model_path: Path, policy_path: Path, levels: Levels) -> None:
        self.model_path = model_path
        self.policy_path = policy_path
        self.levels = levels
        self._lock = threading.Lock()
        self._rules = load_rules(model_path, policy_path, levels)

    @classmethod
    def from_dir(cls, directory: Path, levels: Levels) -> Policy:
        return cls(directory / "model.conf", directory / "policy.csv", levels)

    @property
    def digest(self) -> str:
        return self._rules.digest

    @property
    def rule_count(self) -> int:
        return self._rules.rules

    def reload(self) -> RuleSet:
        """Load the files again; the old rules stay in force if the new ones do not load."""
        rules = load_rules(self.model_path, self.policy_path, self.levels)
        with self._lock:
            self._rules = rules
        return rules

    def decide(self, subject: str, domain: str, obj: str, action: str, level: str = ANY_LEVEL) -> Decision:
        allowed, rule = self._rules.enforcer.enforce_ex(subject, domain, obj, action, level)
        if allowed:
            return Decision(True, "p, " + ", ".join(rule))
        return Decision(False, f"no rule allows {subject} to {action} {obj}"
                               + (f" at level {level}" if level != ANY_LEVEL else "") + " (denied by default)")

    def decide_for(self, identity: Identity, obj: str, action: str, level: str = ANY_LEVEL) -> Decision:
        return self.decide(subject_of(identity), identity.org, obj, action, level)

    def disclosure_form(self, identity: Identity, obj: str, level: str) -> tuple[str, Decision]:
        """The most a field may show this caller: 'plaintext', 'masked', or 'never' (with the deciding rule).

        The level's ceiling in levels.toml caps what any rule grants: departments
        enforce the same ceiling, so asking for more would only be refused there.
        """
        lv = self.levels.get(level)
        ceiling = lv.ceiling if lv else "aggregate"
        for action, form in (("disclose.plain", "plaintext"), ("disclose.masked", "masked")):
            if form_rank(form) > form_rank(ceiling):
                continue
            d = self.decide_for(identity, obj, action, level)
            if d.allowed:
                return form, d
        return "never", Decision(False, f"no rule allows {subject_of(identity)} to see {obj} "
                                        f"(level {level}) in plaintext or masked: it leaves its department "
                                        "only inside a count, sum or flag")
