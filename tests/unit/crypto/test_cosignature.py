"""C2SP tlog-cosignature v1: format, key IDs, and what a pinned witness's line proves."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from fedgate.core.errors import LocalProtocolError, MalformedProof, VerificationError
from fedgate.crypto.checkpoint import Checkpoint, open_note, sign_checkpoint
from fedgate.crypto.cosignature import (WitnessKey, cosign, encode_witness_key, parse_cosignature_line,
                                        parse_witness_key, verified_cosigners)

ORIGIN = "fedgate.example/audit"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
W_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
W_NAME = "fedgate-witness/hrss"
WITNESS = WitnessKey(W_NAME, W_KEY.public_key())


def _note(size: int = 7, root: bytes = b"\x11" * 32) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), ORIGIN, LOG_KEY)


def _cosigned(note: str, *lines: str) -> str:
    return note + "".join(line + "\n" for line in lines)


def test_signed_message_and_layout_follow_the_spec() -> None:
    body = Checkpoint(ORIGIN, 7, b"\x11" * 32).to_text()
    line = cosign(body, W_NAME, W_KEY, 1679315147)
    assert line.startswith(f"\u2014 {W_NAME} ")
    blob = base64.b64decode(line.split(" ")[2])
    raw = W_KEY.public_key().public_bytes_raw()
    # key ID: SHA-256(name || 0x0A || 0x04 || key)[:4]; then the u64 big-endian timestamp; then the signature.
    assert blob[:4] == hashlib.sha256(W_NAME.encode() + b"\n\x04" + raw).digest()[:4]
    assert int.from_bytes(blob[4:12], "big") == 1679315147
    W_KEY.public_key().verify(blob[12:], b"cosignature/v1\ntime 1679315147\n" + body.encode())


def test_witness_vkey_round_trips_with_type_0x04() -> None:
    text = encode_witness_key(W_NAME, W_KEY.public_key())
    name, key_id, key = text.split("+", 2)
    assert base64.b64decode(key)[0] == 0x04
    parsed = parse_witness_key(text + "\n")
    assert parsed.name == W_NAME and parsed.key_id.hex() == key_id
    assert parsed.public_key.public_bytes_raw() == W_KEY.public_key().public_bytes_raw()


@pytest.mark.parametrize("text", [
    "no-plus-signs",
    "name+zzzzzzzz+AAAA",
    "name+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(),  # a note signer's key, not a witness's
    "name+00000000+" + base64.b64encode(b"\x04" + bytes(32)).decode(),  # key ID does not match
    "na me+00000000+" + base64.b64encode(b"\x04" + bytes(32)).decode(),
], ids=["not-three-parts", "bad-key-id", "type-0x01", "wrong-key-id", "space-in-name"])
def test_malformed_witness_keys_are_refused(text: str) -> None:
    with pytest.raises(MalformedProof):
        parse_witness_key(text)


def test_a_cosigned_note_still_opens_for_the_log_and_counts_its_witness() -> None:
    note = _note()
    body = open_note(note, ORIGIN, LOG_KEY.public_key())
    cosigned = _cosigned(note, cosign(body, W_NAME, W_KEY, 1000))
    assert open_note(cosigned, ORIGIN, LOG_KEY.public_key()) == body  # signed-note readers skip the line
    assert verified_cosigners(cosigned, [WITNESS]) == {W_NAME: 1000}


def test_lines_by_unpinned_witnesses_are_ignored() -> None:
    other = Ed25519PrivateKey.generate()
    note = _note()
    body = open_note(note, ORIGIN, LOG_KEY.public_key())
    cosigned = _cosigned(note, cosign(body, W_NAME, other, 5), cosign(body, "fedgate-witness/samr", other, 5))
    assert verified_cosigners(cosigned, [WITNESS]) == {}


def test_a_cosignature_moved_to_another_checkpoint_is_a_split_view() -> None:
    """A witness's line on size 7 with root A does not verify on size 7 with root B."""
    seen = _note(7, b"\x11" * 32)
    line = cosign(open_note(seen, ORIGIN, LOG_KEY.public_key()), W_NAME, W_KEY, 1000)
    rewritten = _cosigned(_note(7, b"\x22" * 32), line)
    with pytest.raises(VerificationError, match="cosigned a different checkpoint"):
        verified_cosigners(rewritten, [WITNESS])


@given(size=st.integers(0, 2**64 - 1), root=st.binary(min_size=32, max_size=32),
       timestamp=st.integers(0, 2**63 - 1), flip=st.integers(0, 72 * 8 - 1))
def test_any_single_bit_flip_in_the_cosignature_is_caught(size: int, root: bytes, timestamp: int, flip: int) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, size, root), ORIGIN, LOG_KEY)
    line = cosign(Checkpoint(ORIGIN, size, root).to_text(), W_NAME, W_KEY, timestamp)
    assert verified_cosigners(_cosigned(note, line), [WITNESS]) == {W_NAME: timestamp}
    name, blob = parse_cosignature_line(line)
    flip += 4 * 8  # leave the key ID alone: a changed ID is merely someone else's line, ignored
    bad = bytearray(blob)
    bad[flip // 8] ^= 1 << (flip % 8)
    tampered = f"\u2014 {name} {base64.b64encode(bytes(bad)).decode()}"
    with pytest.raises(VerificationError):
        verified_cosigners(_cosigned(note, tampered), [WITNESS])


@pytest.mark.parametrize("line", [
    "- fedgate-witness/hrss AAAA",
    "\u2014 fedgate-witness/hrss",
    "\u2014 fedgate-witness/hrss " + base64.b64encode(bytes(70)).decode(),
    "\u2014 fedgate-witness/hrss not*base64",
], ids=["no-em-dash", "no-signature", "wrong-length", "not-base64"])
def test_malformed_cosignature_lines_are_refused(line: str) -> None:
    with pytest.raises(MalformedProof):
        parse_cosignature_line(line)


def test_cosign_refuses_impossible_values() -> None:
    body = Checkpoint(ORIGIN, 1, bytes(32)).to_text()
    with pytest.raises(LocalProtocolError):
        cosign(body, W_NAME, W_KEY, -1)
    with pytest.raises(LocalProtocolError):
        cosign(body, W_NAME, W_KEY, 2**63)
    with pytest.raises(LocalProtocolError):
        cosign(body.rstrip("\n"), W_NAME, W_KEY, 1)
    with pytest.raises(LocalProtocolError):
        cosign(body, "with space", W_KEY, 1)
