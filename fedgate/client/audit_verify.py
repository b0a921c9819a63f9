"""Replaying the audit log against signed and trusted checkpoints (`fedgate audit verify`).

Pure: it takes the entries and checkpoints a gateway served and the keys and
state the officer trusts, and raises ``LogTampered`` naming the first bad index.
The officer's state directory holds the last verified checkpoint and the leaf
hashes up to it, so a log rewritten even with the real signing key is caught
and located on the next run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedgate.core.audit_entry import AuditEntry
from fedgate.crypto.checkpoint import Checkpoint, VerifierKey, verify_checkpoint
from fedgate.crypto.cosignature import WitnessKey, verified_cosigners
from fedgate.crypto.merkle import RFC6962_SHA256, CompactRange, verify_inclusion
from fedgate.core.errors import FedgateError, VerificationError

HASHER = RFC6962_SHA256


class LogTampered(VerificationError):
    """The log does not match what was signed or trusted; `index` is the first bad entry."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"audit log fails verification at index {index}: {reason}")
        self.index = index
        self.reason = reason


@dataclass(frozen=True)
class TrustedState:
    """What an officer verified before: a signed checkpoint and the leaf hashes it covers."""

    checkpoint_note: str
    leaf_hashes: tuple[bytes, ...]

    @classmethod
    def load(cls, directory: Path) -> TrustedState | None:
        note_path, leaves_path = directory / "checkpoint", directory / "leaves"
        if not note_path.exists():
            return None
        raw = leaves_path.read_bytes() if leaves_path.exists() else b""
        if len(raw) % 32:
            raise FedgateError(f"{leaves_path}: corrupt (length is not a multiple of 32)")
        return cls(note_path.read_text(), tuple(raw[i:i + 32] for i in range(0, len(raw), 32)))

    def save(self, directory: Path) -> None:
        """Replace the kept state; two verifications saving at once each write whole files."""
        directory.mkdir(parents=True, exist_ok=True)
        # Temporary names of our own: with a shared "leaves.tmp" a second `audit verify` saving
        # at the same moment truncated or moved the first one's file (FileNotFoundError).
        _replace(directory / "leaves", b"".join(self.leaf_hashes))
        _replace(directory / "checkpoint", self.checkpoint_note.encode())


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class VerifyReport:
    size: int
    root: bytes
    checkpoints_checked: int
    latest_note: str
    leaf_hashes: tuple[bytes, ...]
    witnessed_by: tuple[str, ...] = ()  # pinned witnesses that cosigned a checkpoint past the newest query entry


def _open(note: str, vkey: VerifierKey, origin: str | None, what: str, index: int) -> Checkpoint:
    try:
        return verify_checkpoint(note, vkey.name, vkey.public_key, origin=origin)
    except VerificationError as exc:
        raise LogTampered(index, f"{what} does not verify with the pinned key ({exc}); "
                                 "was the signing key replaced?") from None


def _cosigners(note: str, witnesses: Sequence[WitnessKey], size: int) -> dict[str, int]:
    if not witnesses:
        return {}
    try:
        return verified_cosigners(note, witnesses)
    except VerificationError as exc:
        raise LogTampered(max(size - 1, 0), f"split view at size {size}: {exc}; the log now shows another "
                                            "tree than the one this department verified") from None


def verify_log(entries: Iterable[tuple[int, bytes]], checkpoints: Mapping[int, str], latest_note: str,
               vkey: VerifierKey, trusted: TrustedState | None = None, origin: str | None = None,
               witnesses: Sequence[WitnessKey] = (), quorum: int = 0) -> VerifyReport:
    """Replay every entry; raise LogTampered at the first index that breaks a signed or trusted root.

    With `witnesses` pinned, every cosignature by one of them must verify (else the log showed someone
    another tree: a split view), and `quorum` of them must have cosigned a checkpoint covering the
    newest pre-access entry (the only kind a ticket proves): departments refuse the tickets of a log
    cut and re-signed, so what it logs after the cut carries no cosignature.
    """
    if not 0 <= quorum <= len(witnesses):
        raise FedgateError(f"a quorum of {quorum} witnesses needs at least that many pinned witness keys "
                           f"({len(witnesses)} given)")
    trusted_cp = None
    if trusted:
        try:
            trusted_cp = verify_checkpoint(trusted.checkpoint_note, vkey.name, vkey.public_key, origin=origin)
        except VerificationError as exc:
            raise VerificationError(f"the locally trusted checkpoint does not verify with the pinned key: {exc}; "
                                    "check the --vkey file and the state directory") from None
    tree = CompactRange(HASHER)
    leaves: list[bytes] = []
    checked = 0
    newest_started = -1                  # index of the newest pre-access entry
    witnessed_up_to: dict[str, int] = {}  # witness -> largest size it cosigned
    for position, (index, body) in enumerate(entries):
        if index != position:
            raise LogTampered(position, f"expected entry {position}, found entry {index} "
                                        "(an entry was dropped or the log reordered)")
        try:
            if AuditEntry.from_canonical(body).status == "STARTED":
                newest_started = index
        except FedgateError:
            raise LogTampered(index, "entry is not a canonical audit entry (it was edited)") from None
        leaf = HASHER.hash_leaf(body)
        if trusted and index < len(trusted.leaf_hashes) and trusted.leaf_hashes[index] != leaf:
            raise LogTampered(index, "entry differs from the one verified earlier (rewritten, dropped or reordered)")
        tree.append(leaf)
        leaves.append(leaf)
        size = index + 1
        note = checkpoints.get(size)
        if note is not None:
            cp = _open(note, vkey, origin, f"the checkpoint for size {size}", index)
            checked += 1
            if cp.size != size or cp.root_hash != tree.root():
                raise LogTampered(index, f"the entries up to here do not hash to the root signed at size {size} "
                                         "(an entry was rewritten, dropped or reordered)")
            for name in _cosigners(note, witnesses, size):
                witnessed_up_to[name] = size
        if trusted_cp and size == trusted_cp.size and trusted_cp.root_hash != tree.root():
            raise LogTampered(index, "the entries up to here no longer hash to the trusted checkpoint's "
                                     "root; the bad entry is at or before this index")
    size = tree.size
    latest = _open(latest_note, vkey, origin, "the latest checkpoint", max(size - 1, 0))
    if trusted_cp and trusted_cp.size > size:
        raise LogTampered(size, f"log truncated: it has {size} entries but a checkpoint for "
                                f"{trusted_cp.size} was verified before")
    if latest.size > size:
        raise LogTampered(size, f"log truncated: it has {size} entries but its latest checkpoint "
                                f"is for {latest.size}")
    if latest.size < size:
        raise LogTampered(latest.size, f"entries beyond the latest checkpoint (size {latest.size}) "
                                       "are not covered by any signature")
    if latest.root_hash != tree.root():
        raise LogTampered(max(size - 1, 0), "the log does not hash to its latest signed root")
    for name in _cosigners(latest_note, witnesses, size):
        witnessed_up_to[name] = size
    # Sizes > newest_started cover the newest pre-access entry.
    witnessed = sorted(name for name, at in witnessed_up_to.items() if at > newest_started)
    if newest_started >= 0 and len(witnessed) < quorum:
        missing = ", ".join(sorted(w.name for w in witnesses if w.name not in witnessed))
        raise LogTampered(newest_started, f"missing cosignatures: {len(witnessed)} of the {quorum} witnesses "
                                          f"required cosigned a checkpoint covering this query entry (none from "
                                          f"{missing}); the departments did not verify the log up to it")
    return VerifyReport(size, tree.root(), checked, latest_note, tuple(leaves), tuple(witnessed))


def check_inclusion(index: int, body: bytes, proof: list[bytes], note: str, vkey: VerifierKey) -> Checkpoint:
    """Verify one entry's inclusion proof against a signed checkpoint; returns the checkpoint."""
    cp = _open(note, vkey, None, "the checkpoint", index)
    verify_inclusion(HASHER, index, cp.size, HASHER.hash_leaf(body), proof, cp.root_hash)
    return cp
