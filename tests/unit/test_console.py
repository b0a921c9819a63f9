"""The console's pieces that need no servers: the owner-only gate, proof bundles, the trace tree, values as text."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import support
from fedgate.client.gateway import EntryProof
from fedgate.console.app import _OwnerOnly, _plain
from fedgate.console.audit_views import proof_bundle, read_bundle
from fedgate.console.traces import trace_tree
from fedgate.core.errors import InvalidInput
from fedgate.server import pki
from fedgate.server.trace_store import StoredSpan
from fedgate.server.tls import TlsFiles


def _span(span_id: str, parent: str | None, start: int, name: str = "") -> StoredSpan:
    return StoredSpan("a" * 32, span_id, parent, name or span_id, "svc", "INTERNAL", start, start + 1_000_000,
                      "UNSET", "", {})


def test_trace_tree_puts_children_under_parents_in_start_order_and_orphans_at_the_top() -> None:
    spans = [_span("c2", "root", 30), _span("root", None, 10), _span("c1", "root", 20), _span("g", "c1", 25),
             _span("orphan", "missing", 5), _span("self", "self", 40)]
    roots = trace_tree(spans)
    assert [r.name for r in roots] == ["orphan", "root", "self"]
    root = roots[1]
    assert [c.name for c in root.children] == ["c1", "c2"] and [g.name for g in root.children[0].children] == ["g"]
    assert roots[2].children == []


def test_a_bundle_reads_back_as_the_proof_it_was_made_from() -> None:
    proof = EntryProof(7, 12, b"\x01" * 32, (b"\x02" * 32, b"\x03" * 32), "origin\n12\nroot\n\n— sig\n", b'{"a":1}')
    data = json.dumps(proof_bundle(proof, "key+00000000+AQ==\n")).encode()
    back = read_bundle(data)
    assert (back.index, back.size, back.hashes, back.checkpoint, back.body) == (
        proof.index, proof.size, proof.hashes, proof.checkpoint, proof.body)
    assert json.loads(data)["log_key"] == "key+00000000+AQ=="


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"format": "other"}',
                                  b'{"format": "fedgate-inclusion-proof/v1", "index": 1}',
                                  b'{"format": "fedgate-inclusion-proof/v1", "index": 1, "size": 2, "entry": "!!",'
                                  b' "proof": [], "checkpoint": ""}'])
def test_a_broken_bundle_is_invalid_input_naming_the_problem(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="bundle"):
        read_bundle(data)


def test_values_show_as_one_line_where_they_can() -> None:
    assert _plain(["a", "b"]) == "a, b" and _plain([]) == "-" and _plain(True) == "yes" and _plain(5) == "5"
    assert _plain({"hrss.subsidies": 20}) == "hrss.subsidies: 20"
    assert _plain([{"department": "hrss"}]) is None  # shown as JSON in a block


def _call(gate: _OwnerOnly, pem: bytes | None) -> tuple[int, dict[bytes, bytes], list[str]]:
    reached: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    gate.app = inner
    scope = {"type": "http", "path": "/entries", "method": "GET", "headers": [], "query_string": b"",
             "extensions": {"tls": {"client_cert_chain": [pem.decode()] if pem else []}}}
    asyncio.run(gate(scope, receive, send))
    start = sent[0]
    return start["status"], dict(start["headers"]), reached


def test_only_the_owners_certificate_reaches_the_pages(tmp_path: Path) -> None:
    pki.init_dir(tmp_path, [support.OFFICER, support.SUPERVISOR])
    gate = _OwnerOnly(None, support.OFFICER)
    owner = TlsFiles.in_dir(tmp_path, support.OFFICER).cert.read_bytes()
    other = TlsFiles.in_dir(tmp_path, support.SUPERVISOR).cert.read_bytes()
    status, headers, reached = _call(gate, owner)
    assert status == 200 and reached == ["/entries"]
    assert headers[b"x-frame-options"] == b"DENY" and b"script-src 'self'" in headers[b"content-security-policy"]
    for pem, code in ((other, 403), (None, 401)):
        status, headers, reached = _call(gate, pem)
        assert status == code and reached == []  # nothing behind the gate ran: no gateway call was made
        assert headers[b"cache-control"] == b"no-store"

