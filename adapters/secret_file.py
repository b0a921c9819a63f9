"""A department's secret keys for keyed hashes: raw random bytes in a file only its owner may read."""

from __future__ import annotations

import os
from pathlib import Path

from fedgate.core.errors import ConfigError, NotFound

SECRET_BYTES = 32


def load_or_create_secret(path: Path, what: str, create: bool = True) -> bytes:
    """The secret in `path` (mode 0600), created on first use unless `create` is False (then NotFound)."""
    if path.exists():
        raw = path.read_bytes()
        if len(raw) != SECRET_BYTES:
            raise ConfigError(str(path), f"{what} file must hold exactly {SECRET_BYTES} bytes")
        return raw
    if not create:
        raise NotFound(f"no {what} at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = os.urandom(SECRET_BYTES)
    # O_EXCL: two starts racing cannot each write a key of their own.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
    return secret
