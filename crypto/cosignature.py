"""C2SP tlog-cosignature v1: a witness's timestamped Ed25519 signature on a checkpoint it verified.

A cosignature is one more signature line on the checkpoint's signed note::

    — <witness name> base64(4-byte key ID || 8-byte big-endian timestamp || 64-byte signature)

The key ID is SHA-256(name || 0x0A || 0x04 || public key)[:4] (0x04: the
cosignature/v1 type), and the signature covers ``"cosignature/v1\\ntime <unix>\\n"``
followed by the checkpoint's whole note body. Spec: c2sp.org/tlog-cosignature.
Sans-I/O like ``checkpoint.py``; the same error classes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedgate.core.errors import LocalProtocolError, MalformedProof, VerificationError
from fedgate.crypto.checkpoint import b64, b64decode_strict, check_key_name, parse_signature_line, split_note

__all__ = [
    "WitnessKey",
    "cosign",
    "cosignature_line",
    "encode_witness_key",
    "parse_cosignature_line",
    "parse_witness_key",
    "verified_cosigners",
]

_ALG_COSIGNATURE_V1: Final = b"\x04"
_KEY_ID_SIZE: Final = 4
_TIME_SIZE: Final = 8
_SIG_SIZE: Final = 64
_MAX_TIME: Final = 2**63 - 1
_SIG_PREFIX: Final = "\u2014 "


class WitnessKey(NamedTuple):
    """A witness's name and Ed25519 public key (a vkey of type 0x04)."""

    name: str
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        return _key_id(self.name, self.public_key.public_bytes_raw())


def encode_witness_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The vkey text ``<name>+<hex key ID>+<base64(0x04 || public key)>``."""
    check_key_name(name, LocalProtocolError)
    raw = public_key.public_bytes_raw()
    return f"{name}+{_key_id(name, raw).hex()}+{b64(_ALG_COSIGNATURE_V1 + raw)}"


def parse_witness_key(vkey: str) -> WitnessKey:
    """Parse a cosignature/v1 vkey; raises ``MalformedProof`` unless its key ID matches."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise MalformedProof("witness key is not <name>+<key id>+<key>")
    name, key_id_hex, key_b64 = parts
    check_key_name(name, MalformedProof)
    if not re.fullmatch(r"[0-9a-fA-F]{8}", key_id_hex, re.ASCII):
        raise MalformedProof("witness key ID is not 8 hex digits")
    blob = b64decode_strict(key_b64, "witness key")
    if blob[:1] != _ALG_COSIGNATURE_V1 or len(blob) != 33:
        raise MalformedProof("witness key is not a cosignature/v1 (type 0x04) Ed25519 key")
    raw = blob[1:]
    if _key_id(name, raw) != bytes.fromhex(key_id_hex):
        raise MalformedProof("witness key ID does not match its name and key")
    return WitnessKey(name, Ed25519PublicKey.from_public_bytes(raw))


def cosign(body: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> str:
    """The cosignature line (no newline) on a checkpoint note body (its text before the signatures)."""
    check_key_name(name, LocalProtocolError)
    if type(timestamp) is not int or not 0 <= timestamp <= _MAX_TIME:
        raise LocalProtocolError("cosignature timestamp must be an int in [0, 2**63)")
    if not body.endswith("\n"):
        raise LocalProtocolError("the cosigned note body must end with a newline")
    sig = private_key.sign(_message(body, timestamp))
    blob = _key_id(name, private_key.public_key().public_bytes_raw()) + timestamp.to_bytes(_TIME_SIZE, "big") + sig
    return cosignature_line(name, blob)


def cosignature_line(name: str, blob: bytes) -> str:
    return f"{_SIG_PREFIX}{name} {b64(blob)}"


def parse_cosignature_line(line: str) -> tuple[str, bytes]:
    """(witness name, key ID || timestamp || signature) of a well-formed cosignature line; nothing verified."""
    # A cosignature line is a signed-note signature line: the note's own parser reads it.
    name, blob = parse_signature_line(line)
    if len(blob) != _KEY_ID_SIZE + _TIME_SIZE + _SIG_SIZE:
        raise MalformedProof("cosignature is not key ID, timestamp and Ed25519 signature")
    return name, blob


def verified_cosigners(note_text: str, witnesses: Iterable[WitnessKey]) -> dict[str, int]:
    """The pinned witnesses whose cosignatures on this note verify: name -> timestamp.

    Lines by other keys are ignored (as signed-note requires); a line by a pinned
    witness that does not verify raises ``VerificationError``: that witness signed
    another checkpoint body, so someone was shown a different log.
    """
    body, lines = split_note(note_text)
    pinned = {(w.name, w.key_id): w for w in witnesses}
    found: dict[str, int] = {}
    for name, blob in lines:
        witness = pinned.get((name, blob[:_KEY_ID_SIZE]))
        if witness is None:
            continue
        if len(blob) != _KEY_ID_SIZE + _TIME_SIZE + _SIG_SIZE:
            raise VerificationError(f"the cosignature by witness '{name}' has the wrong length")
        timestamp = int.from_bytes(blob[_KEY_ID_SIZE:_KEY_ID_SIZE + _TIME_SIZE], "big")
        try:
            if timestamp > _MAX_TIME:
                raise InvalidSignature
            witness.public_key.verify(blob[_KEY_ID_SIZE + _TIME_SIZE:], _message(body, timestamp))
        except InvalidSignature:
            raise VerificationError(f"the cosignature by witness '{name}' does not verify: "
                                    "the witness cosigned a different checkpoint body") from None
        found[name] = max(timestamp, found.get(name, 0))
    return found


def _message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def _key_id(name: str, raw_public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ALG_COSIGNATURE_V1 + raw_public_key).digest()[:_KEY_ID_SIZE]
