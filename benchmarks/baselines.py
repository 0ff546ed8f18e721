"""Batch builders seqrec is compared with: the original SASRec sampler's per-sample Python loop, and the
best vectorised numpy version we could write. Both build exactly the batch of ``BatchBuilder.build`` with
``pad_to_max=True``: left-padded inputs, next-item positives, one uniform unseen negative per position."""

from __future__ import annotations

import numpy as np


def python_loop_batch(offsets: np.ndarray, items: np.ndarray, num_items: int, users: np.ndarray, max_len: int,
                      rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One user at a time, one negative at a time, rejecting seen items from a Python set: the structure of
    the SASRec authors' sampler (and SASRec.pytorch's), which builds each sample like this."""
    seqs, poss, negs = [], [], []
    for u in users.tolist():
        history = items[offsets[u] : offsets[u + 1]].tolist()
        seq = np.zeros(max_len, dtype=np.int64)
        pos = np.zeros(max_len, dtype=np.int64)
        neg = np.zeros(max_len, dtype=np.int64)
        nxt = history[-1]
        idx = max_len - 1
        seen = set(history)
        for i in reversed(history[:-1]):
            seq[idx] = i
            pos[idx] = nxt
            t = rng.randint(1, num_items + 1)
            while t in seen:
                t = rng.randint(1, num_items + 1)
            neg[idx] = t
            nxt = i
            idx -= 1
            if idx == -1:
                break
        seqs.append(seq)
        poss.append(pos)
        negs.append(neg)
    return np.stack(seqs), np.stack(poss), np.stack(negs)[:, :, None]


class NumpyBatcher:
    """Vectorised numpy: gathers by index arithmetic, and rejects seen negatives with one sorted-key search
    per round (keys ``user * (num_items + 1) + item`` of every interaction), redrawing only the rejects."""

    def __init__(self, offsets: np.ndarray, items: np.ndarray, num_items: int):
        self.offsets = offsets
        self.items = items.astype(np.int64)
        self.num_items = num_items
        users = np.repeat(np.arange(offsets.size - 1, dtype=np.int64), np.diff(offsets))
        self.keys = np.unique(users * (num_items + 1) + self.items)

    def batch(self, users: np.ndarray, max_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        starts, ends = self.offsets[users], self.offsets[users + 1]
        t = np.arange(max_len)
        n = np.minimum(ends - starts - 1, max_len)  # pairs per row
        first = max_len - n  # first filled column
        valid = t[None, :] >= first[:, None]
        pos_idx = ends[:, None] - max_len + t[None, :]
        inputs = np.where(valid, self.items[np.clip(pos_idx - 1, 0, None)], 0)
        positives = np.where(valid, self.items[np.clip(pos_idx, 0, None)], 0)
        neg = rng.integers(1, self.num_items + 1, size=inputs.shape)
        base = (users * (self.num_items + 1))[:, None]
        todo = valid.copy()
        while True:
            keys = base + neg
            hit = np.searchsorted(self.keys, keys)
            bad = todo & (self.keys[np.minimum(hit, self.keys.size - 1)] == keys)
            if not bad.any():
                break
            neg[bad] = rng.integers(1, self.num_items + 1, size=int(bad.sum()))
            todo = bad
        return inputs, positives, np.where(valid, neg, 0)[:, :, None]
