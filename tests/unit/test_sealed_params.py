"""Sealed filters in the audit parameters: only the officers' key opens them, and what opens is what ran."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from fedgate.core.errors import ConfigError, VerificationError
from fedgate.core.officer_seal import CannotOpen, OpenKey, SealKey, create_pair
from fedgate.crypto.ticket import TicketRefused
from fedgate.query.audit_params import LoggedFilter, QueryParams, decode, filter_digest, open_filter, seal_filter

NONCE = b"\x07" * 16
EXACT = "name = '张三' and monthly_amount_fen >= 250000"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[SealKey, OpenKey, Path]:
    directory = tmp_path_factory.mktemp("seal")
    public, created = create_pair(directory)
    assert created
    return SealKey.load(public), OpenKey.load(directory / "officer-seal.key"), directory


def _logged(seal: SealKey, text: str = EXACT) -> LoggedFilter:
    return LoggedFilter("name = ? and monthly_amount_fen >= ?", filter_digest(NONCE, text),
                        seal_filter(seal, NONCE, text))


def test_the_officer_key_opens_exactly_the_filter_and_the_log_holds_no_literal(keys) -> None:
    seal, opener, _ = keys
    params = QueryParams()
    params.side("civil.allowance", "left").filter = _logged(seal)
    encoded = params.encode()
    assert encoded["params_version"] == "3"  # sealed filters came in version 2
    sealed = encoded["sealed_filter.left.civil.allowance"]
    assert "张三" not in json.dumps(encoded, ensure_ascii=False) and "250000" not in json.dumps(encoded)
    logged = decode(encoded).side("civil.allowance", "left").filter
    assert logged is not None and logged.sealed == sealed
    assert open_filter(opener, logged) == EXACT


def test_the_same_filter_seals_differently_each_time(keys) -> None:
    seal, _, _ = keys
    assert seal_filter(seal, NONCE, EXACT) != seal_filter(seal, NONCE, EXACT)  # an ephemeral key per seal


def test_another_key_pair_cannot_open(keys, tmp_path: Path) -> None:
    seal, _, _ = keys
    create_pair(tmp_path)
    with pytest.raises(CannotOpen, match="does not open with this key"):
        open_filter(OpenKey.load(tmp_path / "officer-seal.key"), _logged(seal))


def test_a_sealed_text_other_than_the_digested_filter_is_caught(keys) -> None:
    seal, opener, _ = keys
    swapped = LoggedFilter("name = ?", filter_digest(NONCE, EXACT), seal_filter(seal, NONCE, "name = '李四'"))
    with pytest.raises(VerificationError, match="not the filter the logged digest binds"):
        open_filter(opener, swapped)
    flipped = bytearray(base64.b64decode(_logged(seal).sealed))
    flipped[-1] ^= 1
    with pytest.raises(CannotOpen):
        open_filter(opener, LoggedFilter("name = ?", filter_digest(NONCE, EXACT), base64.b64encode(flipped).decode()))


def test_version_1_entries_decode_and_may_not_carry_sealed_text(keys) -> None:
    seal, _, _ = keys
    v1 = {"params_version": "1", "filter.hrss.pensions": "district = ?", "filter_digest.hrss.pensions": "ab" * 32}
    assert decode(v1).version == 1
    assert decode(v1).encode() == v1
    with pytest.raises(TicketRefused, match="unknown parameter 'sealed_filter"):
        decode({**v1, "sealed_filter.hrss.pensions": _logged(seal).sealed})
    with pytest.raises(TicketRefused, match="without its text or digest"):
        decode({"params_version": "2", "sealed_filter.hrss.pensions": _logged(seal).sealed})


def test_an_unsealed_version_2_filter_round_trips() -> None:
    params = QueryParams()
    params.side("hrss.pensions").filter = LoggedFilter("district = ?", "ab" * 32)
    assert "sealed_filter.hrss.pensions" not in params.encode()
    assert decode(params.encode()) == params


def test_wrong_key_files_are_named(keys, tmp_path: Path) -> None:
    _, _, directory = keys
    with pytest.raises(ConfigError, match="not an X25519 private key"):
        OpenKey.load(_p256_key(tmp_path))
    with pytest.raises(ConfigError, match="officer seal private key"):
        OpenKey.load(directory / "officer-seal.pub")
    with pytest.raises(ConfigError, match="officer seal key"):
        SealKey.load(directory / "officer-seal.key")


def test_create_pair_keeps_an_existing_pair(keys) -> None:
    _, opener, directory = keys
    _, created = create_pair(directory)
    assert not created and OpenKey.load(directory / "officer-seal.key") == opener
    assert (directory / "officer-seal.key").stat().st_mode & 0o777 == 0o600


def _p256_key(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    path = tmp_path / "tls.key"
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path
