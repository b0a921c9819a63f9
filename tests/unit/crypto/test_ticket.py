"""Ticket claims: strict parsing, and the checks verify_ticket makes before any proof."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.crypto.checkpoint import Checkpoint, VerifierKey, sign_checkpoint
from fedgate.crypto.merkle import RFC6962_SHA256, CompactRange, consistency_proof, inclusion_proof
from fedgate.crypto.ticket import (
    StaleBase,
    Ticket,
    TicketClaims,
    TicketRefused,
    sign_claims,
    verify_ticket,
)
from fedgate.core.errors import MalformedProof

ORIGIN = "fedgate.test/audit"
KEY = Ed25519PrivateKey.generate()
VKEY = VerifierKey(ORIGIN, KEY.public_key())
QID = "0123456789abcdef0123456789abcdef"


def claims(**kw: object) -> TicketClaims:
    base = dict(audience="hrss", query_id=QID, entry_index=3, entry_sha256=bytes(32), expires_at=2_000_000_000,
                issued_at=1000)
    return TicketClaims(**{**base, **kw})  # type: ignore[arg-type]


def test_claims_round_trip() -> None:
    c = claims()
    assert TicketClaims.from_text(c.to_text()) == c


@pytest.mark.parametrize("text", [
    "",
    "fedgate-ticket/v2\nhrss\n" + QID + "\n3\n" + "00" * 32 + "\n1\n",
    "fedgate-ticket/v1\nhrss\n" + QID + "\n+3\n" + "00" * 32 + "\n1\n",
    "fedgate-ticket/v1\nhrss\n" + QID + "\n03\n" + "00" * 32 + "\n1\n",
    "fedgate-ticket/v1\nHRSS\n" + QID + "\n3\n" + "00" * 32 + "\n1\n",
    "fedgate-ticket/v1\nhrss\n" + QID.upper() + "\n3\n" + "00" * 32 + "\n1\n",
    "fedgate-ticket/v1\nhrss\n" + QID + "\n3\n" + "00" * 31 + "\n1\n",
    "fedgate-ticket/v1\nhrss\n" + QID + "\n3\n" + "00" * 32 + "\n1\nextra\n",
], ids=["empty", "version", "plus-sign", "leading-zero", "upper-audience", "upper-qid", "short-hash", "extra-line"])
def test_malformed_claims_are_rejected(text: str) -> None:
    with pytest.raises(MalformedProof):
        TicketClaims.from_text(text)


def _log(entries: list[bytes]) -> tuple[list[bytes], str]:
    leaves = [RFC6962_SHA256.hash_leaf(e) for e in entries]
    tree = CompactRange(RFC6962_SHA256)
    tree.extend(leaves)
    return leaves, sign_checkpoint(Checkpoint(ORIGIN, len(leaves), tree.root()), ORIGIN, KEY)


def _ticket(entries: list[bytes], index: int, base: int = 0, now_plus: int = 60) -> Ticket:
    leaves, note = _log(entries)
    c = claims(entry_index=index, entry_sha256=hashlib.sha256(entries[index]).digest(), expires_at=1000 + now_plus)
    return Ticket(sign_claims(c, ORIGIN, KEY), entries[index], note, tuple(inclusion_proof(leaves, index, len(leaves))),
                  base, tuple(consistency_proof(leaves, base, len(leaves))) if base else ())


ENTRIES = [b"entry %d" % i for i in range(9)]


def test_valid_ticket_then_consistent_successor() -> None:
    first = verify_ticket(_ticket(ENTRIES[:5], 4), audience="hrss", now=1000, vkey=VKEY, origin=ORIGIN, last_seen=None)
    second = verify_ticket(_ticket(ENTRIES, 8, base=5), audience="hrss", now=1000, vkey=VKEY, origin=ORIGIN,
                           last_seen=first.checkpoint)
    assert second.checkpoint.size == 9


def test_refusals() -> None:
    ok = _ticket(ENTRIES[:5], 4)
    with pytest.raises(TicketRefused, match="for department 'hrss', not 'samr'"):
        verify_ticket(ok, audience="samr", now=1000, vkey=VKEY, origin=ORIGIN, last_seen=None)
    with pytest.raises(TicketRefused, match="expired"):
        verify_ticket(ok, audience="hrss", now=1060, vkey=VKEY, origin=ORIGIN, last_seen=None)
    other = VerifierKey(ORIGIN, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(TicketRefused, match="signature"):
        verify_ticket(ok, audience="hrss", now=1000, vkey=other, origin=ORIGIN, last_seen=None)
    first = verify_ticket(_ticket(ENTRIES[:5], 4), audience="hrss", now=1000, vkey=VKEY, origin=ORIGIN,
                          last_seen=None).checkpoint
    with pytest.raises(StaleBase):
        verify_ticket(_ticket(ENTRIES, 8, base=3), audience="hrss", now=1000, vkey=VKEY, origin=ORIGIN,
                      last_seen=first)
    forked = [b"forged"] + ENTRIES[1:]
    with pytest.raises(TicketRefused, match="history was rewritten"):
        verify_ticket(_ticket(forked, 8, base=5), audience="hrss", now=1000, vkey=VKEY, origin=ORIGIN,
                      last_seen=first)
