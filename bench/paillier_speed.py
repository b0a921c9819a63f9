"""Time phe's encryption against fedgate's FastEncryptor on this machine (one core).

Usage: python bench/paillier_speed.py [--bits 2048]

Prints milliseconds per operation (best of 3 runs) for one fresh key, the
window-table build time and its memory (``FastEncryptor.table_bytes``), and
checks that every timed fast ciphertext decrypts with phe. About 20 s.
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable

import phe  # type: ignore[import-untyped]

from fedgate.crypto.compare import blind_comparison
from fedgate.crypto.paillier import FastEncryptor

_PHE_OPS = 30
_FAST_OPS = 400


def _ms_per_op(func: Callable[[], object], ops: int) -> float:
    """Best of three runs of ``func`` (which does ``ops`` operations), in ms per operation."""
    return min(timeit.repeat(func, number=1, repeat=3)) / ops * 1e3


def _fast_rows(public_key: phe.PaillierPublicKey, private_key: phe.PaillierPrivateKey,
               values: list[int], exponent_bits: int, phe_ms: float) -> list[tuple[str, str]]:
    """Rows for one FastEncryptor exponent length (speed-up relative to ``phe_ms``)."""
    start = time.perf_counter()
    enc = FastEncryptor(public_key, exponent_bits=exponent_bits)
    build_ms = (time.perf_counter() - start) * 1e3
    one = _ms_per_op(lambda: [enc.encrypt(v) for v in values], len(values))
    many = _ms_per_op(lambda: enc.encrypt_many(values), len(values))
    cs = enc.encrypt_many(values)
    assert all(private_key.decrypt(phe.EncryptedNumber(public_key, c, 0)) == v
               for c, v in zip(cs[:20], values[:20]))
    rerand = _ms_per_op(lambda: [enc.rerandomise(c) for c in cs], len(cs))
    label = f"{exponent_bits}-bit r"
    rows = [
        (f"FastEncryptor.encrypt, {label}", f"{one:.3f}  ({phe_ms / one:.0f}x)"),
        (f"FastEncryptor.encrypt_many, {label}, per value", f"{many:.3f}  ({phe_ms / many:.0f}x)"),
        (f"FastEncryptor.rerandomise, {label}", f"{rerand:.3f}"),
        (f"table build, {label} (ms / MiB)", f"{build_ms:.0f} / {enc.table_bytes() / 2**20:.1f}"),
    ]
    if exponent_bits == 256:
        full = _ms_per_op(lambda: [enc.rerandomise_full(c) for c in cs[:_PHE_OPS]], _PHE_OPS)
        rows.append(("FastEncryptor.rerandomise_full (phe-style rho^n)", f"{full:.2f}"))
        add = _ms_per_op(lambda: enc.sum_ciphertexts(cs), len(cs))
        rows.append(("FastEncryptor.sum_ciphertexts, per ciphertext", f"{add:.4f}"))
        pairs = list(zip(cs[:100], cs[100:200]))
        cmp_ms = _ms_per_op(lambda: [blind_comparison(enc, cx, cy, 5, 6, x_bound=10**13, y_bound=10**13)
                                     for cx, cy in pairs], len(pairs))
        rows.append(("compare.blind_comparison (5x > 6y), per pair", f"{cmp_ms:.2f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=2048)
    args = parser.parse_args()

    public_key, private_key = phe.generate_paillier_keypair(n_length=args.bits)
    values = list(range(-_FAST_OPS // 2, _FAST_OPS // 2))
    rows: list[tuple[str, str]] = []

    phe_ms = _ms_per_op(lambda: [public_key.encrypt(v) for v in values[:_PHE_OPS]], _PHE_OPS)
    rows.append(("phe PublicKey.encrypt", f"{phe_ms:.2f}"))
    sample = public_key.encrypt(12345)
    rows.append(("phe PrivateKey.decrypt",
                 f"{_ms_per_op(lambda: [private_key.decrypt(sample) for _ in range(20)], 20):.2f}"))

    for exponent_bits in (256, 1024):
        rows.extend(_fast_rows(public_key, private_key, values, exponent_bits, phe_ms))

    width = max(len(name) for name, _ in rows)
    print(f"{args.bits}-bit key, one core; ms per operation (best of 3)")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
