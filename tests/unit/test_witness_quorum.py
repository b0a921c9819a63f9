"""`audit verify` with pinned witnesses: a quorum must have cosigned past the newest query entry."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.client.audit_verify import LogTampered, verify_log
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.core.errors import FedgateError
from fedgate.crypto.checkpoint import Checkpoint, VerifierKey, sign_checkpoint
from fedgate.crypto.cosignature import cosign
from fedgate.crypto.merkle import RFC6962_SHA256, CompactRange
from fedgate.gateway.audit_store import with_cosignatures
from fedgate.server.witness_key import Witness, witness_name

ORIGIN = "fedgate.local/audit"
LOG = Ed25519PrivateKey.generate()
VKEY = VerifierKey(ORIGIN, LOG.public_key())
HRSS, SAMR = (Witness(witness_name(d), Ed25519PrivateKey.generate()) for d in ("hrss", "samr"))
PINNED = [HRSS.public, SAMR.public]


def _entry(status: str) -> bytes:
    return AuditEntry(utc_now(), "spiffe://fedgate/supervisor/a/b", "supervisor", "query.count", "/m", "allow",
                      status).canonical()


def _log(statuses: list[str]) -> tuple[list[tuple[int, bytes]], dict[int, str]]:
    tree = CompactRange(RFC6962_SHA256)
    entries, notes = [], {}
    for i, status in enumerate(statuses):
        body = _entry(status)
        tree.append(RFC6962_SHA256.hash_leaf(body))
        entries.append((i, body))
        notes[i + 1] = sign_checkpoint(Checkpoint(ORIGIN, i + 1, tree.root()), ORIGIN, LOG)
    return entries, notes


def _cosign(notes: dict[int, str], size: int, *witnesses: Witness) -> None:
    body = Checkpoint(ORIGIN, size, _root(notes[size])).to_text()
    notes[size] = with_cosignatures(notes[size], [w.cosign(body, 1_700_000_000) for w in witnesses])


def _root(note: str) -> bytes:
    from fedgate.crypto.checkpoint import verify_checkpoint
    return verify_checkpoint(note, ORIGIN, LOG.public_key()).root_hash


def _verify(entries: list[tuple[int, bytes]], notes: dict[int, str], quorum: int):  # type: ignore[no-untyped-def]
    return verify_log(entries, notes, notes[len(entries)], VKEY, witnesses=PINNED, quorum=quorum)


def test_quorum_counts_witnesses_past_the_newest_query_entry() -> None:
    # 0 STARTED (hrss), 1 OK, 2 STARTED (samr), 3 OK, 4 an officer's read: no ticket, never cosigned.
    entries, notes = _log(["STARTED", "OK", "STARTED", "OK", "OK"])
    _cosign(notes, 1, HRSS)
    _cosign(notes, 3, SAMR)
    assert _verify(entries, notes, 1).witnessed_by == (SAMR.name,)
    with pytest.raises(LogTampered, match="missing cosignatures") as err:
        _verify(entries, notes, 2)  # hrss saw only the checkpoint before entry 2
    assert err.value.index == 2
    assert "fedgate-witness/hrss" in str(err.value)
    _cosign(notes, 4, HRSS)
    assert _verify(entries, notes, 2).witnessed_by == (HRSS.name, SAMR.name)


def test_an_unwitnessed_query_entry_fails_and_a_log_without_queries_needs_none() -> None:
    entries, notes = _log(["STARTED", "OK", "STARTED"])
    _cosign(notes, 1, HRSS, SAMR)
    with pytest.raises(LogTampered, match="missing cosignatures"):
        _verify(entries, notes, 1)
    entries, notes = _log(["OK", "OK"])
    assert _verify(entries, notes, 2).witnessed_by == ()


def test_a_cosignature_for_another_tree_at_its_size_is_a_split_view() -> None:
    entries, notes = _log(["STARTED", "OK"])
    _, other_notes = _log(["STARTED", "ABORTED"])  # another tree of the same size
    _cosign(other_notes, 2, HRSS)
    moved = other_notes[2].split("\n\n", 1)[1].split("\n")[1]  # hrss's line on the other tree
    notes[2] = with_cosignatures(notes[2], [moved])
    with pytest.raises(LogTampered, match="split view at size 2"):
        _verify(entries, notes, 0)


def test_a_quorum_larger_than_the_pinned_keys_is_refused() -> None:
    entries, notes = _log(["OK"])
    with pytest.raises(FedgateError, match="quorum of 3"):
        _verify(entries, notes, 3)


def test_cosign_line_is_what_the_witness_key_signs() -> None:
    line = cosign("o\n1\n" + "A" * 43 + "=\n", HRSS.name, HRSS.key, 5)
    assert line.startswith("\u2014 fedgate-witness/hrss ")
