"""What an officer's pages show of the audit log: its head, proofs and bundles, and a whole-log verification.

Every check here runs against the officer's pinned log key, never against a key the gateway sends.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedgate.client.audit_verify import HASHER, TrustedState, check_inclusion, verify_log
from fedgate.client.gateway import EntryProof, GatewayClient
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.errors import FedgateError, InvalidInput
from fedgate.crypto.checkpoint import Checkpoint, VerifierKey, split_note, verify_checkpoint
from fedgate.crypto.merkle.verify import verify_consistency
from fedgate.crypto.cosignature import WitnessKey, verified_cosigners

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "fedgate-inclusion-proof/v1"
WITNESS_WINDOW = 500  # recent checkpoints searched for each witness's newest cosignature


@dataclass(frozen=True)
class LogHead:
    """The latest signed checkpoint, checked, and how it stands against the officer's saved state."""

    size: int
    root: str
    origin: str
    note: str
    # Department witnesses: (name, newest size it cosigned among the recent checkpoints, verified with a pinned
    # witness key: True, or None when the officer pinned none for it).
    cosigners: tuple[tuple[str, int, bool | None], ...]
    saved_size: int | None = None
    saved_at: str | None = None  # when this officer's state was last saved by a verification
    consistent: bool | None = None  # the latest tree extends the saved one (None: nothing saved)
    problem: str = ""


def _saved(state_dir: Path | None) -> tuple[TrustedState | None, str | None]:
    if state_dir is None:
        return None, None
    state = TrustedState.load(state_dir)
    if state is None:
        return None, None
    when = dt.datetime.fromtimestamp((state_dir / "checkpoint").stat().st_mtime, dt.UTC)
    return state, when.strftime("%Y-%m-%d %H:%M:%S UTC")


async def _cosigners(client: GatewayClient, vkey: VerifierKey, size: int,
                     witnesses: Sequence[WitnessKey]) -> tuple[tuple[str, int, bool | None], ...]:
    """Each witness's newest cosigned checkpoint among the last WITNESS_WINDOW, verified where its key is pinned.

    Departments cosign the checkpoints their tickets carry, not every one, so the head itself (which
    every audited call moves on) is rarely cosigned; how far behind it each witness is says more.
    """
    if not size:
        return ()
    notes = await client.checkpoints(max(1, size - WITNESS_WINDOW + 1), size)
    newest: dict[str, int] = {}
    verified: set[str] = set()
    for at, text in notes.items():
        _, signatures = split_note(text)
        for name, _ in signatures:
            if name != vkey.name and at > newest.get(name, 0):
                newest[name] = at
        # A pinned witness's line that does not verify raises VerificationError: someone was shown another log.
        verified.update(verified_cosigners(text, witnesses))
    pinned = {w.name for w in witnesses}
    return tuple((name, at, (name in verified) if name in pinned else None) for name, at in sorted(newest.items()))


async def read_head(client: GatewayClient, vkey: VerifierKey, state_dir: Path | None,
                    witnesses: Sequence[WitnessKey] = ()) -> LogHead:
    """The gateway's latest checkpoint, verified with the pinned key, its witnesses, and its consistency with the
    saved state."""
    size, note = await client.checkpoint()
    cp = verify_checkpoint(note, vkey.name, vkey.public_key)
    head = LogHead(cp.size, cp.root_hash.hex(), cp.origin, note, await _cosigners(client, vkey, cp.size, witnesses))
    state, saved_at = _saved(state_dir)
    if state is None:
        return head
    saved = verify_checkpoint(state.checkpoint_note, vkey.name, vkey.public_key)
    try:
        if saved.size > cp.size:
            raise FedgateError(f"the gateway's latest tree ({cp.size} entries) is smaller than the one you "
                               f"verified ({saved.size}): the log was truncated, or this is another log")
        if saved.size:
            proof = await client.consistency_proof(saved.size, cp.size)
            verify_consistency(HASHER, saved.size, cp.size, list(proof), saved.root_hash, cp.root_hash)
    except FedgateError as exc:
        return LogHead(**{**vars(head), "saved_size": saved.size, "saved_at": saved_at, "consistent": False,
                          "problem": str(exc)})
    return LogHead(**{**vars(head), "saved_size": saved.size, "saved_at": saved_at, "consistent": True})


@dataclass(frozen=True)
class ProvenEntry:
    """An entry with its inclusion proof, checked by the console against the pinned key."""

    proof: EntryProof
    entry: AuditEntry
    checkpoint: Checkpoint


def check_entry(proof: EntryProof, vkey: VerifierKey) -> ProvenEntry:
    """Check an entry's inclusion proof against its signed checkpoint (VerificationError if it fails)."""
    cp = check_inclusion(proof.index, proof.body, list(proof.hashes), proof.checkpoint, vkey)
    return ProvenEntry(proof, AuditEntry.from_canonical(proof.body), cp)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def proof_bundle(proof: EntryProof, vkey_text: str) -> dict[str, Any]:
    """An offline proof bundle: the entry, its inclusion proof and the signed checkpoint it leads to."""
    return {"format": BUNDLE_FORMAT, "index": proof.index, "size": proof.size, "entry": _b64(proof.body),
            "proof": [_b64(h) for h in proof.hashes], "checkpoint": proof.checkpoint, "log_key": vkey_text.strip(),
            "check": "fedgate audit check-bundle FILE --vkey log-signing.vkey (the key you pinned, not the one "
                     "in the bundle)"}


def read_bundle(data: bytes) -> EntryProof:
    """An EntryProof from a bundle's bytes; InvalidInput naming what is wrong."""
    try:
        obj = json.loads(data)
        if obj.get("format") != BUNDLE_FORMAT:
            raise InvalidInput(f"not a {BUNDLE_FORMAT} bundle (format {str(obj.get('format'))[:64]!r})")
        body = base64.b64decode(obj["entry"], validate=True)
        hashes = tuple(base64.b64decode(h, validate=True) for h in obj["proof"])
        return EntryProof(int(obj["index"]), int(obj["size"]), HASHER.hash_leaf(body), hashes,
                          str(obj["checkpoint"]), body)
    except InvalidInput:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"the bundle is not readable: {type(exc).__name__} {str(exc)[:128]}") from None


@dataclass
class Verification:
    """One whole-log verification's progress, as the page polls it."""

    phase: str = "idle"  # idle, fetching, replaying, done, failed
    fetched: int = 0
    size: int = 0
    started: str = ""
    result: str = ""
    ok: bool | None = None
    witnessed_by: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "fetched": self.fetched, "size": self.size, "started": self.started,
                "result": self.result, "ok": self.ok, "witnessed_by": list(self.witnessed_by)}


class VerificationJob:
    """At most one whole-log verification at a time, run in the console's loop; the page polls its state."""

    def __init__(self, vkey: VerifierKey, state_dir: Path | None, witnesses: Sequence[WitnessKey] = (),
                 quorum: int = 0) -> None:
        self._vkey, self._state_dir, self._witnesses, self._quorum = vkey, state_dir, witnesses, quorum
        self.state = Verification()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, client: GatewayClient) -> bool:
        """Start a verification; False if one is running already."""
        if self.running:
            return False
        self.state = Verification(phase="fetching",
                                  started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
        self._task = asyncio.get_running_loop().create_task(self._run(client))
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, client: GatewayClient) -> None:
        state = self.state
        try:
            size, latest = await client.checkpoint()
            state.size = size
            notes = await client.checkpoints(1, size) if size else {}
            items: list[tuple[int, bytes]] = []
            async for item in client.entries(0, size):
                items.append((item.audit_index, item.body))
                state.fetched = len(items)
            state.phase = "replaying"
            trusted = TrustedState.load(self._state_dir) if self._state_dir else None
            report = await asyncio.to_thread(verify_log, items, notes, latest, self._vkey, trusted,
                                             witnesses=self._witnesses, quorum=self._quorum)
            if self._state_dir:
                TrustedState(report.latest_note, report.leaf_hashes).save(self._state_dir)
            state.ok, state.phase, state.witnessed_by = True, "done", report.witnessed_by
            state.result = (f"{report.size} entries verified against {report.checkpoints_checked} signed "
                            f"checkpoints; root {report.root.hex()}")
        except FedgateError as exc:
            state.ok, state.phase = False, "failed"
            state.result = exc.diagnostics()
        except Exception as exc:  # shown on the page; the console keeps serving
            log.exception("log verification failed")
            state.ok, state.phase = False, "failed"
            state.result = f"verification stopped: {type(exc).__name__}"
