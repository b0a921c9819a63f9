"""Tickets are bounded by their issue time as well as their expiry, and a refusal for time names the clocks."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.crypto.checkpoint import Checkpoint, VerifierKey, sign_checkpoint
from fedgate.crypto.merkle import RFC6962_SHA256, CompactRange, inclusion_proof
from fedgate.crypto.ticket import Ticket, TicketClaims, TicketRefused, sign_claims, verify_ticket
from fedgate.core.errors import MalformedProof

ORIGIN = "fedgate.test/audit"
KEY = Ed25519PrivateKey.generate()
VKEY = VerifierKey(ORIGIN, KEY.public_key())
QID = "0123456789abcdef0123456789abcdef"
ENTRIES = [b"entry %d" % i for i in range(5)]
ISSUED = 1_800_000_000  # by the gateway's clock
TTL = 60


def _ticket(issued: int = ISSUED, ttl: int = TTL) -> Ticket:
    leaves = [RFC6962_SHA256.hash_leaf(e) for e in ENTRIES]
    tree = CompactRange(RFC6962_SHA256)
    tree.extend(leaves)
    note = sign_checkpoint(Checkpoint(ORIGIN, len(leaves), tree.root()), ORIGIN, KEY)
    claims = TicketClaims("hrss", QID, 4, hashlib.sha256(ENTRIES[4]).digest(), issued + ttl, issued)
    return Ticket(sign_claims(claims, ORIGIN, KEY), ENTRIES[4], note, tuple(inclusion_proof(leaves, 4, 5)), 0, ())


def _verify(now: int, skew_s: int = 30) -> None:
    verify_ticket(_ticket(), audience="hrss", now=now, vkey=VKEY, origin=ORIGIN, last_seen=None, skew_s=skew_s)


def test_the_issue_time_is_signed_and_round_trips() -> None:
    claims = TicketClaims("hrss", QID, 4, bytes(32), ISSUED + TTL, ISSUED)
    assert TicketClaims.from_text(claims.to_text()) == claims
    assert f"\n{ISSUED}\n{ISSUED + TTL}\n" in claims.to_text()
    with pytest.raises(MalformedProof, match="expires before it was issued"):
        TicketClaims("hrss", QID, 4, bytes(32), ISSUED, ISSUED + 1)


@pytest.mark.parametrize("adapter_offset", [-30, -5, 0, 5, 59])
def test_a_ticket_is_accepted_within_the_skew_and_its_lifetime(adapter_offset: int) -> None:
    _verify(ISSUED + adapter_offset)


@pytest.mark.parametrize("behind", [31, 120, 3600])
def test_an_adapter_whose_clock_is_behind_refuses_and_names_the_clocks(behind: int) -> None:
    # Before: accepted for as long as the adapter lagged (only the expiry was checked).
    with pytest.raises(TicketRefused) as err:
        _verify(ISSUED - behind)
    message = str(err.value)
    assert f"is {behind} s in this adapter's future" in message
    assert "check the clocks of gateway and adapter (allowed skew 30 s)" in message
    assert "2027-01-15 08:00:00 UTC" in message  # the issue time, readable


@pytest.mark.parametrize("ahead", [60, 61, 3600])
def test_an_adapter_whose_clock_is_ahead_refuses_and_names_the_clocks(ahead: int) -> None:
    # Before: "ticket expired N s ago", no word of clocks.
    with pytest.raises(TicketRefused) as err:
        _verify(ISSUED + ahead)
    message = str(err.value)
    assert "ticket expired" in message and f"{ahead} s in this adapter's past" in message
    assert f"lifetime of {TTL} s" in message and "check the clocks of gateway and adapter" in message


def test_the_skew_is_configurable() -> None:
    _verify(ISSUED - 100, skew_s=120)
    with pytest.raises(TicketRefused, match="allowed skew 5 s"):
        _verify(ISSUED - 10, skew_s=5)
