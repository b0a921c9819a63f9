"""Statements signed with a certificate key (fedgate.core.certified): only the named holder, from our CA, verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

import support
from fedgate.core import certified
from fedgate.server import pki
from fedgate.core.errors import VerificationError
from fedgate.core.identity import Identity
from fedgate.server.tls import TlsFiles

OTHER = Identity(support.SUPERVISOR.role, "dcb", "mallory")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ours, theirs = tmp_path_factory.mktemp("ours"), tmp_path_factory.mktemp("theirs")
    pki.init_dir(ours, [support.SUPERVISOR, OTHER])
    pki.init_dir(theirs, [support.SUPERVISOR])  # same names, another CA
    return ours, theirs


def test_the_holder_s_signature_verifies(dirs: tuple[Path, Path]) -> None:
    ours, _ = dirs
    signature, cert = certified.sign(TlsFiles.in_dir(ours, support.SUPERVISOR), b"statement")
    certified.verify(b"statement", signature, cert, (ours / "ca.pem").read_bytes(), support.SUPERVISOR, "the key")


@pytest.mark.parametrize("case", ["other message", "other holder", "other CA", "garbage certificate",
                                  "garbage signature"])
def test_anything_else_is_refused(dirs: tuple[Path, Path], case: str) -> None:
    ours, theirs = dirs
    signer = {"other holder": TlsFiles.in_dir(ours, OTHER),
              "other CA": TlsFiles.in_dir(theirs, support.SUPERVISOR)}.get(case, TlsFiles.in_dir(ours, support.SUPERVISOR))
    signature, cert = certified.sign(signer, b"statement")
    message = b"another statement" if case == "other message" else b"statement"
    if case == "garbage certificate":
        cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    if case == "garbage signature":
        signature = b"\x30\x06\x02\x01\x01\x02\x01\x01"
    with pytest.raises(VerificationError, match="the key"):
        certified.verify(message, signature, cert, (ours / "ca.pem").read_bytes(), support.SUPERVISOR, "the key")
