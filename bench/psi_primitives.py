"""Time the PSI blinding candidates and keyed-hash tokens on this machine (one core).

Usage: python bench/psi_primitives.py [--intersect]

Prints microseconds per operation (best of 3 timeit runs). Optional libraries
(pycryptodome for P-256, pysodium with a system libsodium for ristretto255)
are skipped with a note when missing; neither is a fedgate dependency.
``--intersect`` also times ``Intersector`` on 1M x 1M random 16-byte tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
import time
import timeit
import tracemalloc
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedgate.crypto import psi

_BATCH = 2000
_DOMAIN = b"fedgate/bench/resident_id"


def _per_op(func: Callable[[], object], ops: int, number: int = 1) -> float:
    """Best of three runs, in microseconds per operation."""
    return min(timeit.repeat(func, number=number, repeat=3)) / (ops * number) * 1e6


def _rows() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    idents = [f"1101051980010{i:05d}".encode() for i in range(_BATCH)]
    scalar = psi.new_scalar()

    private = X25519PrivateKey.from_private_bytes(scalar)
    point = X25519PrivateKey.generate().public_key().public_bytes_raw()
    rows.append(("X25519 (cryptography/OpenSSL): decode + scalar mult",
                 f"{_per_op(lambda: private.exchange(X25519PublicKey.from_public_bytes(point)), 1, 2000):.1f}"))
    points = psi.hash_and_blind(scalar, _DOMAIN, idents)
    rows.append(("  fedgate blind_points, per point (batch 2000)",
                 f"{_per_op(lambda: psi.blind_points(scalar, points), _BATCH):.1f}"))
    rows.append(("  fedgate hash_to_point, per id (curve only)",
                 f"{_per_op(lambda: [psi.hash_to_point(_DOMAIN, i) for i in idents], _BATCH):.1f}"))
    rows.append(("  fedgate hash_and_blind, per id",
                 f"{_per_op(lambda: psi.hash_and_blind(scalar, _DOMAIN, idents), _BATCH):.1f}"))

    try:
        from Crypto.PublicKey import ECC
    except ImportError:
        rows.append(("P-256 (pycryptodome)", "not installed"))
    else:
        key = ECC.generate(curve="P-256")
        base = key.pointQ
        k = int.from_bytes(os.urandom(32), "big") % int(key._curve.order)
        rows.append(("P-256 (pycryptodome ECC): point * scalar",
                     f"{_per_op(lambda: base * k, 1, 300):.1f}"))
        encoded = key.public_key().export_key(format="SEC1", compress=True)

        def p256_full() -> bytes:
            q = ECC.import_key(encoded, curve_name="P-256").pointQ * k
            return ECC.construct(curve="P-256", point_x=q.x, point_y=q.y).export_key(
                format="SEC1", compress=True)

        rows.append(("  with SEC1 compressed decode + encode",
                     f"{_per_op(p256_full, 1, 300):.1f}"))

    try:
        import pysodium
        r_point = pysodium.crypto_core_ristretto255_from_hash(hashlib.sha512(b"x").digest())
        r_scalar = pysodium.crypto_core_ristretto255_scalar_random()
    except (ImportError, OSError, ValueError) as exc:
        rows.append(("ristretto255 (pysodium/libsodium)", f"unavailable: {type(exc).__name__}"))
    else:
        rows.append(("ristretto255 (pysodium/libsodium): scalar mult",
                     f"{_per_op(lambda: pysodium.crypto_scalarmult_ristretto255(r_scalar, r_point), 1, 2000):.1f}"))
        rows.append(("  hash to group (SHA-512 + from_hash), per id",
                     f"{_per_op(lambda: [pysodium.crypto_core_ristretto255_from_hash(hashlib.sha512(i).digest()) for i in idents], _BATCH):.1f}"))

    key32 = psi.new_psi_key()
    many = idents * 10
    rows.append(("HMAC-SHA256 token: fedgate hmac_tokens, per id",
                 f"{_per_op(lambda: psi.hmac_tokens(key32, _DOMAIN, many), len(many)):.2f}"))
    rows.append(("  hmac.digest one-shot (re-keys every id), per id",
                 f"{_per_op(lambda: [hmac.digest(key32, i, 'sha256')[:16] for i in many], len(many)):.2f}"))
    return rows


def _intersect() -> list[tuple[str, str]]:
    import numpy as np

    from fedgate.crypto.intersect import Intersector

    n = 1_000_000
    rng = np.random.default_rng(7)
    left = rng.bytes(n * psi.TOKEN_BYTES)
    right_tokens = np.frombuffer(rng.bytes(n * psi.TOKEN_BYTES), dtype="V16").copy()
    right_tokens[: n // 2] = np.frombuffer(left, dtype="V16")[rng.permutation(n)[: n // 2]]
    right = right_tokens.tobytes()
    del right_tokens
    tracemalloc.start()
    box = Intersector(max_tokens_per_side=n)
    start = time.perf_counter()
    for chunk in psi.split(left, psi.TOKEN_BYTES, psi.MAX_CHUNK_TOKENS):
        box.add("left", chunk)
    for chunk in psi.split(right, psi.TOKEN_BYTES, psi.MAX_CHUNK_TOKENS):
        box.add("right", chunk)
    added = time.perf_counter()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    result = box.finish()
    done = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    assert result.cardinality == n // 2, result.cardinality
    return [
        ("Intersector 1M x 1M (16 B, 500k common): add all chunks", f"{(added - start) * 1e3:.0f} ms"),
        ("  finish", f"{(done - added) * 1e3:.0f} ms"),
        ("  extra traced peak during finish", f"{peak / 2**20:.0f} MiB"),
    ]


def main() -> int:
    rows = _rows()
    if "--intersect" in sys.argv[1:]:
        rows += _intersect()
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  us/op")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
