"""The native batch engine (all sampling modes, masking, bucketing, windows, prefetch) against references."""

import json
import multiprocessing as mp
import os
import subprocess
import sys

import numpy as np
import pytest
from seqrec._core import BatchBuilder, SequenceStore
from seqrec.data.reference import (
    popularity_negatives,
    proposal_reference,
    segments_reference,
    window_reference,
)
from seqrec.data.synthetic import make_synthetic
from stats import chi2, chi2_critical


@pytest.mark.parametrize("task", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("pad_to_max", [False, True])
def test_windows_equal_reference(data, store, task: str, pad_to_max: bool) -> None:
    rng = np.random.default_rng(0)
    users = rng.choice(data.num_users, size=64, replace=False).astype(np.int64)
    ends = np.array([rng.integers(1, data.lengths[u] + 1) for u in users], dtype=np.int64)
    builder = BatchBuilder(store, 9, task=task, negatives="none", pad_to_max=pad_to_max, mask_prob=0.3)
    batch = builder.build(users, ends, seed=1)
    width = batch["inputs"].shape[1]
    filled = np.minimum(ends - 1 if task == "sasrec" else ends, 9)
    assert width == (9 if pad_to_max else max(filled.max(), 1))
    ref_in, ref_tgt = window_reference(data.offsets, data.items, users, ends, task, 9, width)
    if task == "sasrec":
        np.testing.assert_array_equal(batch["inputs"], ref_in)
        np.testing.assert_array_equal(batch["targets"], ref_tgt)
        return
    mask_token = data.num_items + 1
    masked = batch["targets"] != 0
    assert (batch["inputs"][masked] == mask_token).all()
    np.testing.assert_array_equal(batch["targets"][masked], ref_tgt[masked])
    np.testing.assert_array_equal(batch["inputs"][~masked], ref_in[~masked])
    assert masked.sum(1).min() >= 1  # every row trains on something
    assert "negatives" not in batch


def test_bert_mask_rate(store) -> None:
    users = np.arange(300, dtype=np.int64)
    builder = BatchBuilder(store, 30, task="bert4rec", negatives="none", mask_prob=0.25)
    masked = total = 0
    for seed in range(5):
        b = builder.build(users, seed=seed)
        real = b["inputs"] != 0
        masked += int((b["targets"] != 0).sum())
        total += int(real.sum())
    # Binomial(total, 0.25), plus the few forced masks; 5 standard deviations.
    sd = np.sqrt(total * 0.25 * 0.75)
    assert abs(masked - 0.25 * total) < 5 * sd + 300 * 5 * 0.75**5, (masked, total)


def one_user_store(num_items: int, seen: np.ndarray, counts_from: np.ndarray | None = None):
    """A store whose user 0 saw ``seen``; user 1 holds ``counts_from`` to shape the popularity counts."""
    seqs = [seen.astype(np.int32)] + ([counts_from.astype(np.int32)] if counts_from is not None else [])
    items = np.concatenate(seqs)
    offsets = np.cumsum([0] + [s.size for s in seqs]).astype(np.int64)
    return SequenceStore(offsets, items, num_items), offsets, items


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_popularity_negatives_follow_counts(exclude_seen: bool, alpha: float) -> None:
    rng = np.random.default_rng(2)
    num_items = 40
    seen = np.arange(1, 9)
    bulk = rng.choice(np.arange(1, num_items + 1), size=3000, p=np.linspace(3, 0.2, num_items) / np.linspace(3, 0.2, num_items).sum())
    store, offsets, items = one_user_store(num_items, seen, bulk)
    builder = BatchBuilder(store, 7, negatives="popularity", num_negatives=20, exclude_seen=exclude_seen, alpha=alpha)
    b = builder.build(np.zeros(300, dtype=np.int64), seed=4)
    neg = b["negatives"][b["targets"] != 0].ravel()
    counts = np.bincount(items, minlength=num_items + 1)
    p = proposal_reference("popularity", counts, seen, exclude_seen, alpha)
    if exclude_seen:
        p[seen] = 0.0
        assert not np.isin(neg, seen).any()
    stat, df = chi2(np.bincount(neg, minlength=num_items + 1).astype(float), p)
    assert stat < chi2_critical(df), stat
    # logq: the log of the reference proposal at each draw and at each target.
    np.testing.assert_allclose(b["negatives_logq"][b["targets"] != 0].ravel(), np.log(p[neg]), rtol=1e-5)
    tgt = b["targets"][b["targets"] != 0]
    ref_t = proposal_reference("popularity", counts, seen, exclude_seen, alpha)[tgt]
    np.testing.assert_allclose(b["targets_logq"][b["targets"] != 0], np.log(ref_t), rtol=1e-5)


def test_in_batch_negatives_come_from_other_rows(data, store) -> None:
    users = np.arange(40, dtype=np.int64)
    builder = BatchBuilder(store, 12, negatives="in_batch", num_negatives=3)
    b = builder.build(users, seed=7)
    counts = np.asarray(store.item_counts())
    freq_p = proposal_reference("in_batch", counts, np.array([], dtype=int), False)
    for row in range(users.size):
        others = np.concatenate([b["targets"][r][b["targets"][r] != 0] for r in range(users.size) if r != row])
        negs = b["negatives"][row][b["targets"][row] != 0].ravel()
        assert np.isin(negs, others).all(), f"row {row} drew a negative outside the other rows' targets"
        np.testing.assert_allclose(b["negatives_logq"][row][b["targets"][row] != 0].ravel(), np.log(freq_p[negs]), rtol=1e-5)
    # Many draws for row 0 follow the multiset of the other rows' targets.
    big = BatchBuilder(store, 12, negatives="in_batch", num_negatives=400).build(users, seed=9)
    draws = big["negatives"][0][big["targets"][0] != 0].ravel()
    others = np.concatenate([big["targets"][r][big["targets"][r] != 0] for r in range(1, 40)])
    stat, df = chi2(np.bincount(draws, minlength=data.num_items + 1).astype(float),
                    np.bincount(others, minlength=data.num_items + 1).astype(float))
    assert stat < chi2_critical(df), stat


def test_mixed_and_shared_negatives(data, store) -> None:
    users = np.arange(60, dtype=np.int64)
    builder = BatchBuilder(store, 10, negatives="mixed", num_negatives=2, num_in_batch=3, shared_negatives=True)
    assert builder.num_negatives == 5
    b = builder.build(users, seed=3)
    assert b["negatives"].shape == (60, 1, 5)
    counts = np.asarray(store.item_counts())
    for row, u in enumerate(users):
        seen = data.sequence(u)
        uni, inb = b["negatives"][row, 0, :2], b["negatives"][row, 0, 2:]
        assert not np.isin(uni, seen).any()
        others = np.concatenate([b["targets"][r][b["targets"][r] != 0] for r in range(60) if r != row])
        assert np.isin(inb, others).all()
        p = proposal_reference("mixed", counts, seen, True, num_negatives=2, num_in_batch=3)
        np.testing.assert_allclose(b["negatives_logq"][row, 0], np.log(p[b["negatives"][row, 0]]), rtol=1e-5)


def test_uniform_logq(data, store) -> None:
    b = BatchBuilder(store, 10, negatives="uniform", num_negatives=2).build(np.arange(20, dtype=np.int64), seed=0)
    for row in range(20):
        n_seen = np.unique(data.sequence(row)).size
        real = b["targets"][row] != 0
        np.testing.assert_allclose(b["negatives_logq"][row][real], -np.log(data.num_items - n_seen), rtol=1e-6)


@pytest.mark.parametrize("task", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("stride", [0, 4, 9])
def test_segments_equal_reference(data, store, task: str, stride: int) -> None:
    builder = BatchBuilder(store, 9, task=task, negatives="none")
    users, ends = builder.segments(np.arange(data.num_users, dtype=np.int64), stride)
    window, min_items = (10, 2) if task == "sasrec" else (9, 1)
    ref = segments_reference(data.lengths, window, stride, min_items)
    assert list(zip(users.tolist(), ends.tolist())) == ref


def test_windows_cover_every_transition(data, store) -> None:
    builder = BatchBuilder(store, 6, negatives="none")
    users, ends = builder.segments(np.arange(data.num_users, dtype=np.int64), 6)
    seen = set()
    for batch in builder.epoch(users, ends, 50, seed=0, epoch=0):
        for row, u in enumerate(batch["users"].tolist()):
            for t in batch["targets"][row][batch["targets"][row] != 0].tolist():
                seen.add((u, t))
    expected = {(u, int(x)) for u in range(data.num_users) for x in data.sequence(u)[1:]}
    assert seen == expected


@pytest.mark.parametrize("bucket", [True, False])
def test_epoch_covers_each_segment_once_and_is_seeded(data, store, bucket: bool) -> None:
    builder = BatchBuilder(store, 20, negatives="uniform", num_negatives=2)
    users, ends = builder.segments(np.arange(data.num_users, dtype=np.int64))
    it = builder.epoch(users, ends, 32, seed=5, epoch=3, bucket=bucket)
    assert len(it) == -(-users.size // 32)
    a = list(it)
    assert sorted(np.concatenate([x["users"] for x in a]).tolist()) == sorted(users.tolist())
    b = list(builder.epoch(users, ends, 32, seed=5, epoch=3, bucket=bucket))
    c = list(builder.epoch(users, ends, 32, seed=5, epoch=4, bucket=bucket))
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert any(not np.array_equal(x["users"], y["users"]) for x, y in zip(a, c))
    padding = sum(int((x["targets"] == 0).sum()) for x in a)
    if bucket:
        fixed = sum(x["inputs"].shape[0] * 20 for x in a) - sum(int((x["targets"] != 0).sum()) for x in a)
        assert padding * 3 < fixed  # length-aware batches pad much less than fixed ones


def test_stopping_an_epoch_early_and_errors_surface(store) -> None:
    builder = BatchBuilder(store, 10)
    users, ends = builder.segments(np.arange(300, dtype=np.int64))
    it = builder.epoch(users, ends, 8, seed=0, epoch=0, prefetch=1)
    next(it)
    del it  # the producer thread must stop rather than block forever
    full_items = np.arange(1, 6, dtype=np.int32)
    full = SequenceStore(np.array([0, 5], dtype=np.int64), full_items, 5)
    it = BatchBuilder(full, 4).epoch(np.array([0], dtype=np.int64), np.array([5], dtype=np.int64), 1, 0, 0)
    with pytest.raises(ValueError, match="user 0 has interacted with all 5 items"):
        next(it)


def test_popularity_negatives_say_when_unseen_items_have_no_weight() -> None:
    """Items never interacted with have popularity 0: a user with unseen items left, all of weight 0, is told
    so (not that they interacted with every item, which is false)."""
    store = SequenceStore(np.array([0, 2], dtype=np.int64), np.array([1, 2], dtype=np.int32), 5)
    with pytest.raises(ValueError, match="user 0 has 3 unseen items, but all of them have sampling weight 0"):
        store.popularity_negatives(np.array([0], dtype=np.int64), 4)
    builder = BatchBuilder(store, 4, num_negatives=2, negatives="popularity")
    with pytest.raises(ValueError, match="3 unseen items, but all of them have sampling weight 0"):
        builder.build(np.array([0], dtype=np.int64))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"task": "gpt"}, "task: must be 'sasrec' or 'bert4rec'"),
        ({"task": "bert4rec", "mask_token": 3}, "mask_token: 3 is a real item id"),
        ({"negatives": "hard"}, "unknown mode"),
        ({"negatives": "mixed", "num_negatives": 1, "num_in_batch": 0}, "need num_negatives >= 1 and num_in_batch >= 1"),
        ({"num_negatives": 0}, "num_negatives must be positive"),
        ({"num_negatives": -1}, "must be >= 0"),
        ({"task": "bert4rec", "mask_prob": 0.0}, "mask_prob"),
        ({"negatives": "popularity", "alpha": -1.0}, "alpha"),
    ],
)
def test_builder_rejects_bad_options(store, kwargs, pattern) -> None:
    with pytest.raises(ValueError, match=pattern):
        BatchBuilder(store, 5, **kwargs)


def test_builder_rejects_bad_calls(store) -> None:
    builder = BatchBuilder(store, 5)
    with pytest.raises(ValueError, match="max_len must be positive"):
        BatchBuilder(store, 0)
    with pytest.raises(ValueError, match="end 999 of user 0 is outside 0..="):
        builder.build(np.array([0], dtype=np.int64), np.array([999], dtype=np.int64))
    with pytest.raises(ValueError, match="ends: expected length 1, got 2"):
        builder.build(np.array([0], dtype=np.int64), np.array([1, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        builder.epoch(np.array([0], dtype=np.int64), np.array([2], dtype=np.int64), 0, 0, 0)
    with pytest.raises(ValueError, match="stride: must be >= 0"):
        builder.segments(np.array([0], dtype=np.int64), -1)
    one = SequenceStore(np.array([0, 1], dtype=np.int64), np.array([1], dtype=np.int32), 1)
    with pytest.raises(ValueError, match="catalogue has 1 item"):
        BatchBuilder(one, 5)


def test_popularity_candidates_match_reference(data, store) -> None:
    users = np.arange(30, dtype=np.int64)
    got = store.popularity_negatives(users, 3000, seed=1)
    ref = popularity_negatives(data.offsets, data.items, data.item_counts(), users, 3000, np.random.default_rng(1))
    counts = data.item_counts()
    for row, u in enumerate(users):
        seen = data.sequence(u)
        assert not np.isin(got[row], seen).any()
        p = proposal_reference("popularity", counts, seen, True)
        p[seen] = 0.0
        for sample in (got[row], ref[row]):  # the numpy reference passes the same test
            stat, df = chi2(np.bincount(sample, minlength=data.num_items + 1).astype(float), p)
            assert stat < chi2_critical(df), (row, stat)


DETERMINISM = """
import json, os, numpy as np
from seqrec.data.synthetic import make_synthetic
from seqrec._core import SequenceStore, BatchBuilder
d = make_synthetic(num_users=3000, num_items=400, mean_length=30.0, seed=4)
s = SequenceStore(d.offsets, d.items, d.num_items)
out = []
for kw in (dict(task="sasrec", negatives="mixed", num_negatives=2, num_in_batch=2),
           dict(task="bert4rec", negatives="popularity", num_negatives=3)):
    b = BatchBuilder(s, 30, **kw)
    u, e = b.segments(np.arange(3000, dtype=np.int64), 10)
    # batches of 2000 sequences: big enough for the engine to use its thread pool
    for batch in b.epoch(u, e, 2000, seed=9, epoch=2):
        out.append(float(sum(np.sum(v * (np.arange(v.size).reshape(v.shape) % 997)) for v in batch.values())))
# The engine's pool threads are named seqrec-<i> (None where /proc does not list a process's threads).
tasks = "/proc/self/task"
pool = [t for t in os.listdir(tasks) if open(f"{tasks}/{t}/comm").read().startswith("seqrec-")] if os.path.isdir(tasks) else None
print(json.dumps({"batches": out, "pool_threads": None if pool is None else len(pool)}))
"""


def test_same_batches_with_one_four_and_sixteen_threads() -> None:
    """README's promise: RAYON_NUM_THREADS=1 and =16 give the same batches (4 as well)."""
    runs = {}
    for threads in ("1", "4", "16"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        res = subprocess.run([sys.executable, "-c", DETERMINISM], env=env, capture_output=True, text=True, check=True)
        runs[threads] = json.loads(res.stdout)
        if runs[threads]["pool_threads"] is not None:  # the run really had that many engine threads
            assert runs[threads]["pool_threads"] == int(threads), runs[threads]["pool_threads"]
    assert len(runs["1"]["batches"]) > 2
    assert runs["4"]["batches"] == runs["1"]["batches"]
    assert runs["16"]["batches"] == runs["1"]["batches"]


def _child_builds(conn) -> None:
    d = make_synthetic(num_users=50, num_items=200, seed=1)
    s = SequenceStore(d.offsets, d.items, d.num_items)
    b = BatchBuilder(s, 10).build(np.arange(50, dtype=np.int64), seed=0)
    conn.send(int(b["inputs"].sum()))


def test_engine_works_in_a_forked_child_after_the_parent_used_its_pool(store) -> None:
    BatchBuilder(store, 10).build(np.arange(300, dtype=np.int64), seed=0)  # the parent's pool is alive
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child_builds, args=(child,))
    proc.start()
    proc.join(timeout=60)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive, "the engine hung in a forked child"
    assert proc.exitcode == 0 and parent.poll(1) and parent.recv() > 0


def test_recycled_buffers_never_change_a_live_batch(store) -> None:
    builder = BatchBuilder(store, 15, negatives="mixed", num_negatives=1, num_in_batch=1)
    users = np.arange(64, dtype=np.int64)
    first = builder.build(users, seed=1)
    kept = {k: v.copy() for k, v in first.items()}
    for seed in range(2, 6):
        builder.build(users, seed=seed)  # freed at once: its buffers go back to the pool
        second = builder.build(users, seed=seed + 10)
        for k, v in first.items():
            np.testing.assert_array_equal(v, kept[k])
        assert not np.shares_memory(second["negatives"], first["negatives"])
    import torch

    tensor = torch.from_numpy(first["inputs"])
    del first
    for seed in range(3):
        builder.build(users, seed=seed)
    assert torch.equal(tensor, torch.from_numpy(kept["inputs"]))


def test_items_never_seen_in_training() -> None:
    # Items 9 and 10 appear nowhere: popularity never draws them, uniform does.
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3], dtype=np.int32)
    store = SequenceStore(np.array([0, 4, 8, 11], dtype=np.int64), items, 10)
    users = np.zeros(200, dtype=np.int64)
    pop = BatchBuilder(store, 3, negatives="popularity", num_negatives=5).build(users, seed=0)["negatives"]
    uni = BatchBuilder(store, 3, negatives="uniform", num_negatives=5).build(users, seed=0)["negatives"]
    assert not np.isin(pop, [9, 10]).any() and np.isin(pop, [5, 6, 7, 8]).all()
    assert np.isin(uni, [9, 10]).any() and not np.isin(uni, [1, 2, 3, 4]).any()
