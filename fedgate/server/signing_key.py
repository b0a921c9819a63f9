"""The gateway's Ed25519 log-signing key on disk, and its public verifier key.

The private key signs audit checkpoints and query tickets. The verifier key
(`<name>+<key id>+<base64 key>`, the C2SP signed-note format) is what adapters
and security officers pin; it is written next to the key as `<key>.vkey`.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedgate.crypto.checkpoint import VerifierKey, encode_verifier_key, parse_verifier_key
from fedgate.core.errors import ConfigError, MalformedProof


def ed25519_key(path: Path, what: str) -> Ed25519PrivateKey:
    """Load the PEM Ed25519 key at `path`, or create it (mode 0600); ConfigError names `what` and the file."""
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(str(path), f"unusable {what}: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(str(path), f"{what} must be Ed25519")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def load_or_create(path: Path, name: str) -> Ed25519PrivateKey:
    """Load the PEM key at `path`, or create it (mode 0600) with its .vkey beside it.

    The .vkey is written only when it is missing or says something else (another name), so a key
    provisioned ahead with its .vkey (`fedgate gateway keygen`) is read from a read-only mount, such
    as a Kubernetes Secret shared by the gateway's replicas.
    """
    key = ed25519_key(path, "log-signing key")
    vkey = vkey_path(path)
    text = encode_verifier_key(name, key.public_key()) + "\n"
    try:
        current: str | None = vkey.read_text()
    except FileNotFoundError:
        current = None
    except OSError as exc:
        raise ConfigError(str(vkey), f"cannot read the verifier key beside the key: {exc.strerror}") from None
    if current != text:
        try:
            vkey.write_text(text)
        except OSError as exc:
            raise ConfigError(str(vkey), f"cannot write the verifier key beside {path.name} ({exc.strerror}): on a "
                              f"read-only mount, provide {vkey.name} beside the key, made with it for the name "
                              f"{name!r} (`fedgate gateway keygen`)") from None
    return key


def vkey_path(key_path: Path) -> Path:
    return key_path.with_suffix(".vkey")


def read_vkey(path: Path) -> VerifierKey:
    """Read a pinned verifier key file; ConfigError names the file on any problem."""
    try:
        return parse_verifier_key(path.read_text().strip())
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read verifier key: {exc.strerror}") from None
    except MalformedProof as exc:
        raise ConfigError(str(path), f"not a verifier key: {exc}") from None
