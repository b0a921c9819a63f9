"""The gateway's spilled stores give what the in-memory ones give: intersections bucket by bucket, ciphertexts by position."""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedgate.core.encryptors import encryptor_for
from fedgate.core.supervisor_keys import SupervisorKey
from fedgate.crypto import psi
from fedgate.crypto.intersect import IntersectionResult, Intersector, TooManyPairs
from fedgate.crypto.paillier import ciphertext_bytes
from fedgate.gateway.homomorphic import encrypted_totals, packed_comparisons
from fedgate.gateway.spill import QuerySpill, SpillConfig, SpilledCiphertexts, SpillingIntersector, remove_leftovers
from fedgate.query.ciphertexts import CipherColumns
from fedgate.crypto.compare import packing_for
from fedgate.server.worker_pool import WorkerPool

# Few distinct tokens, so both sides repeat them (duplicates on both sides make pairs).
POOL = [bytes([i]) * 2 + os.urandom(14) for i in range(0, 256, 17)] + [os.urandom(16) for _ in range(6)]
SIDE = st.lists(st.sampled_from(POOL), max_size=60)
CHUNKS = st.integers(1, 7)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _feed(box: Intersector, left: list[bytes], right: list[bytes], chunk: int) -> None:
    # Interleaved as the pump would: a left chunk, a right chunk, ...
    for i in range(0, max(len(left), len(right)), chunk):
        if left[i:i + chunk]:
            box.add("left", b"".join(left[i:i + chunk]))
        if right[i:i + chunk]:
            box.add("right", b"".join(right[i:i + chunk]))


def _same(a: IntersectionResult, b: IntersectionResult) -> None:
    assert (a.left_size, a.right_size, a.cardinality, a.distinct_matches) == (
        b.left_size, b.right_size, b.cardinality, b.distinct_matches)
    for name in ("left_positions", "right_positions", "pair_left", "pair_right"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name


@FAST
@given(left=SIDE, right=SIDE, chunk=CHUNKS, above=st.integers(0, 40), buckets=st.sampled_from([1, 2, 3, 16, 256]),
       pairs=st.booleans())
def test_bucketed_intersection_equals_the_in_memory_one(left: list[bytes], right: list[bytes], chunk: int, above: int,
                                                        buckets: int, pairs: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spill = QuerySpill(Path(tmp) / "q", above, buckets)
        memory, spilled = Intersector(max_tokens_per_side=100), spill.intersector(100, psi.TOKEN_BYTES)
        _feed(memory, left, right, chunk)
        _feed(spilled, left, right, chunk)
        assert isinstance(spilled, SpillingIntersector)
        assert spilled.spilled == (len(left) + len(right) > above)
        _same(spilled.finish(pairs=pairs, max_pairs=10_000), memory.finish(pairs=pairs, max_pairs=10_000))
        spill.remove()
        assert not (Path(tmp) / "q").exists()


# Tokens sharing long prefixes (splitting by the next bits leaves them together), and tokens in one top-level
# bucket that differ only in their first two bytes (told apart only once the split wraps round to them).
PREFIXED = ([bytes(16 - n) + bytes([n]) * n for n in range(1, 15)] + [b"\x07" * 15 + bytes([i]) for i in range(4)]
            + [bytes([0x40, i]) + b"\x05" * 14 for i in range(3)] + [b"\x41\x00" + b"\x05" * 14])
DEEP_SIDE = st.lists(st.sampled_from(POOL[:3] + PREFIXED), max_size=80)
assert len(set(PREFIXED)) == len(PREFIXED)


@FAST
@given(left=DEEP_SIDE, right=DEEP_SIDE, chunk=CHUNKS, bucket_rows=st.integers(1, 8),
       buckets=st.sampled_from([1, 2, 64]), pairs=st.booleans())
def test_buckets_split_past_bucket_rows_give_the_in_memory_intersection(
        left: list[bytes], right: list[bytes], chunk: int, bucket_rows: int, buckets: int, pairs: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spill = QuerySpill(Path(tmp) / "q", 0, buckets, bucket_rows)
        memory, spilled = Intersector(max_tokens_per_side=100), spill.intersector(100, psi.TOKEN_BYTES)
        _feed(memory, left, right, chunk)
        _feed(spilled, left, right, chunk)
        _same(spilled.finish(pairs=pairs, max_pairs=10_000), memory.finish(pairs=pairs, max_pairs=10_000))
        spill.remove()
        assert not (Path(tmp) / "q").exists()


def test_a_bucket_past_bucket_rows_is_split_and_its_files_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random tokens, one bucket, at most 64 records intersected at once; sub-bucket files are deleted as they are
    done, the positions stay readable in files of the query's until it ends."""
    from fedgate.crypto import intersect as intersect_module
    from fedgate.gateway import spill as spill_module

    rng = np.random.default_rng(16)
    common = rng.bytes(16 * 300)
    left, right = common + rng.bytes(16 * 700), rng.bytes(16 * 500) + common
    sizes: list[int] = []
    match_rows = intersect_module.match_rows

    def recording(rows, n_left, max_pairs):  # type: ignore[no-untyped-def]
        sizes.append(len(rows))
        return match_rows(rows, n_left, max_pairs)

    monkeypatch.setattr(spill_module, "match_rows", recording)
    spill = QuerySpill(tmp_path / "q", 0, 1, 64)
    box = spill.intersector(2000, psi.TOKEN_BYTES)
    box.add("left", left)
    box.add("right", right)
    result = box.finish()
    memory = Intersector(max_tokens_per_side=2000)
    memory.add("left", left)
    memory.add("right", right)
    _same(result, memory.finish())
    assert result.cardinality == 300 and sizes and max(sizes) <= 64 and 600 <= sum(sizes) <= 1800
    names = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "q").iterdir() if p.stat().st_size)
    assert names == ["left-positions", "right-positions"]
    assert isinstance(result.left_positions, np.memmap) and not result.left_positions.flags.writeable
    spill.remove()
    assert not (tmp_path / "q").exists()
    assert result.left_positions.tolist() == list(range(300))


def test_one_token_repeated_past_bucket_rows_is_split_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal tokens cannot be divided: after one split shows a bucket is one token, it is intersected, not split
    once per remaining bit."""
    splits: list[int] = []
    split = SpillingIntersector._split

    def counting(self, fh, offset, bits, parts):  # type: ignore[no-untyped-def]
        splits.append(offset)
        return split(self, fh, offset, bits, parts)

    monkeypatch.setattr(SpillingIntersector, "_split", counting)
    spill = QuerySpill(tmp_path / "q", 0, 1, 8)
    box = spill.intersector(100, psi.TOKEN_BYTES)
    box.add("left", POOL[0] * 40 + POOL[1] * 3)
    box.add("right", POOL[0] * 30)
    result = box.finish(pairs=True, max_pairs=10_000)
    assert (result.cardinality, result.distinct_matches, len(result.pair_left)) == (40, 1, 1200)
    assert result.left_positions.tolist() == list(range(40))
    assert len(splits) <= 8  # a few levels until POOL[0] and POOL[1] part, not 128 bits' worth
    spill.remove()
    assert not (tmp_path / "q").exists()


def test_too_many_pairs_is_refused_across_buckets(tmp_path: Path) -> None:
    spill = QuerySpill(tmp_path / "q", 0, 4)
    box = spill.intersector(100, psi.TOKEN_BYTES)
    a, b = POOL[0], POOL[-1]  # in different buckets: 3x3 + 3x3 pairs, each bucket under the limit of 10
    box.add("left", (a + b) * 3)
    box.add("right", (a + b) * 3)
    with pytest.raises(TooManyPairs, match="more than 10"):
        box.finish(pairs=True, max_pairs=10)


@FAST
@given(rows=st.integers(0, 50), above=st.integers(0, 60), chunk=st.integers(1, 9), data=st.data())
def test_spilled_ciphertexts_are_taken_as_in_memory(rows: int, above: int, chunk: int, data: st.DataObject) -> None:
    width, columns = 8, 2
    payload = os.urandom(rows * columns * width)
    wanted = np.asarray(data.draw(st.lists(st.integers(0, max(rows - 1, 0)), max_size=40 if rows else 0)),
                        dtype=np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        spill = QuerySpill(Path(tmp) / "q", above, 4)
        memory, spilled = CipherColumns("d", columns, width), spill.ciphertexts("d", columns, width)
        for i in range(0, rows, chunk):
            n = min(chunk, rows - i)
            piece = payload[i * columns * width:(i + n) * columns * width]
            memory.add(piece, n)
            spilled.add(piece, n)
        assert isinstance(spilled, SpilledCiphertexts) and spilled.spilled == (rows > above)
        assert spilled.rows == memory.rows
        for column in range(columns):
            assert spilled.take(wanted, column) == memory.take(wanted, column)
        spill.remove()


def test_spill_files_are_private(tmp_path: Path) -> None:
    spill = SpillConfig(tmp_path / "spill", above_rows=0, buckets=2).for_query("abc01234")
    box = spill.intersector(10, psi.TOKEN_BYTES)
    box.add("left", POOL[0])
    assert stat.S_IMODE((tmp_path / "spill" / "abc01234").stat().st_mode) == 0o700
    files = list((tmp_path / "spill" / "abc01234").iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    remove_leftovers(tmp_path / "spill")
    assert not (tmp_path / "spill").exists()


@pytest.mark.parametrize("above", [0, 10_000])
def test_sum_and_comparison_over_spilled_ciphertexts(tmp_path: Path, above: int) -> None:
    key = SupervisorKey.generate()
    enc = encryptor_for(key.public_bytes)
    width = ciphertext_bytes(enc.n)
    values = list(range(1, 41))
    spill = QuerySpill(tmp_path / "q", above, 4)
    store = spill.ciphertexts("d", 1, width)
    for i in range(0, 40, 7):
        part = values[i:i + 7]
        store.add(b"".join(c.to_bytes(width, "big") for c in enc.encrypt_many(part)), len(part))
    positions = np.asarray([0, 3, 4, 17, 39], dtype=np.int64)
    (total,) = asyncio.run(encrypted_totals(WorkerPool(0), key.public_bytes, store, positions))
    assert key.decrypt_total(total) == sum(values[p] for p in positions.tolist())
    # Comparison pairs in pair order, the right positions far apart (read one by one) and more pairs than a batch.
    packing = packing_for(1, 1, 100, 100, key.public_key.n)
    pl = np.repeat(np.arange(40, dtype=np.int64), 2)
    pr = np.asarray([(7 * i) % 40 for i in range(80)], dtype=np.int64)

    async def run() -> bytes:
        return b"".join([c async for c in packed_comparisons(WorkerPool(0), key.public_bytes, store, store, pl, pr,
                                                             1, 1, 100, packing)])
    flags = key.decrypt_flags(asyncio.run(run()), len(pl), packing)
    assert flags == [values[i] > values[j] for i, j in zip(pl.tolist(), pr.tolist())]
    spill.remove()


@pytest.mark.parametrize("query_id", ["", "..", "../x", "a/b"])
def test_a_query_without_a_plain_id_still_spills_into_a_directory_of_its_own(tmp_path: Path, query_id: str) -> None:
    directory = SpillConfig(tmp_path / "spill").for_query(query_id).directory
    assert directory.parent == tmp_path / "spill" and directory.name not in ("", "..")


@pytest.mark.parametrize(("setting", "ok"), [("spill_above_rows = 0", True), ("spill_buckets = 65536", True),
                                             ("spill_bucket_rows = 1", True), ("spill_bucket_rows = 0", False),
                                             ("spill_buckets = 0", False), ("spill_above_rows = -1", False)])
def test_gateway_toml_spill_settings(tmp_path: Path, setting: str, ok: bool) -> None:
    import support
    from fedgate.core.errors import ConfigError
    from fedgate.gateway.config import GatewayConfig

    cfg = tmp_path / "gateway.toml"
    cfg.write_text(support.gateway_toml(tmp_path / "data", tmp_path / "certs").replace("[tls]", f"{setting}\n[tls]"))
    if ok:
        spill_config = GatewayConfig.load(cfg).spill
        assert spill_config.root == tmp_path / "data" / "spill"
        if setting.startswith("spill_bucket_rows"):
            assert spill_config.for_query("abc01234").bucket_rows == 1
    else:
        with pytest.raises(ConfigError, match="spill"):
            GatewayConfig.load(cfg)
