"""Coverage-guided fuzzing (atheris, libFuzzer) of the parsers hostile peers can reach, bounded by iterations.

Targets: the identifier normaliser, the filter parser, signed notes / checkpoints /
ticket claims / verifier keys, and the Merkle proof verifiers. Each property is the
same as in ``test_fuzz_parsers.py``: only the documented fedgate errors, canonical
forms are fixed points, and nothing is accepted that was not signed.

libFuzzer ends the process it runs in, so every target runs in a child process:
this file is also the harness (``python test_atheris_fuzz.py <target> <libFuzzer
flags>``). Seeds are valid inputs, so mutations start from deep inside the parsers.
atheris is optional (it is not a project dependency); without it the tests skip.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

RUNS = 20_000  # iterations per target: a few seconds each on 2 cores
MAX_SECONDS = 15  # a hard stop should a target slow down
TARGETS = ("ids", "filters", "notes", "proofs")

pytestmark = pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                                reason="atheris is not installed (optional: pip install atheris)")

# Words libFuzzer may splice into filter text.
FILTER_DICT = ["and", "or", "not", "in", "is", "null", "=", "!=", "<=", ">=", "(", ")", "','", "''", "-",
               "amount", "name", "born", "'2024-02-29'", "999999999999999999", ";", "--", "DROP TABLE t"]


@pytest.mark.parametrize("target", TARGETS)
def test_atheris(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"  # the child writes its seeds here
    corpus.mkdir()
    flags = [f"-runs={RUNS}", f"-max_total_time={MAX_SECONDS}", "-seed=1", "-max_len=4096", "-rss_limit_mb=2048",
             f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"]
    if target == "filters":
        words = tmp_path / "filters.dict"
        words.write_text("".join(f'"{w}"\n' for w in FILTER_DICT), encoding="utf-8")
        flags.append(f"-dict={words}")
    out = subprocess.run([sys.executable, __file__, target, *flags, str(corpus)],
                         capture_output=True, text=True, timeout=MAX_SECONDS + 60)
    log = out.stdout + out.stderr
    assert "Uncaught Python exception" not in log and out.returncode == 0, log[-4000:]
    assert f"Done {RUNS} runs" in log or "max_total_time" in log, log[-2000:]
    assert not list(tmp_path.glob("crash-*")), log[-2000:]


# ---------------------------------------------------------------------------
# The harness (child process)
# ---------------------------------------------------------------------------


def _main(argv: list[str]) -> None:  # pragma: no cover - runs under libFuzzer
    import datetime as dt
    import hashlib

    import atheris

    with atheris.instrument_imports():
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from fedgate.core import filters
        from fedgate.crypto import ids
        from fedgate.crypto.checkpoint import (
            Checkpoint,
            encode_verifier_key,
            open_note,
            parse_verifier_key,
            sign_checkpoint,
            verify_checkpoint,
        )
        from fedgate.crypto.merkle import (
            RFC6962_SHA256,
            consistency_proof,
            inclusion_proof,
            root_from_leaf_hashes,
            verify_consistency,
            verify_inclusion,
        )
        from fedgate.crypto.ticket import TicketClaims, sign_claims
        from fedgate.core.datasets import FieldType
        from fedgate.core.errors import InvalidIdentifier, InvalidInput, MalformedProof, RootMismatch, VerificationError

    target, flags = argv[1], argv[2:]
    kinds = list(ids.IdKind)
    types = {"amount": FieldType.INT, "name": FieldType.STRING, "born": FieldType.DATE}

    def fuzz_ids(data: bytes) -> None:
        kind = kinds[data[0] % len(kinds)] if data else ids.IdKind.PLAIN
        text = data[1:].decode("utf-8", "replace")
        try:
            value = ids.normalise(kind, text)
        except InvalidIdentifier as err:
            if not str(err).isascii() or len(str(err)) > 200:
                raise AssertionError(f"unclean message: {err!r}") from None
            return
        if ids.normalise(kind, value) != value or not ids.is_valid(kind, value):
            raise AssertionError("canonical form is not a fixed point")

    def fuzz_filters(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        try:
            f = filters.parse(text)
        except InvalidInput as err:
            if "\n" in str(err) or len(str(err)) > 200 or not str(err).startswith("filter: "):
                raise AssertionError(f"unclean message: {err!r}") from None
            return
        if filters.parse(filters.to_text(f)) != f or "'" in filters.redacted_text(f):
            raise AssertionError("canonical text does not round-trip")
        try:
            filters.check(f, types)
        except InvalidInput:
            pass

    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"atheris log key").digest())
    origin = "fedgate.test/audit"
    leaves = [RFC6962_SHA256.hash_leaf(b"entry %d" % i) for i in range(11)]
    checkpoint = Checkpoint(origin, 11, root_from_leaf_hashes(RFC6962_SHA256, leaves))
    claims = TicketClaims("hrss", "0123456789abcdef0123456789abcdef", 7, hashlib.sha256(b"e").digest(), 10**9,
                          10**9 - 60)
    signed_bodies = {checkpoint.to_text(), claims.to_text()}
    vkey_text = encode_verifier_key(origin, key.public_key())

    def fuzz_notes(data: bytes) -> None:
        try:
            body = open_note(data, origin, key.public_key())
        except VerificationError:
            pass
        else:
            if body not in signed_bodies:
                raise AssertionError("a note opened that the key never signed")
        try:
            cp = verify_checkpoint(data, origin, key.public_key(), origin=origin)
        except VerificationError:
            pass
        else:
            if cp != checkpoint:
                raise AssertionError("a checkpoint verified that the key never signed")
        text = data.decode("utf-8", "replace")
        for parse, back in ((Checkpoint.from_text, lambda v: v.to_text()),
                            (TicketClaims.from_text, lambda v: v.to_text())):
            try:
                value = parse(text)
            except MalformedProof:
                continue
            if back(value) != text:
                raise AssertionError("a body parsed that is not its canonical text")
        try:
            vkey = parse_verifier_key(text)
        except MalformedProof:
            return
        if vkey.name == origin and vkey.public_key.public_bytes_raw() != key.public_key().public_bytes_raw():
            raise AssertionError("a verifier key parsed to another key under the same name")

    def fuzz_proofs(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        size2 = fdp.ConsumeIntInRange(1, len(leaves))
        size1 = fdp.ConsumeIntInRange(1, size2)
        index = fdp.ConsumeIntInRange(0, size2 - 1)
        inclusion = inclusion_proof(leaves, index, size2)
        consistency = consistency_proof(leaves, size1, size2)
        root1 = root_from_leaf_hashes(RFC6962_SHA256, leaves[:size1])
        root2 = root_from_leaf_hashes(RFC6962_SHA256, leaves[:size2])
        # Fuzz bytes, cut into 32-byte pieces, replace the first proof elements (and may add
        # more, or a short one): the proof verifies if and only if it is still the true one.
        raw = fdp.ConsumeBytes(fdp.remaining_bytes())
        pieces = [raw[i:i + 32] for i in range(0, len(raw), 32)]
        for verify, args, good in ((verify_inclusion, (index, size2, leaves[index]), inclusion),
                                   (verify_consistency, (size1, size2), consistency)):
            proof = pieces + good[len(pieces):]
            tail = (root2,) if verify is verify_inclusion else (root1, root2)
            try:
                verify(RFC6962_SHA256, *args, proof, *tail)
            except (MalformedProof, RootMismatch):
                if proof == good:
                    raise AssertionError("a correct proof was refused") from None
            else:
                if proof != good:
                    raise AssertionError("a wrong proof verified")

    fuzzers = {"ids": fuzz_ids, "filters": fuzz_filters, "notes": fuzz_notes, "proofs": fuzz_proofs}
    rid, uscc = ids.make_resident_id("110105", dt.date(1949, 12, 31), 2), ids.make_uscc("91350100M00010000")
    seeds = {
        "ids": [b"\x00" + rid.encode(), b"\x00" + rid[:6].encode() + b" " + rid[6:].lower().encode(),
                b"\x01" + uscc.encode(), b"\x01" + "".join(chr(ord(c) + 0xFEE0) for c in uscc).encode(),
                b"\x02" + " 张 三 ".encode()],
        "filters": [b"amount >= 100000 and name in ('a', 'b''c')", b"not (born < '2024-01-01' or name is null)",
                    b"name = 'x' or (amount = -5 and born is not null)"],
        "notes": [sign_checkpoint(checkpoint, origin, key).encode(), sign_claims(claims, origin, key).encode(),
                  vkey_text.encode(), checkpoint.to_text().encode(), claims.to_text().encode()],
        "proofs": [bytes(range(40)), b"\xff" * 100],
    }
    corpus = Path(flags[-1])
    for i, seed in enumerate(seeds[target]):
        (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup([argv[0], *flags], fuzzers[target])
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv)
