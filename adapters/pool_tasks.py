"""Work done in the adapter's worker processes: normalise, hash, blind, encrypt. Top-level so it pickles."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from fedgate.adapters.subject_refs import digest, new_hasher
from fedgate.crypto.ids import normaliser
from fedgate.crypto.paillier import ciphertext_bytes
from fedgate.core.encryptors import VALUE_BITS, encryptor_for
from fedgate.core.errors import FailedPrecondition, InvalidIdentifier
from fedgate.query.protocols.base import TokensFn

DOMAIN_PREFIX = b"fedgate/match/v1/"


class ValueNotInteger(FailedPrecondition):
    """A value field yielded something that is not an integer."""


class ValueOutOfRange(FailedPrecondition):
    """A value field yielded an integer too large to encrypt safely."""


def domain_for(kind: str) -> bytes:
    # Both sides hash under the identifier kind, so a USCC never meets a resident ID.
    return DOMAIN_PREFIX + kind.encode()


def local_hash(ident: bytes, values: Sequence[int] = ()) -> bytes:
    """A hash of a normalised key (and the row's encrypted values) kept by the left adapter to find
    its matched rows again; with values, a flagged row is told from another row of the same key."""
    data = b"fedgate/local/v1\0" + ident + b"".join(b"\0" + str(v).encode() for v in values)
    return hashlib.sha256(data).digest()[:16]


@dataclass(frozen=True)
class ChunkTokens:
    """One chunk's work: tokens, counts, local hashes and (sum, compare) ciphertexts, all in token order."""

    tokens: bytes
    invalid: int
    missing_values: int
    hashes: bytes
    ciphertexts: bytes
    subject_refs: bytes = b""  # the token rows' subject references (`subject_refs.digest`), 8 bytes each
    rows: int = 0  # the rows read for this chunk, valid or not


@dataclass(frozen=True)
class TokenJob:
    """What turns a side's chunks into tokens, keys included: sent to a worker (or broadcast to Spark's
    executors) with each chunk, never stored."""

    tokens_of: TokensFn
    secret: bytes
    kind: str
    keep_hashes: bool
    value_fields: tuple[str, ...] = ()
    paillier_key: bytes = b""
    clamp_to: tuple[tuple[int, int], ...] = ()
    subject_key: bytes = b""

    def __repr__(self) -> str:  # never a key in a log line or a traceback
        return f"TokenJob(kind={self.kind!r}, values={self.value_fields!r})"

    def result_bytes(self, token_bytes: int) -> int:
        """About how many bytes of results a row makes (a token, its hash, its subject reference, ciphertexts)."""
        width = ciphertext_bytes(encryptor_for(self.paillier_key).n) if self.value_fields else 0
        return (token_bytes + (16 if self.keep_hashes else 0) + (8 if self.subject_key else 0)
                + width * len(self.value_fields))


def job_tokens(job: TokenJob, rows: list[tuple[object, ...]]) -> ChunkTokens:
    """`tokens_for` one chunk under `job` (the shape a source's `map_chunks` and the pool both run)."""
    return tokens_for(job.tokens_of, job.secret, job.kind, rows, job.keep_hashes, job.value_fields,
                      job.paillier_key, job.clamp_to, job.subject_key)


def tokens_for(tokens_of: TokensFn, secret: bytes, kind: str, rows: list[tuple[object, ...]], keep_hashes: bool,
               value_fields: tuple[str, ...] = (), paillier_key: bytes = b"",
               clamp_to: tuple[tuple[int, int], ...] = (), subject_key: bytes = b"") -> ChunkTokens:
    """Normalise the key (first column) of each row and turn the valid ones into tokens with ``tokens_of``
    (the match protocol's token function, module-level so it pickles).

    Invalid or missing keys are counted, never matched. With ``value_fields``,
    the remaining columns are encrypted under ``paillier_key``; a row with a
    missing value is counted and left out, a value that is not a 64-bit integer
    refuses the whole query. ``clamp_to`` (a noisy sum) clamps each value into
    its field's (min, max) before it is encrypted. With ``subject_key``, each token row's subject
    reference is made here too, where its key is normalised already.
    """
    valid: list[bytes] = []
    hashes: list[bytes] = []
    values: list[int] = []
    invalid = missing = 0
    normalise_one = normaliser(kind)  # looked up once per chunk, not once per row
    subject_refs = bytearray()
    hasher = new_hasher(subject_key) if subject_key else None
    for row in rows:
        key = row[0]
        if key is None or key == "":
            invalid += 1
            continue
        try:
            ident = normalise_one(str(key)).encode()
        except InvalidIdentifier:
            invalid += 1
            continue
        if value_fields:
            row_values = row[1:]
            if any(v is None or v == "" for v in row_values):
                missing += 1
                continue
            checked = [_checked_value(name, v) for name, v in zip(value_fields, row_values)]
            values.extend([min(max(v, low), high) for v, (low, high) in zip(checked, clamp_to, strict=True)]
                          if clamp_to else checked)
            if keep_hashes:
                hashes.append(local_hash(ident, checked))
        elif keep_hashes:
            hashes.append(local_hash(ident))
        valid.append(ident)
        if hasher is not None:
            subject_refs += digest(hasher, kind, ident)
    tokens = tokens_of(secret, domain_for(kind), valid)
    ciphertexts = b""
    if value_fields:
        enc = encryptor_for(paillier_key)
        width = ciphertext_bytes(enc.n)
        ciphertexts = b"".join(c.to_bytes(width, "big") for c in enc.encrypt_many(values))
    return ChunkTokens(tokens, invalid, missing, b"".join(hashes), ciphertexts, bytes(subject_refs), len(rows))


def _checked_value(name: str, value: object) -> int:
    # bool is an int in Python; a source that yields one has a mistyped column.
    if isinstance(value, bool) or not isinstance(value, int):
        # The adapter checked the field's type at start, so the source changed since.
        raise ValueNotInteger(f"field '{name}' is declared int, but the department's source now holds a value "
                              "there that is not an integer: it cannot be summed or compared until the "
                              "department corrects it (whole numbers, e.g. fen)")
    if abs(value) >= 1 << VALUE_BITS:
        raise ValueOutOfRange(f"field '{name}' holds a value outside the signed 64-bit range that sums and "
                              "comparisons encrypt: refused rather than risk an overflow")
    return value

