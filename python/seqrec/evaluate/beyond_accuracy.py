"""Metrics beyond accuracy, from the ranked lists themselves: coverage, popularity bias, novelty, exposure.

All take the top-k lists of the evaluated users (dense item ids, one row per user) and the training
interaction count of every item. Definitions:

- ``coverage``: distinct recommended items over the catalogue size.
- ``avg_popularity``: mean training count of the recommended items; ``consumed_popularity`` the same for
  the items users actually interacted with next (the targets); ``popularity_ratio`` the first over the
  second: above 1 the model recommends more popular items than users consume.
- ``novelty``: mean self-information ``-log2 p(i)`` of recommended items, ``p(i) = count(i) / total``
  (items never seen in training count as seen once).
- ``gini``: Gini index of how often each catalogue item is recommended (0: every item equally often,
  near 1: a few items take all the exposure).
- ``long_tail``: share of recommendations outside the head, the 20% most popular items (Abdollahpouri et al.).
- With a cold-start split (``data.cold_items``): ``withheld_share``, the share of recommendations that are
  items withheld from training, and ``withheld_coverage``, the share of those items recommended at least once
  (``withheld_exposure``): whether new items reach users at all.
"""

from __future__ import annotations

import numpy as np

HEAD_SHARE = 0.2


def gini(values: np.ndarray) -> float:
    """Gini index of non-negative ``values``: 0 for equal values, (n - 1) / n when one value holds all."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2 * ranks - n - 1) @ x / (n * x.sum()))


def head_items(counts: np.ndarray, share: float = HEAD_SHARE) -> np.ndarray:
    """Boolean mask over dense ids (index 0 padding, never head): the ``share`` most popular items."""
    n = counts.size - 1
    order = np.argsort(-counts[1:], kind="stable") + 1
    head = np.zeros(counts.size, dtype=bool)
    head[order[: int(round(share * n))]] = True
    return head


def beyond_accuracy(top: np.ndarray, counts: np.ndarray, targets: np.ndarray | None = None) -> dict[str, float]:
    """Beyond-accuracy metrics of the top-k lists ``top`` (U, k) given training ``counts`` (N + 1,)."""
    top = np.asarray(top, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.size - 1
    if top.size and (top.min() < 0 or top.max() > n):
        raise ValueError(f"recommended ids must lie in 1..{n} (0 marks an empty slot)")
    top = top[top > 0]  # a user who saw almost everything gets fewer than k recommendations
    if top.size == 0:
        raise ValueError("no recommendations to evaluate")
    exposure = np.bincount(top, minlength=n + 1)[1:]
    p = np.maximum(counts[1:], 1.0) / max(counts[1:].sum(), 1.0)
    out = {
        "coverage": float((exposure > 0).sum() / n),
        "avg_popularity": float(counts[top].mean()),
        "novelty": float(-np.log2(p[top - 1]).mean()),
        "gini": gini(exposure),
        "long_tail": float((~head_items(counts)[top]).mean()),
    }
    if targets is not None:
        consumed = float(counts[np.asarray(targets, dtype=np.int64)].mean())
        out["consumed_popularity"] = consumed
        out["popularity_ratio"] = out["avg_popularity"] / consumed if consumed > 0 else float("inf")
    return out


def withheld_exposure(top: np.ndarray, withheld: np.ndarray) -> dict[str, float]:
    """How much of the top-k lists ``top`` (U, k; 0 an empty slot) goes to the ``withheld`` items (dense ids)."""
    top = np.asarray(top, dtype=np.int64)
    top = top[top > 0]
    withheld = np.unique(np.asarray(withheld, dtype=np.int64))
    if withheld.size == 0:
        raise ValueError("no withheld items to measure the exposure of")
    hit = np.isin(top, withheld)
    return {"withheld_share": float(hit.mean()) if top.size else 0.0,
            "withheld_coverage": float(np.unique(top[hit]).size / withheld.size)}
