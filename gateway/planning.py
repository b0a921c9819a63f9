"""Planning a query: policy and the ADMIT safeguards turn a request into a typed plan and its logged parameters.

Nothing here asks a department anything. Each step refuses or adds to the
request's record (rules, fields) and to its typed audit parameters
(`fedgate.query.audit_params`), which go into the pre-access entry.
"""

from __future__ import annotations

import contextlib
import math
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

from fedgate.core import certified
from fedgate.core.datasets import DatasetDecl, FieldDecl, FieldGrant, FieldType
from fedgate.core.encryptors import MAX_VALUE_FIELDS
from fedgate.core.errors import FailedPrecondition, InvalidInput, LocalProtocolError, RemoteProtocolError
from fedgate.core.filters import Filter, fields_of, parse_checked, redacted_text, to_text
from fedgate.gateway.budget import Privacy
from fedgate.query.noise import from_micro, to_micro
from fedgate.gateway.homomorphic import checked_key
from fedgate.gateway.matching import SidePlan
from fedgate.core.errors import PolicyDenied
from fedgate.gateway.policy import Policy
from fedgate.gateway.registry import Registry
from fedgate.gateway.registry_store import Department
from fedgate.core.identity import Identity
from fedgate.server.interceptors import RequestRecord
from fedgate.query.audit_params import (
    FieldForm,
    FieldRef,
    LoggedFilter,
    QueryParams,
    SideRef,
    filter_digest,
    paillier_key_digest,
    seal_filter,
)
from fedgate.core.officer_seal import SealKey
from fedgate.query import protocols
from fedgate.query.kinds.base import FilterPlan, Target
from fedgate.query.safeguards import QuotaLedger, Request, Safeguards
from fedgate.core.supervisor_keys import key_statement

MAX_TEXT = 256
# The audit entry's sizes of a noisy answer: the ε it spent and its agency's ε left on the dataset (micro-ε).
DP_EPSILON_SIZE = "dp_epsilon_micro"
DP_LEFT_SIZE = "dp_epsilon_left_micro"
_CASE_NUMBER = re.compile(r"^[\w\-/()（）〔〕\[\]#.]{1,64}$")


@dataclass(frozen=True)
class Purpose:
    """Why a supervisor asks: a stated purpose and a case number (督查事项编号), both required."""

    purpose: str
    case_number: str

    def __post_init__(self) -> None:
        if not self.purpose.strip() or len(self.purpose) > MAX_TEXT:
            raise InvalidInput(f"a purpose (1–{MAX_TEXT} characters) is required for every query")
        if not _CASE_NUMBER.match(self.case_number):
            raise InvalidInput("a case number (督查事项编号) of 1–64 letters, digits or -/()[]#. is required")


@dataclass(frozen=True)
class MatchSideQuery:
    dataset: str
    key_field: str
    filter: str = ""


@dataclass(frozen=True)
class MatchQuery:
    left: MatchSideQuery
    right: MatchSideQuery
    mode: str = protocols.DEFAULT
    disclose_fields: list[str] = field(default_factory=list)
    limit: int = 100


@dataclass(frozen=True)
class SumQuery:
    values: MatchSideQuery
    value_fields: list[str]
    other: MatchSideQuery
    paillier_key: bytes
    mode: str = protocols.DEFAULT
    key_signature: bytes = b""
    supervisor_certificate: str = ""


@dataclass(frozen=True)
class CompareQuery:
    left: MatchSideQuery
    left_value: str
    right: MatchSideQuery
    right_value: str
    paillier_key: bytes
    left_weight: int = 1
    right_weight: int = 1
    mode: str = protocols.DEFAULT
    disclose_fields: list[str] = field(default_factory=list)
    limit: int = 100
    key_signature: bytes = b""
    supervisor_certificate: str = ""


@dataclass(frozen=True)
class Decisions:
    """Everything that decides whether a query may run: the policy, the safeguard pipeline, the quota ledger
    it charges, and the CA that vouches for supervisors' keys; the security officers' key the exact
    filters are sealed to in the log (None: they are logged redacted only); and the DP policies with the
    privacy-budget ledger (None: every aggregate is exact)."""

    policy: Policy
    safeguards: Safeguards
    quotas: QuotaLedger
    ca_pem: bytes = b""
    officer_seal: SealKey | None = None
    privacy: Privacy | None = None


@contextlib.contextmanager
def logged_params(record: RequestRecord) -> Iterator[QueryParams]:
    """The typed parameters a plan fills; encoded into the record even on a refusal, so its entry shows them."""
    params = QueryParams()
    try:
        yield params
    finally:
        record.params.update(params.encode())


class Planner:
    """Policy and ADMIT-phase safeguards over a request; gives a plan or raises the refusal."""

    def __init__(self, decisions: Decisions, registry: Registry) -> None:
        self._decisions = decisions
        self._policy = decisions.policy
        self._registry = registry

    @property
    def policy(self) -> Policy:
        return self._policy

    def admit(self, caller: Identity, params: QueryParams, kind: str, limit: int | None = None,
              grants: list[FieldGrant] | tuple[FieldGrant, ...] = (),
              aggregate_levels: tuple[str, ...] = (), on_sets: bool | None = None) -> Request:
        """The ADMIT phase of the safeguard pipeline: row limit, quotas, the values the entry binds."""
        request = Request(caller, kind, params, limit, bool(grants), aggregate_levels, on_sets=on_sets)
        self._decisions.safeguards.admit(request)
        return request

    def noise(self, caller: Identity, record: RequestRecord, datasets: list[str],
              aggregate_levels: tuple[str, ...]) -> float:
        """ADMIT, after the safeguards: the ε an aggregate over `datasets` is answered with (0.0: exactly), its
        agency's budget on each charged first (QuotaExceeded when used up); the entry records ε spent and left."""
        privacy = self._decisions.privacy
        if privacy is None:
            return 0.0
        if record.collect_query_id:
            # An approved request was charged when it was first logged, before it waited: collecting it
            # spends nothing more (the collect then checks the ε is the one logged).
            epsilon = privacy.epsilon(datasets, aggregate_levels)
            return 0.0 if epsilon is None else from_micro(to_micro(epsilon))
        charge = privacy.charge(caller.org, datasets, aggregate_levels)
        if charge is None:
            return 0.0
        record.result_sizes[DP_EPSILON_SIZE] = charge.epsilon_micro
        record.result_sizes[DP_LEFT_SIZE] = charge.left_micro
        return from_micro(charge.epsilon_micro)

    def noisy(self, datasets: list[str], aggregate_levels: tuple[str, ...]) -> bool:
        """Whether an aggregate over `datasets` touching these levels would be answered with noise (no charge)."""
        privacy = self._decisions.privacy
        return privacy is not None and bool(privacy.noisy_policies(datasets, aggregate_levels))

    def steps(self, caller: Identity, record: RequestRecord, params: QueryParams, why: Purpose) -> Steps:
        """The planning steps of one one-dataset query, as its kind's recipe takes them."""
        return Steps(self, self._registry, caller, record, params, why)

    def matched_rows(self, caller: Identity, record: RequestRecord, params: QueryParams, kind: str,
                     decl: DatasetDecl, fields: list[str], limit: int,
                     aggregate_levels: tuple[str, ...] = ()) -> tuple[list[FieldGrant], int, Request]:
        """The matched left rows' fields to disclose, and the ADMIT safeguards (last of planning): the limit they
        leave and the admitted request (its `Safeguards.size_check` is the match's SIZES phase).

        ``aggregate_levels``: the levels of the fields the match's cardinality (or a comparison's pairs)
        reveals about, whose highest min_aggregate the matched rows (pairs) must reach."""
        grants = self.grants(caller, record, params, decl, fields)
        record.fields += [f"{decl.qualified_name}.{g.name}" for g in grants]
        admitted = self.admit(caller, params, kind, limit, grants, aggregate_levels)
        assert admitted.limit is not None  # a requested limit is always bound
        return grants, admitted.limit, admitted

    def filter(self, caller: Identity, record: RequestRecord, params: QueryParams, decl: DatasetDecl, text: str,
               role: str = "") -> tuple[Filter | None, FilterPlan]:
        """Parse, type-check and authorise the filter; log it without its values, and sealed to the officers.

        ``role`` (left/right) keeps a match's two sides apart when both are the same dataset.
        """
        where = parse_checked(text, decl.field_types)
        if where is None:
            return None, FilterPlan()
        for name in sorted(fields_of(where)):
            f = decl.field(name)
            assert f is not None  # check() refused unknown fields
            self._policy.decide_for(caller, f"{decl.qualified_name}.{name}", "filter", f.level).require()
        # A collected request reuses the nonce its pending reply gave the client, so the digest is the logged one.
        suffix = SideRef(decl.qualified_name, role).suffix
        canonical = to_text(where)
        nonce = record.filter_nonces.get(suffix) if record.collect_query_id else None
        nonce = nonce or secrets.token_bytes(16)
        record.filter_nonces[suffix] = nonce
        seal = self._decisions.officer_seal
        sealed = seal_filter(seal, nonce, canonical) if seal is not None else ""
        params.side(decl.qualified_name, role).filter = LoggedFilter(redacted_text(where),
                                                                     filter_digest(nonce, canonical), sealed)
        return where, FilterPlan(canonical, nonce)

    def grants(self, caller: Identity, record: RequestRecord, params: QueryParams, decl: DatasetDecl,
               fields: list[str]) -> list[FieldGrant]:
        """The form each requested field may leave in, or PolicyDenied for one that may not leave."""
        if len(set(fields)) != len(fields):
            raise InvalidInput("name each field to disclose once")
        grants, rules = [], [record.rule] if record.rule else []
        for name in fields:
            f = decl.field(name)
            if f is None:
                raise InvalidInput(f"dataset '{decl.qualified_name}' has no field '{name}'")
            form, decision = self._policy.disclosure_form(caller, f"{decl.qualified_name}.{name}", f.level)
            if form == "never":
                raise PolicyDenied(decision.rule)
            grants.append(FieldGrant(name, f.level, form))
            rules.append(decision.rule)
            params.forms[FieldRef(decl.qualified_name, name)] = FieldForm(form, f.level)
        record.rule = " | ".join(dict.fromkeys(rules))
        return grants

    async def match_sides(self, caller: Identity, record: RequestRecord, params: QueryParams, action: str,
                          left_q: MatchSideQuery, right_q: MatchSideQuery, mode: str,
                          why: Purpose) -> tuple[list[tuple[Department, DatasetDecl]], SidePlan, SidePlan,
                                                 tuple[str, ...]]:
        """Check and authorise both sides' keys and filters; the plans each adapter gets, and the levels of
        the fields the filters name (what the answer's aggregates reveal about, besides the keys)."""
        protocol = protocols.get(mode)
        record.action = action
        record.datasets = [left_q.dataset, right_q.dataset]
        record.purpose, record.case_number = why.purpose, why.case_number
        params.mode = mode
        sides = []
        for name, side in (("left", left_q), ("right", right_q)):
            department, decl = await self._registry.locate(side.dataset)
            key = decl.field(side.key_field)
            if key is None:
                raise InvalidInput(f"{name} dataset '{side.dataset}' has no field '{side.key_field}'")
            if key.key is None:
                raise InvalidInput(f"{name} field '{side.dataset}.{side.key_field}' is not a key field "
                                   "(declared with an identifier kind): it cannot be matched on")
            add_rule(record, self._policy.decide_for(caller, f"{side.dataset}.{side.key_field}", "match",
                                                     key.level).require())
            params.side(side.dataset, name).key_field = side.key_field
            sides.append((department, decl, key))
        (ldept, ldecl, lkey), (rdept, rdecl, rkey) = sides
        assert lkey.key is not None and rkey.key is not None  # refused above otherwise
        if lkey.key != rkey.key:
            raise InvalidInput(f"the key fields hold different identifier kinds ({lkey.key} and "
                               f"{rkey.key}): they cannot match")
        record.fields = [f"{left_q.dataset}.{left_q.key_field}", f"{right_q.dataset}.{right_q.key_field}"]
        lwhere, lfilter = self.filter(caller, record, params, ldecl, left_q.filter, "left")
        rwhere, rfilter = self.filter(caller, record, params, rdecl, right_q.filter, "right")
        filter_levels = tuple(f.level for decl, where in ((ldecl, lwhere), (rdecl, rwhere)) if where is not None
                              for name in sorted(fields_of(where)) if (f := decl.field(name)) is not None)
        if protocol.needs_peer_key and rdept.matching_key is None:
            raise FailedPrecondition(f"department '{rdept.code}' registered no matching key; restart its adapter")
        # The row count `fedgate datasets` publishes: the total a side's progress is shown against.
        left = SidePlan(ldept.code, ldept.endpoint, ldecl.name, left_q.key_field, lfilter.canonical, lfilter.nonce,
                        dataset_rows=ldecl.row_count)
        right = SidePlan(rdept.code, rdept.endpoint, rdecl.name, right_q.key_field, rfilter.canonical,
                         rfilter.nonce, dataset_rows=rdecl.row_count)
        return [(ldept, ldecl), (rdept, rdecl)], left, right, filter_levels

    def weights(self, caller: Identity, record: RequestRecord, left: str, right: str,
                weights: tuple[int, int]) -> tuple[int, int]:
        """The comparison weights, if a rule allows them for this field pair (`left`, `right`: qualified fields).

        Weights come from policy, not the caller: a caller free to choose them could bisect a:b over one pair
        and recover the other side's value. They are reduced to lowest terms (2:2 compares as 1:1)."""
        a, b = weights
        if not (0 < a < 1 << 63 and 0 < b < 1 << 63):
            raise InvalidInput("comparison weights must be positive 64-bit integers (e.g. 5 and 6 for x > 1.2·y)")
        g = math.gcd(a, b)
        a, b = a // g, b // g
        add_rule(record, self._policy.decide_for(caller, comparison_object(left, right), "compare.weights",
                                                 f"{a}:{b}").require())
        return a, b

    def paillier_key(self, caller: Identity, params: QueryParams, public_key: bytes, signature: bytes,
                     certificate: str) -> int:
        """The supervisor's key modulus, checked and vouched for by the caller; the log binds it by digest."""
        try:
            n = checked_key(public_key)
        except (RemoteProtocolError, LocalProtocolError) as exc:
            raise InvalidInput(f"the supervisor's Paillier public key is refused: {exc}") from None
        certified.verify(key_statement(caller.spiffe_id, public_key), signature, certificate,
                         self._decisions.ca_pem, caller, "the Paillier key")
        params.paillier_key_sha256 = paillier_key_digest(public_key)
        params.paillier_key_bits = n.bit_length()
        return n

    def value_fields(self, caller: Identity, record: RequestRecord, params: QueryParams, decl: DatasetDecl,
                     names: list[str], action: str, key_field: str, role: str) -> list[FieldDecl]:
        """Authorise integer fields to sum or compare, by their levels."""
        if not names or len(names) > MAX_VALUE_FIELDS or len(set(names)) != len(names):
            raise InvalidInput(f"name 1 to {MAX_VALUE_FIELDS} distinct integer fields to {action}")
        fields = []
        for name in names:
            f = decl.field(name)
            if f is None:
                raise InvalidInput(f"dataset '{decl.qualified_name}' has no field '{name}'")
            if f.type is not FieldType.INT or name == key_field:
                raise InvalidInput(f"field '{decl.qualified_name}.{name}' is a {f.type.value} field: only "
                                   f"integer fields (amounts in fen, counts) can be {action}ed")
            add_rule(record, self._policy.decide_for(caller, f"{decl.qualified_name}.{name}", action,
                                                     f.level).require())
            record.fields.append(f"{decl.qualified_name}.{name}")
            fields.append(f)
        params.side(decl.qualified_name, role).value_fields = tuple(names)
        return fields


@dataclass(frozen=True)
class Steps:
    """`fedgate.query.kinds.base.PlanningSteps` for one request: the Planner's steps bound to its record."""

    planner: Planner
    registry: Registry
    caller: Identity
    record: RequestRecord
    params: QueryParams
    why: Purpose

    async def locate(self, action: str, policy_action: str, dataset: str) -> tuple[Target, DatasetDecl]:
        """Name the request and decide it on its dataset."""
        record = self.record
        record.action = action
        record.datasets = [dataset]
        record.purpose, record.case_number = self.why.purpose, self.why.case_number
        department, decl = await self.registry.locate(dataset)
        record.rule = self.planner.policy.decide_for(self.caller, dataset, policy_action).require()
        return Target(department.code, department.endpoint, decl.name), decl

    def filter(self, decl: DatasetDecl, text: str) -> tuple[Filter | None, FilterPlan]:
        return self.planner.filter(self.caller, self.record, self.params, decl, text)

    def grants(self, decl: DatasetDecl, fields: list[str]) -> tuple[FieldGrant, ...]:
        grants = self.planner.grants(self.caller, self.record, self.params, decl, fields)
        self.record.fields = [f"{decl.qualified_name}.{g.name}" for g in grants]
        return tuple(grants)

    def admit(self, kind: str, limit: int | None = None, grants: tuple[FieldGrant, ...] = (),
              aggregate_levels: tuple[str, ...] = (), on_sets: bool | None = None) -> Request:
        return self.planner.admit(self.caller, self.params, kind, limit, grants, aggregate_levels, on_sets)

    def noise(self, decl: DatasetDecl, aggregate_levels: tuple[str, ...]) -> float:
        return self.planner.noise(self.caller, self.record, [decl.qualified_name], aggregate_levels)


def comparison_object(left: str, right: str) -> str:
    """The policy object of a comparison's field pair, as `compare.weights` rules name it: "left>right"."""
    return f"{left}>{right}"


def add_rule(record: RequestRecord, rule: str) -> None:
    """Record every distinct rule a request was allowed by, in the order they were applied."""
    rules = [r for r in record.rule.split(" | ") if r] if record.rule else []
    record.rule = " | ".join(dict.fromkeys([*rules, rule]))
