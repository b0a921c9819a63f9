"""The client's side of approvals: held requests as a department reads them, and signing a decision."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import RemoteCallFailed
from fedgate.crypto.approval import ApprovalStatement, sign_approval
from fedgate.protos.fedgate.v1 import approvals_pb2
from fedgate.query.audit_params import decode
from fedgate.server.interceptors import COLLECT_KEY, NONCES_KEY, QUERY_ID_KEY

__all__ = ["COLLECT_KEY", "NONCES_KEY", "QUERY_ID_KEY", "Collect", "Decision", "HeldForApproval", "HeldRequest",
           "Need", "held_summary"]


@dataclass(frozen=True)
class Collect:
    """Collecting a held request: its query id and the filter nonces its pending reply gave."""

    query_id: str
    nonces: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((COLLECT_KEY, self.query_id),) + (((NONCES_KEY, self.nonces),) if self.nonces else ())


class HeldForApproval(RemoteCallFailed):
    """The gateway logged the request and holds it for its departments' approval."""

    def __init__(self, code: str, details: str, query_id: str, nonces: str) -> None:
        super().__init__(code, details)
        self.query_id = query_id
        self.nonces = nonces


@dataclass(frozen=True)
class Need:
    department: str
    rule: str
    approvers: int
    missing: int


@dataclass(frozen=True)
class Decision:
    department: str
    approver: str
    decision: str
    reason: str
    decided_at: int


@dataclass(frozen=True)
class HeldRequest:
    """A request held for approval, with the logged entry an approval binds."""

    query_id: str
    entry_index: int
    entry_bytes: bytes
    entry: AuditEntry
    state: str
    created_at: int
    expires_at: int
    needs: tuple[Need, ...]
    decisions: tuple[Decision, ...]
    log_origin: str

    @classmethod
    def from_proto(cls, msg: approvals_pb2.HeldRequest) -> HeldRequest:
        return cls(msg.query_id, msg.entry_index, msg.entry, AuditEntry.from_canonical(msg.entry), msg.state,
                   msg.created_at, msg.expires_at,
                   tuple(Need(n.department, n.rule, n.approvers, n.missing) for n in msg.needs),
                   tuple(Decision(d.department, d.approver, d.decision, d.reason, d.decided_at)
                         for d in msg.decisions), msg.log_origin)

    def sign(self, department: str, decision: str, approver: str, key: Ed25519PrivateKey, now: int,
             valid_s: int) -> str:
        """This approver's signed decision on exactly this logged entry, valid until the request expires at most."""
        statement = ApprovalStatement(self.log_origin, self.query_id, self.entry_index,
                                      hashlib.sha256(self.entry_bytes).hexdigest(), department, decision,
                                      min(self.expires_at, now + valid_s))
        return sign_approval(statement, approver, key)


def minute_utc(t: int) -> str:
    """A Unix time to the minute, UTC, as approvals are shown."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


def held_summary(h: HeldRequest, department: str) -> dict[str, Any]:
    """What an approver inspects: who asks, why, and what of this department's data the request uses."""
    e = h.entry
    params = decode(dict(e.params))
    own = f"{department}."
    forms = sorted(f"{ref.dataset}.{ref.field}:{form.form}" for ref, form in params.forms.items()
                   if ref.dataset.startswith(own))
    sides = {}
    for ref, side in params.sides.items():
        if ref.dataset.startswith(own):
            sides[ref.suffix] = {"key": side.key_field, "values": list(side.value_fields),
                                 "filter": side.filter.redacted if side.filter else ""}
    return {
        "query_id": h.query_id, "state": h.state, "audit_index": h.entry_index, "asked": minute_utc(h.created_at),
        "expires": minute_utc(h.expires_at), "supervisor": e.subject, "purpose": e.purpose, "case_number": e.case_number,
        "kind": e.action.removeprefix("query."), "datasets": list(e.datasets), "fields": forms, "sides": sides,
        "limit": params.limit, "min_set_size": params.min_set_size,
        "noisy": params.noise_epsilon_micro is not None, "rule": e.rule,
        "needs": [{"department": n.department, "rule": n.rule, "approvers": n.approvers, "missing": n.missing}
                  for n in h.needs],
        "decisions": [{"department": d.department, "approver": d.approver, "decision": d.decision,
                       "reason": d.reason, "at": minute_utc(d.decided_at)} for d in h.decisions],
    }
