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


def segments_reference(lengths: np.ndarray, window: int, stride: int, min_items: int) -> list[tuple[int, int]]:
    """What ``BatchBuilder.segments`` returns: (user, end) training windows, newest first per user."""
    out = []
    for u, n in enumerate(lengths.tolist()):
        end = n
        if end < min_items:
            continue
        while True:
            out.append((u, end))
            if stride == 0 or end <= window or end - stride < min_items:
                break
            end -= stride
    return out


def window_reference(
    offsets: np.ndarray, items: np.ndarray, users: np.ndarray, ends: np.ndarray, task: str, max_len: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic part of ``BatchBuilder.build``, left-padded to ``width``.

    SASRec: (inputs, targets) of the last ``max_len`` transitions before ``end``. BERT4Rec: (window, window)
    where window is the last ``max_len`` items before ``end``; the native batch must equal it where
    unmasked, hold the mask token where masked, and the label at masked positions.
    """
    inputs = np.zeros((users.size, width), dtype=np.int64)
    targets = np.zeros((users.size, width), dtype=np.int64)
    for row, (u, end) in enumerate(zip(users.tolist(), ends.tolist())):
        seq = items[offsets[u] : offsets[u] + end].astype(np.int64)
        if task == "sasrec":
            n = min(max(end - 1, 0), max_len)
            if n:
                inputs[row, width - n :] = seq[-n - 1 : -1]
                targets[row, width - n :] = seq[-n:]
        else:
            n = min(end, max_len)
            if n:
                inputs[row, width - n :] = seq[-n:]
                targets[row, width - n :] = seq[-n:]
    return inputs, targets


def proposal_reference(
    mode: str,
    counts: np.ndarray,
    seen: np.ndarray,
    exclude_seen: bool,
    alpha: float = 1.0,
    num_negatives: int = 1,
    num_in_batch: int = 0,
    in_batch_uniform: bool = False,
) -> np.ndarray:
    """The probability of each item (shape (num_items + 1,)) under a sampler's proposal for one user: what
    the native ``*_logq`` arrays hold the log of. In-batch draws follow the training frequency of items, or
    with ``in_batch_uniform`` (a row whose batch holds no other row's target) the uniform over the catalogue
    they fall back to."""
    num_items = counts.size - 1
    freq = np.full(counts.size, 1.0 / num_items) if in_batch_uniform else counts / counts.sum()
    if mode == "popularity":
        w = np.where(counts > 0, counts.astype(float) ** alpha, 0.0)
        w[0] = 0.0
        p = w / w.sum()
        if exclude_seen:
            p = p / (1.0 - p[np.unique(seen)].sum())
        return p
    uniform = np.full(counts.size, 1.0 / (num_items - (np.unique(seen).size if exclude_seen else 0)))
    if mode == "uniform":
        return uniform
    if mode == "in_batch":
        return freq
    return (num_negatives * uniform + num_in_batch * freq) / (num_negatives + num_in_batch)


def pool_reference(
    pool: np.ndarray,
    targets: np.ndarray,
    item_counts: np.ndarray,
    size: int,
    num_items: int,
    sampling: str = "uniform",
    in_batch: bool = False,
    alpha: float = 1.0,
    histories: list[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """What ``BatchBuilder.build`` adds with a batch-wide pool, given the pool it drew (the draw is random).

    Returns ``pool_logq`` and ``targets_logq`` (log P(item in the pool): the sampled part holds an item
    with probability ``size / num_items`` uniformly or ``1 - (1 - p)^size`` by popularity ``p ∝ count **
    alpha``, the batch's T targets with ``1 - (1 - f)^T`` for training frequency ``f``; the pool holds it
    when either does), ``targets_pool`` (the target's index in the pool, -1 when absent or no target) and,
    given ``histories`` (each row's training items), ``pool_hit_rows`` / ``pool_hit_cols``.
    """
    counts = item_counts.astype(np.float64)
    freq = counts / max(counts.sum(), 1.0)
    if sampling == "uniform":
        a = np.full(num_items + 1, size / num_items)
    else:
        w = np.where(counts > 0, counts**alpha, 0.0)
        w[0] = 0.0
        a = 1.0 - (1.0 - w / w.sum()) ** size
    if size == 0:
        a = np.zeros(num_items + 1)
    t = int((targets != 0).sum()) if in_batch else 0
    b = 1.0 - (1.0 - freq) ** t
    logq = np.log(np.maximum(1.0 - (1.0 - a) * (1.0 - b), np.finfo(np.float64).tiny))
    where = np.where(targets != 0, np.searchsorted(pool, targets), -1)
    found = (where >= 0) & (where < pool.size)
    found[found] &= pool[where[found]] == targets[found]
    out = {
        "pool_logq": logq[pool].astype(np.float32),
        "targets_logq": np.where(targets != 0, logq[targets], 0.0).astype(np.float32),
        "targets_pool": np.where(found, where, -1),
    }
    if histories is not None:
        rows, cols = [], []
        for row, seen in enumerate(histories):
            for x in np.unique(seen):
                j = np.searchsorted(pool, x)
                if j < pool.size and pool[j] == x:
                    rows.append(row)
                    cols.append(j)
        out["pool_hit_rows"] = np.asarray(rows, dtype=np.int64)
        out["pool_hit_cols"] = np.asarray(cols, dtype=np.int64)
    return out
