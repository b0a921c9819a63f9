"""The match-protocol registry and each protocol's tokens and secrets, without any server."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgate.core import matching_keys
from fedgate.server import pki
from fedgate.crypto import psi
from fedgate.core.errors import InvalidInput, RemoteProtocolError, VerificationError
from fedgate.core.identity import Identity, Role
from fedgate.core.matching_keys import MatchingKey
from fedgate.query import protocols
from fedgate.query.protocols import MatchProtocol, Secret, SecretSetup
from fedgate.server.tls import TlsFiles

DOMAIN = b"fedgate/match/v1/uscc"
NO_KEY = MatchingKey(b"", b"", "")
ids = st.lists(st.binary(min_size=1, max_size=24), min_size=1, max_size=12)


def test_registry_names_default_and_lookup() -> None:
    assert protocols.names() == ("keyed", "ecdh")
    assert protocols.DEFAULT in protocols.names()
    for name in protocols.names():
        assert protocols.get(name).name == name


def test_an_unknown_protocol_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="mode must be one of keyed, ecdh"):
        protocols.get("rsa-blind")


def test_a_name_registers_once() -> None:
    with pytest.raises(ValueError, match="registered already"):
        protocols.register(protocols.get("keyed"))


def test_pool_tasks_pickle_into_worker_processes() -> None:
    for name in protocols.names():
        protocol = protocols.get(name)
        for fn in (protocol.tokens, protocol.reblind):
            if fn is not None:
                assert pickle.loads(pickle.dumps(fn)) is fn


def test_what_the_gateway_and_adapter_read_of_each_protocol() -> None:
    keyed, ecdh = protocols.get("keyed"), protocols.get("ecdh")
    assert (keyed.relays, keyed.needs_peer_key, keyed.own_token_bytes) == (False, True, psi.TOKEN_BYTES)
    assert (ecdh.relays, ecdh.needs_peer_key, ecdh.own_token_bytes) == (True, False, psi.POINT_BYTES)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    pki.init_dir(directory, [Identity(Role.DEPARTMENT, "hrss"), Identity(Role.DEPARTMENT, "samr")])
    return directory


def _setup(role: str, own: X25519PrivateKey, ca: bytes, peer_key: MatchingKey = NO_KEY, sealed: bytes = b"",
           context: bytes = b"q1|hrss|samr") -> SecretSetup:
    return SecretSetup(role, context, "samr" if role == "left" else "hrss", peer_key, sealed, own, ca)


def _keyed_pair(certs: Path, context: bytes = b"q1|hrss|samr") -> tuple[Secret, Secret]:
    """Both keyed sides' secrets: the left seals its key to the right's vouched key, the right opens it."""
    ca = (certs / "ca.pem").read_bytes()
    right_key = X25519PrivateKey.generate()
    vouched = matching_keys.vouch("samr", right_key,
                                  TlsFiles.in_dir(certs, Identity(Role.DEPARTMENT, "samr")))
    keyed = protocols.get("keyed")
    left = keyed.secret(_setup("left", X25519PrivateKey.generate(), ca, peer_key=vouched))
    right = keyed.secret(_setup("right", right_key, ca, sealed=left.sealed_key, context=context))
    return left, right


def test_keyed_sides_share_the_key_and_give_equal_tokens_for_equal_ids(certs: Path) -> None:
    left, right = _keyed_pair(certs)
    assert left.sealed_key and left.value not in left.sealed_key
    assert right.value == left.value and right.sealed_key == b""
    keyed = protocols.get("keyed")
    idents = [b"91110000100000000A", b"91110000100000001B"]
    assert keyed.tokens(left.value, DOMAIN, idents) == keyed.tokens(right.value, DOMAIN, idents)
    assert keyed.tokens(left.value, DOMAIN, idents[:1]) != keyed.tokens(left.value, DOMAIN, idents[1:])


def test_a_keyed_key_sealed_for_another_query_does_not_open(certs: Path) -> None:
    with pytest.raises(RemoteProtocolError):
        _keyed_pair(certs, context=b"q2|hrss|samr")


def test_the_left_refuses_a_peer_key_nobody_vouched_for(certs: Path) -> None:
    ca = (certs / "ca.pem").read_bytes()
    with pytest.raises(VerificationError, match="malformed"):
        protocols.get("keyed").secret(_setup("left", X25519PrivateKey.generate(), ca))


def _ecdh_tokens(protocol: MatchProtocol, own: bytes, peer: bytes, idents: list[bytes]) -> bytes:
    """One side's final tokens: blinded with its own scalar, then again by the peer."""
    assert protocol.reblind is not None
    return protocol.reblind(peer, protocol.tokens(own, DOMAIN, idents))


@settings(max_examples=10, deadline=None)
@given(idents=ids)
def test_ecdh_double_blinding_commutes(idents: list[bytes]) -> None:
    ecdh = protocols.get("ecdh")
    a = ecdh.secret(SecretSetup("left", b"", "samr", NO_KEY, b"", X25519PrivateKey.generate(), b""))
    b = ecdh.secret(SecretSetup("right", b"", "hrss", NO_KEY, b"", X25519PrivateKey.generate(), b""))
    assert a.value != b.value and a.sealed_key == b.sealed_key == b""
    left, right = _ecdh_tokens(ecdh, a.value, b.value, idents), _ecdh_tokens(ecdh, b.value, a.value, idents)
    assert left == right and len(left) == len(idents) * psi.TOKEN_BYTES
    # Blinded once, a side's points say nothing the other side's do.
    assert ecdh.tokens(a.value, DOMAIN, idents) != ecdh.tokens(b.value, DOMAIN, idents)
