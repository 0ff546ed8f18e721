"""The native engine against its numpy reference, and its behaviour on bad input."""

import numpy as np
import pytest
from seqrec._core import BatchBuilder, SequenceStore
from seqrec.data.reference import (
    popularity_negatives,
    sasrec_batch_reference,
    uniform_negatives_reference,
)
from stats import chi2_critical


def make_store(data):
    return SequenceStore(data.offsets, data.items, data.num_items)


def sasrec_batch(store, users, max_len, num_negatives=1, seed=0):
    """The paper's batch: whole sequences padded to max_len, uniform negatives from unseen items per position."""
    b = BatchBuilder(store, max_len, num_negatives=num_negatives, pad_to_max=True).build(users, seed=seed)
    return b["inputs"], b["targets"], b["negatives"].reshape(len(users), max_len, num_negatives)


def test_inputs_and_positives_equal_reference(small_synthetic) -> None:
    store = make_store(small_synthetic)
    users = np.arange(small_synthetic.num_users, dtype=np.int64)
    for max_len in (1, 7, 50):
        inputs, positives, negatives = sasrec_batch(store, users, max_len, 3, seed=9)
        ref_i, ref_p, ref_n = sasrec_batch_reference(
            small_synthetic.offsets, small_synthetic.items, small_synthetic.num_items, users, max_len, 3
        )
        assert inputs.dtype == np.int64 and negatives.shape == (users.size, max_len, 3)
        np.testing.assert_array_equal(inputs, ref_i)
        np.testing.assert_array_equal(positives, ref_p)
        np.testing.assert_array_equal(negatives == 0, ref_n == 0)


def test_negatives_never_in_history_over_an_epoch(small_synthetic) -> None:
    data = small_synthetic
    store = make_store(data)
    order = np.random.default_rng(0).permutation(data.num_users).astype(np.int64)
    for b, start in enumerate(range(0, order.size, 64)):
        users = order[start : start + 64]
        _, positives, negatives = sasrec_batch(store, users, 20, 2, seed=b)
        for row, u in enumerate(users):
            seen = set(data.sequence(u).tolist())
            real = positives[row] != 0
            negs = negatives[row][real].ravel().tolist()
            assert seen.isdisjoint(negs), f"user {u} got a negative from its history"
            assert all(1 <= x <= data.num_items for x in negs)
            assert (negatives[row][~real] == 0).all()


def test_negatives_uniform_over_unseen_items() -> None:
    # One user who saw 20 of 60 items; pool many draws and test uniformity over the 40 others.
    rng = np.random.default_rng(0)
    seen = rng.choice(np.arange(1, 61), size=20, replace=False).astype(np.int32)
    store = SequenceStore(np.array([0, 20], dtype=np.int64), seen, 60)
    _, _, negatives = sasrec_batch(store, np.zeros(400, dtype=np.int64), 19, 5, seed=3)
    draws = negatives.ravel()
    assert np.isin(draws, seen).sum() == 0
    counts = np.bincount(draws, minlength=61)[1:]
    allowed = np.setdiff1d(np.arange(1, 61), seen)
    observed = counts[allowed - 1]
    expected = draws.size / allowed.size
    chi2 = ((observed - expected) ** 2 / expected).sum()
    # 38,000 draws over 40 items: reject uniformity only at p < 0.001.
    assert chi2 < chi2_critical(allowed.size - 1), chi2
    # Reference sampler passes the same test (the test is not vacuous for a correct sampler).
    ref = uniform_negatives_reference(
        np.array([0, 20]), seen, 60, np.zeros(1, dtype=np.int64), draws.size, np.random.default_rng(1)
    ).ravel()
    ref_counts = np.bincount(ref, minlength=61)[1:][allowed - 1]
    assert ((ref_counts - expected) ** 2 / expected).sum() < chi2_critical(allowed.size - 1)


def test_chi2_detects_a_biased_sampler() -> None:
    # The same statistic rejects a sampler that favours low ids, so the uniformity test has power.
    rng = np.random.default_rng(0)
    allowed = np.arange(1, 41)
    p = np.linspace(1.0, 1.3, allowed.size)
    draws = rng.choice(allowed, size=38_000, p=p / p.sum())
    observed = np.bincount(draws, minlength=41)[1:]
    expected = draws.size / allowed.size
    assert ((observed - expected) ** 2 / expected).sum() > chi2_critical(allowed.size - 1)


def test_uniform_negatives_for_sampled_protocol(small_synthetic) -> None:
    store = make_store(small_synthetic)
    users = np.arange(50, dtype=np.int64)
    out = store.uniform_negatives(users, 100, seed=5)
    assert out.shape == (50, 100)
    for row, u in enumerate(users):
        assert set(small_synthetic.sequence(u).tolist()).isdisjoint(out[row].tolist())
    np.testing.assert_array_equal(out, store.uniform_negatives(users, 100, seed=5))
    assert not np.array_equal(out, store.uniform_negatives(users, 100, seed=6))


def test_user_who_saw_almost_everything() -> None:
    items = np.array([1, 2, 3, 5, 6, 7, 8, 9, 10], dtype=np.int32)  # only 4 unseen
    store = SequenceStore(np.array([0, items.size], dtype=np.int64), items, 10)
    _, _, neg = sasrec_batch(store, np.array([0], dtype=np.int64), 8, 16, seed=1)
    assert set(neg.ravel().tolist()) == {4}


def test_seed_fixes_the_batch_and_rows_are_independent_streams(small_synthetic) -> None:
    store = make_store(small_synthetic)
    users = np.arange(64, dtype=np.int64)
    a = sasrec_batch(store, users, 10, 2, seed=11)
    b = sasrec_batch(store, users, 10, 2, seed=11)
    c = sasrec_batch(store, users, 10, 2, seed=12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[2], c[2])


def test_read_only_inputs_are_accepted() -> None:
    offsets = np.array([0, 3], dtype=np.int64)
    items = np.array([1, 2, 3], dtype=np.int32)
    offsets.flags.writeable = False
    items.flags.writeable = False
    users = np.array([0], dtype=np.int64)
    users.flags.writeable = False
    store = SequenceStore(offsets, items, 5)
    inputs, positives, _ = sasrec_batch(store, users, 4)
    assert inputs.tolist() == [[0, 0, 1, 2]] and positives.tolist() == [[0, 0, 2, 3]]


@pytest.mark.parametrize(
    ("offsets", "items", "num_items", "pattern"),
    [
        ([0, 2], [1, 9], 5, "item id 9 at position 1 is outside 1..=5"),
        ([0, 2], [1, 0], 5, "item id 0 at position 1"),
        ([0, 3], [1, 2], 5, "last offset 3 differs"),
        ([1, 2], [1, 2], 5, "first offset must be 0"),
        ([0, 2, 1], [1, 2], 5, "offsets decrease"),
        ([0, 1], [1], 0, "num_items must be positive, got 0"),
    ],
)
def test_store_rejects_bad_csr(offsets, items, num_items, pattern) -> None:
    with pytest.raises(ValueError, match=pattern):
        SequenceStore(np.array(offsets, dtype=np.int64), np.array(items, dtype=np.int32), num_items)


def test_bad_arguments_raise_python_errors() -> None:
    store = SequenceStore(np.array([0, 2, 5], dtype=np.int64), np.array([1, 2, 3, 1, 2], dtype=np.int32), 3)
    users = np.array([0, 1], dtype=np.int64)
    with pytest.raises(ValueError, match="user index 2 is outside 0..2"):
        sasrec_batch(store, np.array([0, 2], dtype=np.int64), 5)
    with pytest.raises(ValueError, match="user index -1"):
        store.uniform_negatives(np.array([-1], dtype=np.int64), 5)
    with pytest.raises(ValueError, match="max_len must be positive, got 0"):
        sasrec_batch(store, users, 0)
    with pytest.raises(ValueError, match="num_negatives: must be >= 0, got -2"):
        sasrec_batch(store, users, 5, -2)
    with pytest.raises(ValueError, match="n must be positive"):
        store.uniform_negatives(users, 0)
    with pytest.raises(ValueError, match="user 1 has interacted with all 3 items"):
        sasrec_batch(store, users, 5)
    with pytest.raises(TypeError):
        sasrec_batch(store, users.astype(np.int32), 5)
    with pytest.raises(TypeError):
        SequenceStore(np.array([0, 1]), np.array([1], dtype=np.int64), 3)
    with pytest.raises(ValueError, match="users must be a C-contiguous array"):
        sasrec_batch(store, np.array([0, 9, 0, 9], dtype=np.int64)[::2], 5)


def test_popularity_candidates_follow_popularity_and_skip_history() -> None:
    counts = np.array([0, 1, 1, 8, 0, 2], dtype=np.int64)  # item 4 has no count: never drawn
    offsets = np.array([0, 1], dtype=np.int64)
    items = np.array([5], dtype=np.int32)
    out = popularity_negatives(offsets, items, counts, np.array([0]), 20_000, np.random.default_rng(0))
    freq = np.bincount(out.ravel(), minlength=6) / out.size
    assert freq[4] == 0 and freq[5] == 0
    np.testing.assert_allclose(freq[1:4], [0.1, 0.1, 0.8], atol=0.015)  # > 5 standard deviations
