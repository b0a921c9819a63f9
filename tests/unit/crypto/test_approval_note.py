"""The approval note: what an approver signs binds exactly one entry of one log, and nothing else verifies."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from fedgate.core.errors import MalformedProof, VerificationError
from fedgate.crypto.approval import ApprovalStatement, open_approval, sign_approval
from fedgate.crypto.checkpoint import VerifierKey

KEY = Ed25519PrivateKey.generate()
ZHANG = VerifierKey("hrss-zhang", KEY.public_key())

statements = st.builds(
    ApprovalStatement,
    origin=st.sampled_from(["fedgate.example/log", "other.example/log"]),
    query_id=st.text("0123456789abcdef", min_size=32, max_size=32),
    entry_index=st.integers(0, 2**40),
    entry_sha256=st.text("0123456789abcdef", min_size=64, max_size=64),
    department=st.sampled_from(["hrss", "samr", "civil"]),
    decision=st.sampled_from(["approve", "deny"]),
    expires_at=st.integers(0, 2**40),
)


@given(statements)
def test_a_signed_statement_opens_as_itself(s: ApprovalStatement) -> None:
    assert open_approval(sign_approval(s, "hrss-zhang", KEY), [ZHANG]) == ("hrss-zhang", s)


@given(statements, st.integers(0, 200))
def test_any_changed_character_of_the_body_is_refused(s: ApprovalStatement, at: int) -> None:
    note = sign_approval(s, "hrss-zhang", KEY)
    body_end = note.index("\n\n")
    i = at % body_end
    swapped = "1" if note[i] != "1" else "2"
    with pytest.raises((VerificationError, MalformedProof)):
        open_approval(note[:i] + swapped + note[i + 1:], [ZHANG])


def test_a_note_by_another_key_under_an_approvers_name_is_refused() -> None:
    s = ApprovalStatement("o", "a" * 32, 1, "b" * 64, "hrss", "approve", 10)
    with pytest.raises(VerificationError):
        open_approval(sign_approval(s, "hrss-zhang", Ed25519PrivateKey.generate()), [ZHANG])
    with pytest.raises(VerificationError, match="not one of the department's approvers"):
        open_approval(sign_approval(s, "mallory", KEY), [ZHANG])


@pytest.mark.parametrize("field,value", [("query_id", "A" * 32), ("entry_sha256", "x" * 64),
                                         ("department", "Hrss"), ("decision", "maybe"), ("entry_index", -1)])
def test_malformed_statements_are_refused(field: str, value: object) -> None:
    fields = {"origin": "o", "query_id": "a" * 32, "entry_index": 1, "entry_sha256": "b" * 64,
              "department": "hrss", "decision": "approve", "expires_at": 10, field: value}
    with pytest.raises(MalformedProof):
        ApprovalStatement(**fields)  # type: ignore[arg-type]
