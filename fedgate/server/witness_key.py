"""A department adapter's witness key: it cosigns each audit checkpoint it verified (C2SP tlog-cosignature).

The private key lives in the adapter's data_dir as `witness.key` (PEM, 0600),
made at first start; `witness.vkey` beside it is the public key that security
officers pin (one line per department in their witness-keys file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.core.errors import ConfigError, MalformedProof
from fedgate.crypto.cosignature import WitnessKey, cosign, encode_witness_key, parse_witness_key
from fedgate.server.signing_key import ed25519_key

KEY_FILE = "witness.key"
VKEY_FILE = "witness.vkey"


def witness_name(department: str) -> str:
    """The key name a department cosigns under; the gateway stores only lines under its caller's name."""
    return f"fedgate-witness/{department}"


@dataclass(frozen=True)
class Witness:
    """What an adapter cosigns with."""

    name: str
    key: Ed25519PrivateKey

    def cosign(self, body: str, timestamp: int) -> str:
        return cosign(body, self.name, self.key, timestamp)

    @property
    def public(self) -> WitnessKey:
        return WitnessKey(self.name, self.key.public_key())


def load_or_create(data_dir: Path, department: str) -> Witness:
    """The witness key in `data_dir`, made (with its .vkey) at first start."""
    key = ed25519_key(data_dir / KEY_FILE, "witness key")
    witness = Witness(witness_name(department), key)
    (data_dir / VKEY_FILE).write_text(encode_witness_key(witness.name, key.public_key()) + "\n")
    return witness


def read_witness_keys(path: Path) -> list[WitnessKey]:
    """A pinned witness-keys file: one vkey per line (blank lines and # comments skipped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read witness keys: {exc.strerror}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                keys.append(parse_witness_key(line))
            except MalformedProof as exc:
                raise ConfigError(str(path), f"line {number} is not a witness key: {exc}") from None
    if len({k.name for k in keys}) != len(keys):
        raise ConfigError(str(path), "a witness is named twice")
    return keys
