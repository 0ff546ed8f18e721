"""Synthetic datasets shaped like public benchmarks (users, items, length distribution), for speed tests."""

from __future__ import annotations

import numpy as np

SHAPES = {
    # ML-1M: 6,040 users, 3,416 items, ~1M interactions, every user with at least 20 ratings.
    "ml1m": {"users": 6040, "items": 3416, "mean_length": 165.0, "min_length": 20},
    # Amazon Games (SASRec's file): 31,013 users, 23,715 items, 287,107 interactions, at least 5 each.
    "games": {"users": 31013, "items": 23715, "mean_length": 9.26, "min_length": 5},
    # A small shape for CI.
    "tiny": {"users": 2000, "items": 1500, "mean_length": 20.0, "min_length": 5},
}


def shaped(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """CSR (offsets int64, items int32, num_items) with the shape's users, items and mean length.

    Lengths are min_length plus a geometric tail; items follow a Zipf law; no sequential structure (these
    datasets measure speed only; use ``seqrec.data.synthetic`` where accuracy matters).
    """
    s = SHAPES[name]
    rng = np.random.default_rng(seed)
    extra = s["mean_length"] - s["min_length"]
    lengths = s["min_length"] + rng.geometric(1.0 / (extra + 1), size=s["users"]) - 1
    lengths = np.minimum(lengths, s["items"] // 2)
    offsets = np.zeros(s["users"] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    p = 1.0 / np.arange(1, s["items"] + 1) ** 0.8
    items = rng.choice(np.arange(1, s["items"] + 1, dtype=np.int32), size=int(offsets[-1]), p=p / p.sum())
    return offsets, items.astype(np.int32), s["items"]
