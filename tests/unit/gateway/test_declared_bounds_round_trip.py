"""Declared field bounds survive registration (the wire) and the registry's storage, old rows included."""

from __future__ import annotations

import json

from fedgate.core.datasets import DatasetDecl, FieldDecl
from fedgate.gateway.registry_store import _fields_from_json, _fields_json
from fedgate.server.wire import dataset_from_proto, dataset_to_proto

DECL = DatasetDecl("hrss", "subsidies", (
    FieldDecl.build("uscc", "string", "L3", "uscc"),
    FieldDecl.build("amount_fen", "int", "L3", bounds=(-5, 2_000_000)),
    FieldDecl.build("employees", "int", "L2")))


def test_bounds_cross_the_wire_unchanged() -> None:
    assert dataset_from_proto(dataset_to_proto(DECL)) == DECL


def test_bounds_are_stored_and_a_field_stored_before_bounds_existed_reads_without() -> None:
    assert _fields_from_json(_fields_json(DECL)) == DECL.fields
    old = [{"name": "amount_fen", "type": "int", "level": "L3", "key": None, "description": ""}]
    (field,) = _fields_from_json(json.dumps(old))
    assert field.bounds is None
