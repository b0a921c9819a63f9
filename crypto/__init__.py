"""Protocol logic with no I/O: bytes and ints in, bytes and ints out.

Supported names are re-exported here; anything with a leading underscore may
change without notice.
"""

from .ids import (
    USCC_ALPHABET,
    IdKind,
    NormalisedId,
    is_valid,
    make_resident_id,
    make_uscc,
    normalise,
    normalise_plain,
    normalise_resident_id,
    normalise_uscc,
    org_code_check_char,
    resident_id_check_char,
    uscc_check_char,
)
from .psi import (
    TokenChunk,
    blind_points,
    hash_and_blind,
    hash_to_point,
    hmac_tokens,
    new_psi_key,
    new_scalar,
    open_sealed_key,
    seal_key,
    truncate_tokens,
)

__all__ = [
    # ids
    "USCC_ALPHABET",
    "IdKind",
    "NormalisedId",
    "is_valid",
    "make_resident_id",
    "make_uscc",
    "normalise",
    "normalise_plain",
    "normalise_resident_id",
    "normalise_uscc",
    "org_code_check_char",
    "resident_id_check_char",
    "uscc_check_char",
    # psi (fedgate.crypto.intersect needs NumPy and is imported by name, not here)
    "TokenChunk",
    "blind_points",
    "hash_and_blind",
    "hash_to_point",
    "hmac_tokens",
    "new_psi_key",
    "new_scalar",
    "open_sealed_key",
    "seal_key",
    "truncate_tokens",
]
