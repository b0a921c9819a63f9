"""A log-signing key made ahead (`fedgate gateway keygen`) and mounted read-only, as replicas share it."""

from __future__ import annotations

import errno
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fedgate.cli.commands import app
from fedgate.core.errors import ConfigError
from fedgate.gateway.config import DEFAULT_ORIGIN
from fedgate.server.signing_key import load_or_create, read_vkey


def read_only_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file write fails as on a read-only mount (a chmod would not stop root)."""
    def refuse(self: Path, *args: Any, **kwargs: Any) -> int:
        raise OSError(errno.EROFS, "Read-only file system", str(self))
    monkeypatch.setattr(Path, "write_text", refuse)


def test_keygen_then_load_from_a_read_only_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    result = CliRunner().invoke(app, ["gateway", "keygen", str(keys)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((keys / "log-signing.key").stat().st_mode) == 0o600
    vkey = read_vkey(keys / "log-signing.vkey")
    assert vkey.name == DEFAULT_ORIGIN  # the CLI's default is the gateway's
    again = CliRunner().invoke(app, ["gateway", "keygen", str(keys)])
    assert again.exit_code == 1 and "never overwritten" in again.output

    read_only_mount(monkeypatch)
    key = load_or_create(keys / "log-signing.key", DEFAULT_ORIGIN)  # the .vkey says the same: nothing written
    assert key.public_key() == vkey.public_key
    # A gateway whose log_origin differs from the provisioned .vkey's name says what to provide.
    with pytest.raises(ConfigError, match="provide log-signing.vkey beside the key"):
        load_or_create(keys / "log-signing.key", "another.origin/audit")


def test_a_stale_vkey_is_rewritten_where_it_can_be(tmp_path: Path) -> None:
    key_path = tmp_path / "log-signing.key"
    load_or_create(key_path, "one.origin/audit")
    load_or_create(key_path, "two.origin/audit")
    assert read_vkey(tmp_path / "log-signing.vkey").name == "two.origin/audit"
