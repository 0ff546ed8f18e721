"""Numpy reference implementations of the native batch builders, and popularity-based candidates.

The references define what the Rust engine must produce: tests compare them output for output (exactly
where deterministic, statistically where random). They are written for clarity, not speed.
"""

from __future__ import annotations

import numpy as np


def _check_users(users: np.ndarray, num_users: int) -> np.ndarray:
    users = np.asarray(users, dtype=np.int64)
    bad = (users < 0) | (users >= num_users)
    if bad.any():
        raise ValueError(f"user index {int(users[bad][0])} is outside 0..{num_users}")
    return users


def _unseen(seq: np.ndarray, num_items: int) -> np.ndarray:
    allowed = np.ones(num_items + 1, dtype=bool)
    allowed[0] = False
    allowed[seq] = False
    return np.flatnonzero(allowed)


def sasrec_batch_reference(
    offsets: np.ndarray,
    items: np.ndarray,
    num_items: int,
    users: np.ndarray,
    max_len: int,
    num_negatives: int = 1,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ``SequenceStore.sasrec_batch`` computes: left-padded inputs, next-item positives, uniform negatives.

    Negatives come from ``rng`` here, so they match the native ones in distribution, not value.
    """
    if max_len <= 0 or num_negatives <= 0:
        raise ValueError(f"max_len and num_negatives must be positive, got {max_len} and {num_negatives}")
    rng = rng or np.random.default_rng(0)
    users = _check_users(users, len(offsets) - 1)
    b = users.size
    inputs = np.zeros((b, max_len), dtype=np.int64)
    positives = np.zeros((b, max_len), dtype=np.int64)
    negatives = np.zeros((b, max_len, num_negatives), dtype=np.int64)
    for row, u in enumerate(users):
        seq = items[offsets[u] : offsets[u + 1]].astype(np.int64)
        n = min(max(seq.size - 1, 0), max_len)
        if n == 0:
            continue
        inputs[row, max_len - n :] = seq[-n - 1 : -1]
        positives[row, max_len - n :] = seq[-n:]
        allowed = _unseen(seq, num_items)
        if allowed.size == 0:
            raise ValueError(f"user {u} has interacted with all {num_items} items: no negative item can be sampled")
        negatives[row, max_len - n :] = rng.choice(allowed, size=(n, num_negatives))
    return inputs, positives, negatives


def uniform_negatives_reference(
    offsets: np.ndarray, items: np.ndarray, num_items: int, users: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` items per user drawn uniformly, with replacement, from the items the user never interacted with."""
    users = _check_users(users, len(offsets) - 1)
    out = np.empty((users.size, n), dtype=np.int64)
    for row, u in enumerate(users):
        allowed = _unseen(items[offsets[u] : offsets[u + 1]], num_items)
        if allowed.size == 0:
            raise ValueError(f"user {u} has interacted with all {num_items} items: no negative item can be sampled")
        out[row] = rng.choice(allowed, size=n)
    return out


def popularity_negatives(
    offsets: np.ndarray,
    items: np.ndarray,
    counts: np.ndarray,
    users: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n`` items per user drawn with probability proportional to ``counts`` (shape (num_items + 1,)),
    with replacement, from the items the user never interacted with (the BERT4Rec paper's protocol)."""
    users = _check_users(users, len(offsets) - 1)
    p = np.asarray(counts, dtype=np.float64).copy()
    p[0] = 0.0
    out = np.empty((users.size, n), dtype=np.int64)
    for row, u in enumerate(users):
        q = p.copy()
        q[items[offsets[u] : offsets[u + 1]]] = 0.0
        total = q.sum()
        if total <= 0:
            raise ValueError(f"user {u} has no unseen item with positive popularity to sample")
        out[row] = rng.choice(q.size, size=n, p=q / total)
    return out
