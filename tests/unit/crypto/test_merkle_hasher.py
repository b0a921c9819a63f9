"""Known answers and properties of the RFC 6962 / RFC 9162 SHA-256 hasher."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedgate.crypto.merkle import RFC6962_SHA256, LogHasher

H = RFC6962_SHA256


def _empty_root(_: bytes) -> bytes:
    return H.empty_root()


def _leaf(data: bytes) -> bytes:
    return H.hash_leaf(data)


def _node(data: bytes) -> bytes:
    # The children are the two halves of `data`; the cases keep them 4 bytes each.
    return H.hash_children(data[:4], data[4:])


# Every expected value below was computed outside Python with coreutils.
KNOWN_ANSWERS: list[tuple[str, Callable[[bytes], bytes], bytes, str]] = [
    # printf '' | sha256sum
    ("empty root", _empty_root, b"",
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    # printf '\x00' | sha256sum
    ("leaf hash of empty data", _leaf, b"",
     "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    # printf '\x00L123456' | sha256sum
    ("leaf hash of L123456", _leaf, b"L123456",
     "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"),
    # printf '\x01N123N456' | sha256sum
    ("node hash of N123 and N456", _node, b"N123N456",
     "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"),
    # printf '\x01N456N123' | sha256sum
    ("node hash of N456 and N123", _node, b"N456N123",
     "013dee051c2516cf8ba3dfc4fae6bfb016587de88cd448f1e96df99ea575257a"),
]


@pytest.mark.parametrize(
    ("desc", "fn", "data", "want_hex"), KNOWN_ANSWERS, ids=[c[0] for c in KNOWN_ANSWERS]
)
def test_known_answers(desc: str, fn: Callable[[bytes], bytes], data: bytes, want_hex: str) -> None:
    assert fn(data).hex() == want_hex, desc


def test_size_is_sha256() -> None:
    assert H.size == 32
    assert len(H.empty_root()) == len(H.hash_leaf(b"x")) == len(H.hash_children(b"a", b"b")) == 32


def test_satisfies_protocol() -> None:
    # The Protocol is structural: this assignment is what mypy checks.
    hasher: LogHasher = H
    assert hasher.size == 32


@given(st.binary(max_size=200))
def test_leaf_hash_differs_from_node_hash_of_same_bytes(data: bytes) -> None:
    # The 0x00 / 0x01 prefixes are what stop a leaf from posing as an interior node.
    for cut in {0, len(data) // 2, len(data)}:
        assert H.hash_leaf(data) != H.hash_children(data[:cut], data[cut:])


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_child_order_matters(left: bytes, right: bytes) -> None:
    # Children are always 32-byte hashes; with free lengths "a"+"aa" == "aa"+"a".
    if left != right:
        assert H.hash_children(left, right) != H.hash_children(right, left)


def test_leaf_hash_is_not_the_empty_root() -> None:
    assert H.hash_leaf(b"") != H.empty_root()
