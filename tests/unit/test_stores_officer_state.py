"""The officer's kept state (last verified checkpoint and leaf hashes) under concurrent saves."""

from __future__ import annotations

import threading
from pathlib import Path

from fedgate.client.audit_verify import TrustedState


def test_two_verifications_saving_the_officer_state_at_once_leave_a_whole_state(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def save(n: int) -> None:
        state = TrustedState(f"note {n}\n", tuple(bytes([n]) * 32 for _ in range(2000 + n)))
        start.wait()
        try:
            for _ in range(50):
                state.save(tmp_path)
        except BaseException as exc:  # before: FileNotFoundError when another save moved "leaves.tmp"
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    loaded = TrustedState.load(tmp_path)
    assert loaded is not None and loaded.checkpoint_note.startswith("note ")
    writer = loaded.leaf_hashes[0][0]
    assert loaded.leaf_hashes == tuple(bytes([writer]) * 32 for _ in range(2000 + writer))  # one save's whole file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "leaves"]  # no temporary file left
