"""C2SP tlog-checkpoint text and its C2SP signed-note Ed25519 signatures."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgate.crypto import checkpoint as cpmod
from fedgate.crypto.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    encode_verifier_key,
    parse_verifier_key,
    sign_checkpoint,
    verify_checkpoint,
)
from fedgate.core.errors import LocalProtocolError, MalformedProof, VerificationError

NAME = "fedgate.example/audit"
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test key 1").digest())
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test key 2").digest())
ROOT = hashlib.sha256(b"some root").digest()
CP = Checkpoint(NAME, 1234, ROOT)

# golang.org/x/mod/sumdb/note's documented example (note.go, note_test.go): an
# independent implementation's keys, text and signature. Ed25519 is
# deterministic, so signing the same text with the same seed must give the
# same note byte for byte.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def _go_private_key() -> Ed25519PrivateKey:
    # The base64 part holds 0x01 || seed and may itself contain "+".
    blob = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert blob[0] == 1
    return Ed25519PrivateKey.from_private_bytes(blob[1:])


def _signed_body(body: str, key: Ed25519PrivateKey = KEY, name: str = NAME) -> str:
    """A note over an arbitrary body, built here without the module's helpers."""
    pub = key.public_key().public_bytes_raw()
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4]
    sig = base64.b64encode(key_id + key.sign(body.encode())).decode()
    return f"{body}\n— {name} {sig}\n"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _non_canonical(b64: str) -> str:
    """Same bytes, but a padding bit set: b64decode accepts it, the spec's encoding is unique."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stripped = b64.rstrip("=")
    last = alphabet.index(stripped[-1])
    assert b64.endswith("=") and last & 1 == 0
    out = stripped[:-1] + alphabet[last | 1] + b64[len(stripped) :]
    assert base64.b64decode(out) == base64.b64decode(b64)
    return out


# --- interoperability with the Go reference ----------------------------------------


def test_go_verifier_key_round_trips() -> None:
    vk = parse_verifier_key(GO_VKEY)
    assert vk.name == "PeterNeumann"
    assert encode_verifier_key(vk.name, vk.public_key) == GO_VKEY
    assert encode_verifier_key("PeterNeumann", _go_private_key().public_key()) == GO_VKEY


def test_go_note_signs_and_opens_byte_for_byte() -> None:
    # Any note text, not only checkpoints: the public note helpers.
    assert cpmod.sign_note(GO_TEXT, "PeterNeumann", _go_private_key()) == GO_NOTE
    assert cpmod.open_note(GO_NOTE, "PeterNeumann", parse_verifier_key(GO_VKEY).public_key) == GO_TEXT


def test_note_text_may_contain_blank_lines() -> None:
    # signed-note: the text ends at the *last* blank line.
    text = "first\n\nafter a blank line\n"
    note = _signed_body(text)
    assert cpmod.sign_note(text, NAME, KEY) == note
    assert cpmod.open_note(note, NAME, KEY.public_key()) == text


def test_go_note_verifies_but_is_not_a_checkpoint() -> None:
    # MalformedProof, not VerificationError: the signature was fine, the body is prose.
    with pytest.raises(MalformedProof):
        verify_checkpoint(GO_NOTE, "PeterNeumann", parse_verifier_key(GO_VKEY).public_key)


# --- round trips --------------------------------------------------------------------


def test_body_text() -> None:
    assert CP.to_text() == f"{NAME}\n1234\n{_b64(ROOT)}\n"
    assert Checkpoint.from_text(CP.to_text()) == CP


def test_sign_and_verify() -> None:
    note = sign_checkpoint(CP, NAME, KEY)
    body, sig_line = note.split("\n\n")
    assert body + "\n" == CP.to_text()
    assert sig_line.startswith(f"\u2014 {NAME} ") and sig_line.endswith("\n")
    blob = base64.b64decode(sig_line.split(" ")[2])
    assert len(blob) == 4 + 64
    assert verify_checkpoint(note, NAME, KEY.public_key()) == CP
    assert verify_checkpoint(note.encode(), NAME, KEY.public_key(), origin=NAME) == CP


def test_empty_tree_and_extensions_round_trip() -> None:
    for cp in (
        Checkpoint("example.com/log", 0, hashlib.sha256(b"").digest()),
        Checkpoint("example.com/log", 2**64 - 1, ROOT, ("ext one", "ext two")),
    ):
        assert verify_checkpoint(sign_checkpoint(cp, NAME, KEY), NAME, KEY.public_key()) == cp


_line_chars = st.characters(blacklist_categories=("Cs", "Cc"))


@settings(max_examples=50, deadline=None)
@given(
    st.text(_line_chars, min_size=1, max_size=40),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(st.text(_line_chars, min_size=1, max_size=20), max_size=3).map(tuple),
)
def test_random_round_trip(origin: str, size: int, root: bytes, extensions: tuple[str, ...]) -> None:
    cp = Checkpoint(origin, size, root, extensions)
    assert Checkpoint.from_text(cp.to_text()) == cp
    assert verify_checkpoint(sign_checkpoint(cp, NAME, KEY), NAME, KEY.public_key()) == cp


def test_unknown_signatures_are_ignored() -> None:
    note = sign_checkpoint(CP, NAME, KEY)
    foreign = _signed_body(CP.to_text(), OTHER_KEY, "witness.example/w1").split("\n\n")[1]
    assert verify_checkpoint(note + foreign, NAME, KEY.public_key()) == CP
    assert verify_checkpoint(
        CP.to_text() + "\n" + foreign + note.split("\n\n")[1], NAME, KEY.public_key()
    ) == CP


# --- tampering: VerificationError, never a checkpoint ------------------------------


def _flip_blob_byte(note: str, i: int) -> str:
    body, sig_line = note.split("\n\n")
    dash, name, sig = sig_line.rstrip("\n").split(" ")
    blob = bytearray(base64.b64decode(sig))
    blob[i] ^= 0x01
    return f"{body}\n\n{dash} {name} {_b64(bytes(blob))}\n"


def _reject(note: str, name: str = NAME, key: Ed25519PrivateKey = KEY, **kw: str) -> None:
    with pytest.raises(VerificationError) as info:
        verify_checkpoint(note, name, key.public_key(), **kw)
    assert not isinstance(info.value, MalformedProof), info.value


def test_tampered_notes_are_rejected() -> None:
    note = sign_checkpoint(CP, NAME, KEY)
    other_root = _b64(hashlib.sha256(b"other root").digest())
    _reject(_flip_blob_byte(note, 10))  # a signature byte
    _reject(_flip_blob_byte(note, 67))  # the last signature byte
    _reject(_flip_blob_byte(note, 0))  # the key ID: now no trusted signature at all
    _reject(note, key=OTHER_KEY)  # wrong key
    _reject(note, name="fedgate.example/other")  # wrong name
    _reject(note.replace("\n1234\n", "\n1235\n"))  # edited size
    _reject(note.replace(_b64(ROOT), other_root))  # edited root
    _reject(note.replace(NAME + "\n", "evil.example/audit\n", 1))  # edited origin
    _reject(note, origin="fedgate.example/other")  # signed, but for another log


def test_any_bad_signature_by_the_trusted_key_rejects_the_note() -> None:
    good = sign_checkpoint(CP, NAME, KEY)
    bad_line = _flip_blob_byte(good, 20).split("\n\n")[1]
    _reject(good + bad_line)
    _reject(CP.to_text() + "\n" + bad_line + good.split("\n\n")[1])


def test_trusted_key_id_with_short_signature() -> None:
    good = sign_checkpoint(CP, NAME, KEY)
    body, sig_line = good.split("\n\n")
    blob = base64.b64decode(sig_line.split(" ")[2])
    _reject(f"{body}\n\n— {NAME} {_b64(blob[:40])}\n")


# --- malformed text: MalformedProof -------------------------------------------------


def test_malformed_notes() -> None:
    good = sign_checkpoint(CP, NAME, KEY)
    body, sig_line = good.split("\n\n")
    sig = sig_line.rstrip("\n").split(" ")[2]
    cases = {
        "no blank line": body + "\n" + sig_line,
        "no signature lines": body + "\n\n",
        "no final newline": good.rstrip("\n"),
        "hyphens for em dash": f"{body}\n\n-- {NAME} {sig}\n",
        "no space after dash": f"{body}\n\n\u2014{NAME} {sig}\n",
        "extra field": f"{body}\n\n\u2014 {NAME} {sig} x\n",
        "double space": f"{body}\n\n\u2014 {NAME}  {sig}\n",
        "name with plus": f"{body}\n\n\u2014 a+b {sig}\n",
        "empty name": f"{body}\n\n\u2014  {sig}\n",
        "bad base64": f"{body}\n\n\u2014 {NAME} {sig[:-2]}*=\n",
        "unpadded base64": f"{body}\n\n\u2014 {NAME} {sig.rstrip('=')}\n",
        "non-canonical base64": f"{body}\n\n\u2014 {NAME} {_non_canonical(sig)}\n",
        "blob of 4 bytes": f"{body}\n\n\u2014 {NAME} {_b64(b'abcd')}\n",
        "carriage return": good.replace("\n", "\r\n"),
        "tab in body": good.replace("\n1234\n", "\n1234\t\n"),
        "too many signatures": good + (f"\u2014 other.example {sig}\n" * MAX_SIGNATURES),
        "too large": "x" * (cpmod.MAX_NOTE_BYTES + 1) + "\n\n" + sig_line,
    }
    accepted_or_wrong = []
    for desc, note in cases.items():
        try:
            verify_checkpoint(note, NAME, KEY.public_key())
        except MalformedProof:
            continue
        except Exception as e:  # noqa: BLE001 - collected and reported below
            accepted_or_wrong.append(f"{desc}: {e!r}")
        else:
            accepted_or_wrong.append(f"{desc}: accepted")
    assert not accepted_or_wrong


def test_invalid_utf8_is_malformed() -> None:
    with pytest.raises(MalformedProof):
        verify_checkpoint(sign_checkpoint(CP, NAME, KEY).encode() + b"\xff\n", NAME, KEY.public_key())


BAD_BODIES = {
    "two lines": f"{NAME}\n1234\n",
    "no final newline": f"{NAME}\n1234\n{_b64(ROOT)}",
    "leading zero": f"{NAME}\n01234\n{_b64(ROOT)}\n",
    "plus sign": f"{NAME}\n+1234\n{_b64(ROOT)}\n",
    "space before size": f"{NAME}\n 1234\n{_b64(ROOT)}\n",
    "underscore": f"{NAME}\n1_234\n{_b64(ROOT)}\n",
    "non-ASCII digits": f"{NAME}\n\u0661\u0662\n{_b64(ROOT)}\n",
    "negative": f"{NAME}\n-1\n{_b64(ROOT)}\n",
    "size 2**64": f"{NAME}\n{2**64}\n{_b64(ROOT)}\n",
    "31-byte root": f"{NAME}\n1234\n{_b64(ROOT[:31])}\n",
    "hex root": f"{NAME}\n1234\n{ROOT.hex()}\n",
    "non-canonical root": f"{NAME}\n1234\n{_non_canonical(_b64(ROOT))}\n",
    "empty origin": f"\n1234\n{_b64(ROOT)}\n",
    "blank extension line": f"{NAME}\n1234\n{_b64(ROOT)}\n\nextension\n",
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_malformed_bodies(body: str) -> None:
    with pytest.raises(MalformedProof):
        Checkpoint.from_text(body)
    if body.endswith("\n") and not body.startswith("\n"):
        # Even correctly signed, the body must be refused as malformed.
        with pytest.raises(MalformedProof):
            verify_checkpoint(_signed_body(body), NAME, KEY.public_key())


# --- constructing and keys ----------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        ("a\tb", 1, ROOT, ()),
        ("a", -1, ROOT, ()),
        ("a", 2**64, ROOT, ()),
        ("a", True, ROOT, ()),
        ("a", 1, ROOT[:31], ()),
        ("a", 1, ROOT.hex(), ()),
        ("a", 1, ROOT, ("",)),
        ("a", 1, ROOT, "ext"),
        ("\ud800", 1, ROOT, ()),
    ],
)
def test_checkpoint_rejects_impossible_values(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(LocalProtocolError):
        Checkpoint(origin, size, root, extensions)


def test_checkpoint_is_frozen_and_normalises_buffers() -> None:
    cp = Checkpoint(NAME, 1, bytearray(ROOT))  # type: ignore[arg-type]  # callers may slip
    assert type(cp.root_hash) is bytes and cp == Checkpoint(NAME, 1, ROOT)
    with pytest.raises(AttributeError):
        cp.size = 2  # type: ignore[misc]


def test_bad_signer_names_are_refused_when_signing() -> None:
    for name in ("", "a b", "a+b", "a\u00a0b", "a\nb"):
        with pytest.raises(LocalProtocolError):
            sign_checkpoint(CP, name, KEY)


def test_verifier_key_round_trip() -> None:
    vkey = encode_verifier_key(NAME, KEY.public_key())
    vk = parse_verifier_key(vkey)
    assert vk.name == NAME
    assert vk.public_key.public_bytes_raw() == KEY.public_key().public_bytes_raw()


def test_mangled_verifier_keys_are_refused() -> None:
    # As the Go reference tests: every proper substring and every one-character
    # change of a valid key must fail to parse.
    bad = {GO_VKEY[i:j] for i in range(len(GO_VKEY) + 1) for j in range(i, len(GO_VKEY) + 1)}
    bad |= {GO_VKEY[:i] + chr(ord(c) + 1) + GO_VKEY[i + 1 :] for i, c in enumerate(GO_VKEY)}
    bad.discard(GO_VKEY)
    # Hand-built: correct key ID for the name and key, but the wrong type byte or length.
    raw = parse_verifier_key(GO_VKEY).public_key.public_bytes_raw()
    for blob in (b"\x02" + raw, b"\x01" + raw + b"\x00"):
        key_id = hashlib.sha256(b"PeterNeumann\n" + blob).digest()[:4]
        bad.add(f"PeterNeumann+{key_id.hex()}+{_b64(blob)}")
    for vkey in sorted(bad):
        with pytest.raises(MalformedProof):
            parse_verifier_key(vkey)
