"""Private comparison, flag only (docs/architecture.md, Protocols 5), sans-I/O.

The gateway holds ``E(x)`` and ``E(y)`` under the supervisor's Paillier key and
public integer weights ``a``, ``b`` (ratios by scaling: ``5x > 6y``). It sends
the supervisor

    E(v),   v = r·(a·x − b·y − 1) + r',   r uniform in [2^R_MIN_BITS, 2^R_MAX_BITS), r' uniform in [0, r)

(``blind_comparison``), and the supervisor learns only ``decide(v)``, which is
``a·x > b·y``. With ``D = a·x − b·y − 1``: if ``D >= 0`` then ``v >= 0``; if
``D <= −1`` then ``v <= −r + r' < 0``. So ``v >= 0`` exactly when
``a·x >= b·y + 1``, that is ``a·x > b·y`` for integers. Ties give ``D = −1`` and
``False``.

**Range.** ``v`` must stay inside phe's signed plaintext range
``|v| <= max_int = n // 3 − 1`` or it wraps and decodes with the wrong sign
(or raises). With ``|x| <= X``, ``|y| <= Y``: ``|D| <= |a|·X + |b|·Y + 1 =: M``
and ``|v| < 2^R_MAX_BITS · (M + 1)``, so we require
``2^R_MAX_BITS · (M + 1) <= max_int``; for a 2048-bit key that allows
``|a·x − b·y|`` up to about ``2^(2046 − 80) = 2^1966``.
``check_comparison_fits`` enforces this from *declared* bounds (the inputs are
encrypted, so only their declared bounds can be checked); the ciphertexts must
really encrypt values within them, which the value holders' declarations and
their own ``encode`` check guarantee.

**What the supervisor learns beyond the flag.** ``r' < r`` hides the low bits
of ``r·D``, and ``r`` hides ``|D|`` only up to its spread: since ``r`` is
uniform, ``|v| / |D|`` is usually within a small factor of ``2^R_MAX_BITS``, so
``log2 |v| − R_MAX_BITS`` estimates ``log2 |D|`` to within a few bits, and
``v`` in ``[0, 2^R_MAX_BITS)`` says ``D`` is 0 (``a·x = b·y + 1``) or small.
That is the leakage the design accepts ("r uniform over a wide range"); widening
the range does not reduce it, a log-uniform ``r`` would (see docs/paillier.md).

**Randomness.** The result is ``(E(x)^a · E(y)^(−b) · E(−1))^r · E(r')``
where ``E(r')`` is a fresh ``FastEncryptor`` encryption, so it is re-randomised
against everyone but the key holder; pass it through
``FastEncryptor.rerandomise_full`` (``full_rerandomise=True``) when the
supervisor must not be able to analyse its randomness either (see
``fedgate.crypto.paillier``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from fedgate.core.errors import LocalProtocolError

from .paillier import FastEncryptor, PlaintextOverflow, decode, max_int

__all__ = [
    "Packing",
    "R_MAX_BITS",
    "R_MIN_BITS",
    "blind_comparison",
    "check_comparison_fits",
    "decide",
    "decide_residue",
    "max_comparison_difference",
    "pack_comparisons",
    "packing_for",
    "unpack_flags",
]

# r is uniform in [2**R_MIN_BITS, 2**R_MAX_BITS): at least 2**64 as the design asks.
R_MIN_BITS = 64
R_MAX_BITS = 80


def max_comparison_difference(n: int) -> int:
    """Largest ``M`` with ``|a·x − b·y − 1| <= M`` for which ``v`` cannot wrap under modulus ``n``."""
    return max(max_int(n) // (1 << R_MAX_BITS) - 1, 0)


def check_comparison_fits(a: int, b: int, x_bound: int, y_bound: int, n: int) -> None:
    """Raise ``PlaintextOverflow`` if ``|x| <= x_bound``, ``|y| <= y_bound`` could make ``v`` wrap."""
    if x_bound < 0 or y_bound < 0:
        raise PlaintextOverflow("declared bounds must be non-negative")
    worst = abs(a) * x_bound + abs(b) * y_bound + 1
    if worst > max_comparison_difference(n):
        raise PlaintextOverflow(f"a comparison with a difference of up to {worst.bit_length()} bits "
                                f"does not fit a {n.bit_length()}-bit key")


def blind_comparison(enc: FastEncryptor, cx: int, cy: int, a: int, b: int, *,
                     x_bound: int, y_bound: int, full_rerandomise: bool = False) -> int:
    """``E(r·(a·x − b·y − 1) + r')`` from ``cx = E(x)``, ``cy = E(y)``, with fresh ``r > r' >= 0``.

    ``x_bound`` and ``y_bound`` are the declared bounds on ``|x|`` and ``|y|``;
    ``PlaintextOverflow`` if they allow a wrap (``check_comparison_fits``).
    ``full_rerandomise`` adds a phe-style re-randomisation (about one phe
    encryption) so that even the key holder sees a uniformly random ciphertext.
    """
    check_comparison_fits(a, b, x_bound, y_bound, enc.n)
    r = (1 << R_MIN_BITS) + secrets.randbelow((1 << R_MAX_BITS) - (1 << R_MIN_BITS))
    r_prime = secrets.randbelow(r)
    # E(D) with the small public weights first, then one power by the wide r:
    # E(r·D) = (E(x)^a · E(y)^(−b) · E(−1))^r. E(−1) is the trivial encryption
    # 1 + (n − 1)·n; the fresh E(r') multiplied in last makes the result random.
    difference = enc.add_plain(enc.add(enc.scalar_mul(cx, a), enc.scalar_mul(cy, -b)), -1)
    result = enc.add(enc.scalar_mul(difference, r), enc.encrypt(r_prime))
    return enc.rerandomise_full(result) if full_rerandomise else result


# --- packing several blinded comparisons into one ciphertext ---------------
#
# Decryption costs the supervisor about 2.6 ms per ciphertext (2048-bit key),
# and a comparison result needs only ~150 bits of a ~2046-bit plaintext. The
# gateway therefore packs k results into one ciphertext by Horner's rule,
# P = (…(E(u_{k−1})^(2^S) · E(u_{k−2}))^(2^S) …) · E(u_0), with each slot
# u_i = v_i + 2^offset_bits made non-negative; S squarings per slot cost about
# as much as one fast encryption. The supervisor learns exactly the k values it
# would have decrypted one by one: no more, no less.


@dataclass(frozen=True)
class Packing:
    """How blinded comparisons sit in one plaintext: ``slots`` slots of ``slot_bits`` bits."""

    offset_bits: int
    slot_bits: int
    slots: int


def packing_for(a: int, b: int, x_bound: int, y_bound: int, n: int) -> Packing:
    """The densest packing in which no blinded value can spill into its neighbour or wrap."""
    check_comparison_fits(a, b, x_bound, y_bound, n)
    worst = abs(a) * x_bound + abs(b) * y_bound + 1            # |D| <= worst
    offset_bits = R_MAX_BITS + (worst + 1).bit_length()       # |v| < 2^R_MAX·(worst+1) <= 2^offset_bits
    slot_bits = offset_bits + 1                                # 0 <= v + 2^offset_bits < 2^slot_bits
    slots = (max_int(n).bit_length() - 1) // slot_bits        # packed < 2^(slots·slot_bits) <= max_int
    if slots < 1:
        raise PlaintextOverflow(f"a {slot_bits}-bit comparison does not fit a {n.bit_length()}-bit key")
    return Packing(offset_bits, slot_bits, slots)


def pack_comparisons(enc: FastEncryptor, blinded: Sequence[int], packing: Packing) -> int:
    """One ciphertext holding ``blinded[i] + 2^offset_bits`` in slot ``i`` (at most ``packing.slots``)."""
    if not 0 < len(blinded) <= packing.slots:
        raise LocalProtocolError(f"pack 1 to {packing.slots} comparisons, not {len(blinded)}")
    shift = 1 << packing.slot_bits
    packed = blinded[-1]
    for c in reversed(blinded[:-1]):
        packed = enc.add(enc.scalar_mul(packed, shift), c)
    offsets = sum(1 << (packing.offset_bits + i * packing.slot_bits) for i in range(len(blinded)))
    return enc.add_plain(packed, offsets)


def unpack_flags(plaintext: int, count: int, packing: Packing) -> list[bool]:
    """The ``count`` flags ``a·x > b·y`` from a decrypted packed plaintext."""
    if plaintext < 0 or plaintext >> (count * packing.slot_bits):
        raise PlaintextOverflow("packed comparison plaintext is out of range: wrong key or corrupted result")
    mask = (1 << packing.slot_bits) - 1
    offset = 1 << packing.offset_bits
    return [decide(((plaintext >> (i * packing.slot_bits)) & mask) - offset) for i in range(count)]


def decide(plaintext: int) -> bool:
    """The flag ``a·x > b·y`` from the decrypted, signed-decoded ``v`` (phe's ``decrypt`` output).

    phe's ``decrypt`` already maps residues above ``n − max_int`` to negative
    integers; pass its result here. Use ``decide_residue`` for a raw residue.
    """
    return plaintext >= 0


def decide_residue(residue: int, n: int) -> bool:
    """``decide`` for a raw residue in ``[0, n)`` (signed-decoded as phe does first)."""
    return decide(decode(residue, n))
