from collections import Counter, defaultdict

import numpy as np
import pytest
from seqrec.data.split import LeaveOneOut
from seqrec.data.synthetic import make_synthetic


def test_deterministic_by_seed() -> None:
    a = make_synthetic(num_users=50, num_items=80, seed=1)
    b = make_synthetic(num_users=50, num_items=80, seed=1)
    c = make_synthetic(num_users=50, num_items=80, seed=2)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.items, c.items)


def test_no_repeats_and_lengths(small_synthetic) -> None:
    lengths = small_synthetic.lengths
    assert lengths.min() >= 5
    for u in range(small_synthetic.num_users):
        seq = small_synthetic.sequence(u)
        assert len(set(seq.tolist())) == seq.size


def test_popularity_is_skewed(small_synthetic) -> None:
    counts = np.sort(small_synthetic.item_counts()[1:])[::-1]
    top_decile = counts[: counts.size // 10].sum() / counts.sum()
    assert top_decile > 0.25  # a uniform catalogue would give 0.10


def test_next_item_is_predictable_from_the_last_one() -> None:
    """A bigram counter learned on training data must beat popularity by a wide margin on test."""
    data = make_synthetic(num_users=1500, num_items=400, num_clusters=10, seed=5)
    split = LeaveOneOut.from_interactions(data)
    counts = split.train_item_counts().astype(float)
    bigrams: dict[int, Counter] = defaultdict(Counter)
    for u in range(data.num_users):
        seq = split.train_items[split.train_offsets[u] : split.train_offsets[u + 1]]
        for a, b in zip(seq[:-1].tolist(), seq[1:].tolist()):
            bigrams[a][b] += 1
    off, items = split.history("test")
    hits = {"pop": 0, "bigram": 0}
    for j, u in enumerate(split.eval_users):
        hist = items[off[u] : off[u + 1]]
        target = split.test_targets[j]
        pop = counts.copy()
        big = counts * 1e-6
        for b, c in bigrams[int(hist[-1])].items():
            big[b] += c
        for name, s in (("pop", pop), ("bigram", big)):
            s[0] = -1
            s[hist] = -1
            hits[name] += int((s > s[target]).sum() < 10)
    assert hits["bigram"] > 3 * hits["pop"], hits


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        make_synthetic(num_items=1)
    with pytest.raises(ValueError):
        make_synthetic(follow_prob=0.9, stay_prob=0.2)
