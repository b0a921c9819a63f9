"""A department's signed decision on one logged request: approve or deny, until when.

An approval is a C2SP signed note by one of the department's approvers (an
Ed25519 key whose verifier key the department lists in its adapter
configuration)::

    fedgate-approval/v1
    <log origin>
    <query id>
    <entry index>
    <hex SHA-256 of the canonical audit entry>
    <department>
    approve | deny
    <expiry, Unix seconds>

It binds the decision to exactly one logged entry of one log, so it cannot be
moved to another request, another log, or a re-logged copy of the same
request. Sans-I/O like ``checkpoint.py``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.core.errors import MalformedProof, VerificationError
from fedgate.crypto.checkpoint import VerifierKey, open_note, sign_note, split_note
from fedgate.crypto.ticket import DECIMAL, DEPARTMENT_CODE, QUERY_ID

__all__ = ["APPROVE", "DENY", "ApprovalStatement", "open_approval", "sign_approval", "signer_of"]

APPROVAL_TAG: Final = "fedgate-approval/v1"
APPROVE: Final = "approve"
DENY: Final = "deny"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ApprovalStatement:
    """What an approver signs: the decision on one logged entry, valid until `expires_at`."""

    origin: str
    query_id: str
    entry_index: int
    entry_sha256: str   # hex
    department: str
    decision: str       # approve | deny
    expires_at: int     # Unix seconds

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedProof("approval origin is empty or spans lines")
        if not QUERY_ID.match(self.query_id):
            raise MalformedProof("approval query id is not 32 lower-case hex digits")
        if self.entry_index < 0 or self.expires_at < 0:
            raise MalformedProof("approval entry index and expiry must be non-negative")
        if not _DIGEST.match(self.entry_sha256):
            raise MalformedProof("approval entry hash is not 64 lower-case hex digits")
        if not DEPARTMENT_CODE.match(self.department):
            raise MalformedProof("approval department is not a department code")
        if self.decision not in (APPROVE, DENY):
            raise MalformedProof("approval decision is neither approve nor deny")

    def binds(self, origin: str, query_id: str, entry_index: int, entry: bytes, department: str) -> bool:
        """Whether this is a decision on exactly that entry (its canonical bytes) of that log, for that department."""
        return ((self.origin, self.query_id, self.entry_index, self.department) == (origin, query_id, entry_index,
                                                                                   department)
                and self.entry_sha256 == hashlib.sha256(entry).hexdigest())

    def to_text(self) -> str:
        return (f"{APPROVAL_TAG}\n{self.origin}\n{self.query_id}\n{self.entry_index}\n{self.entry_sha256}\n"
                f"{self.department}\n{self.decision}\n{self.expires_at}\n")

    @classmethod
    def from_text(cls, text: str) -> ApprovalStatement:
        lines = text.split("\n")
        if len(lines) != 9 or lines[0] != APPROVAL_TAG or lines[8] != "":
            raise MalformedProof(f"not a {APPROVAL_TAG} note")
        _, origin, query_id, index, digest, department, decision, expires, _ = lines
        if not (DECIMAL.match(index) and DECIMAL.match(expires)):
            raise MalformedProof("approval index or expiry is not a decimal number")
        return cls(origin, query_id, int(index), digest, department, decision, int(expires))


def sign_approval(statement: ApprovalStatement, approver: str, key: Ed25519PrivateKey) -> str:
    """The signed note of `statement` by the approver named `approver`."""
    return sign_note(statement.to_text(), approver, key)


def signer_of(note: str) -> str:
    """The name on the note's first signature line (unverified: only to pick the key that must verify it)."""
    _, signatures = split_note(note)
    if not signatures:
        raise MalformedProof("the approval carries no signature")
    return signatures[0][0]


def open_approval(note: str, approvers: Iterable[VerifierKey]) -> tuple[str, ApprovalStatement]:
    """The approver's name and the statement, once a signature by one of `approvers` verifies.

    VerificationError when no listed approver signed it (a forged or foreign approval).
    """
    name = signer_of(note)
    for key in approvers:
        if key.name == name:
            return name, ApprovalStatement.from_text(open_note(note, key.name, key.public_key))
    raise VerificationError(f"the approval is signed by '{name[:64]}', who is not one of the department's "
                            "approvers")
