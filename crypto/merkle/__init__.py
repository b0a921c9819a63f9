"""Sans-I/O Merkle log cryptography (RFC 6962 / RFC 9162 hashing).

``hasher`` hashes, ``compact`` keeps the append-only frontier, ``proof`` plans
which stored nodes a proof needs, ``verify`` checks proofs. Every function takes
the hasher as an argument; fedgate's audit log uses ``RFC6962_SHA256``.
"""

from fedgate.crypto.merkle.compact import CompactRange, root_from_leaf_hashes
from fedgate.crypto.merkle.hasher import RFC6962_SHA256, LogHasher
from fedgate.crypto.merkle.proof import (
    NodeID,
    ProofPlan,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    range_nodes,
)
from fedgate.crypto.merkle.verify import (
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "RFC6962_SHA256",
    "CompactRange",
    "LogHasher",
    "NodeID",
    "ProofPlan",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "range_nodes",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]
