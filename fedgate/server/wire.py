"""Conversion between protobuf messages and domain objects, at the service edge.

Only service modules and this one touch generated `*_pb2` classes.
"""

from __future__ import annotations

from collections.abc import Iterable

from fedgate.core.datasets import DatasetDecl, FieldDecl
from fedgate.core.matching_keys import MatchingKey
from fedgate.protos.fedgate.v1 import common_pb2


def dataset_from_proto(msg: common_pb2.DatasetSpec, department: str | None = None) -> DatasetDecl:
    """Validate and convert a DatasetSpec; `department` fills an empty department field."""
    dept = msg.department or department or ""
    where = f"dataset '{dept}.{msg.name}'"
    fields = tuple(
        FieldDecl.build(f.name, f.type, f.level, f.key_kind or None, f.description, where=where,
                        bounds=(f.min, f.max) if f.bounded else None)
        for f in msg.fields
    )
    return DatasetDecl(dept, msg.name, fields, msg.description, msg.row_count)


def dataset_to_proto(decl: DatasetDecl) -> common_pb2.DatasetSpec:
    return common_pb2.DatasetSpec(
        department=decl.department,
        name=decl.name,
        description=decl.description,
        row_count=decl.row_count,
        fields=[
            common_pb2.FieldSpec(name=f.name, type=f.type.value, level=f.level,
                                 key_kind=f.key.value if f.key else "", description=f.description,
                                 bounded=f.bounds is not None, min=f.bounds[0] if f.bounds else 0,
                                 max=f.bounds[1] if f.bounds else 0)
            for f in decl.fields
        ],
    )


def matching_key_to_proto(key: MatchingKey) -> common_pb2.MatchingKey:
    return common_pb2.MatchingKey(public_key=key.public_key, signature=key.signature,
                                  certificate_pem=key.certificate_pem)


def matching_key_from_proto(msg: common_pb2.MatchingKey) -> MatchingKey:
    return MatchingKey(msg.public_key, msg.signature, msg.certificate_pem)


# Sent by an adapter as initial metadata the moment it has admitted a query's ticket, before the
# work: the gateway lets the next ticket for that department be issued from then on (see
# gateway/query.py: admissions), so concurrent queries do not race each other's checkpoints.
ADMITTED_METADATA = (("fedgate-admitted", "1"),)
# With it, the adapter's witness cosignature line on the ticket's checkpoint (UTF-8: the line starts
# with an em dash, so it travels as binary metadata); the gateway stores it beside the checkpoint.
COSIGNATURE_METADATA = "fedgate-cosignature-bin"


def admitted_metadata(cosignature: str) -> tuple[tuple[str, str | bytes], ...]:
    """The admission's initial metadata, carrying the cosignature when the adapter made one."""
    if not cosignature:
        return ADMITTED_METADATA
    return (*ADMITTED_METADATA, (COSIGNATURE_METADATA, cosignature.encode()))


def cosignature_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The cosignature line in an adapter's initial metadata, or "" (absent or not UTF-8)."""
    for key, value in metadata or ():
        if key == COSIGNATURE_METADATA and isinstance(value, bytes):
            try:
                return value.decode()
            except UnicodeDecodeError:
                return ""
    return ""
