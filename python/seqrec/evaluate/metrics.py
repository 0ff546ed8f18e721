"""Ranking metrics HR@k, NDCG@k and MRR@k, with ties resolved in expectation.

A model that gives the target the same score as other items should get neither the best nor the worst
rank among them: we report the expected metric under a uniformly random order of the tied items. With
``g`` items scored strictly above the target and ``e`` other items tied with it, the target's rank is
uniform on ``g+1 .. g+e+1``. So a constant scorer gets exactly what random ranking would, instead of
HR@k = 1 under optimistic tie-breaking.
"""

from __future__ import annotations

import torch

METRICS = ("hr", "ndcg", "mrr")


def target_rank_counts(
    scores: torch.Tensor, targets: torch.Tensor, max_k: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts, per row, the items scored above the target and the other items tied with it.

    Parameters
    ----------
    scores : torch.Tensor
        (B, C) scores; items excluded from ranking must already be set to ``-inf``.
    targets : torch.Tensor
        (B,) column index of the target in ``scores``.
    max_k : int or None
        The largest cut-off the caller needs. Then only rows whose target reaches the top ``max_k``
        scores are counted exactly; the others get ``greater = C`` (a miss at every cut-off up to
        ``max_k``) and ``ties = 0``. A top-k pass and counting a few rows is several times cheaper than
        comparing every score of every row, which dominates evaluation over a large catalogue.

    Returns
    -------
    greater, ties : torch.Tensor
        (B,) int64 each. A target that is itself ``-inf`` (excluded) is reported with ``greater = C``,
        which no cut-off reaches: a miss.
    """
    c = scores.shape[1]
    target_scores = scores.gather(1, targets.view(-1, 1))  # (B, 1)
    excluded = torch.isneginf(target_scores.squeeze(1))
    if max_k is None or max_k >= c:
        rows = torch.arange(scores.shape[0], device=scores.device)
    else:
        kth = scores.topk(max_k, dim=1).values[:, -1:]  # (B, 1) the max_k-th best score
        rows = torch.nonzero((target_scores >= kth).squeeze(1) & ~excluded).squeeze(1)
    greater = torch.full((scores.shape[0],), c, dtype=torch.long, device=scores.device)
    ties = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    if rows.numel():
        sub, t = scores[rows], target_scores[rows]
        greater[rows] = (sub > t).sum(1)
        ties[rows] = (sub == t).sum(1) - 1
    greater = torch.where(excluded, torch.full_like(greater, c), greater)
    ties = torch.where(excluded, torch.zeros_like(ties), ties)
    return greater, ties


def expected_metrics(greater: torch.Tensor, ties: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Per-row expected HR@k, NDCG@k and MRR@k given ``greater`` and ``ties`` from ``target_rank_counts``."""
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    device = greater.device
    ranks = torch.arange(1, k + 1, device=device, dtype=torch.float64)
    zero = torch.zeros(1, device=device, dtype=torch.float64)
    # cumulative sums of each metric's gain over ranks 1..k, with a leading 0 for "no rank yet".
    cum = {
        "hr": torch.cat([zero, torch.ones(k, device=device, dtype=torch.float64).cumsum(0)]),
        "ndcg": torch.cat([zero, (1.0 / torch.log2(ranks + 1.0)).cumsum(0)]),
        "mrr": torch.cat([zero, (1.0 / ranks).cumsum(0)]),
    }
    first = greater.clamp(max=k)  # ranks g+1.. start after `first` entries
    last = (greater + ties + 1).clamp(max=k)  # highest rank within the cut-off
    span = (ties + 1).to(torch.float64)
    return {name: (c[last] - c[first]) / span for name, c in cum.items()}



def ranking_metrics(scores: torch.Tensor, targets: torch.Tensor, ks: list[int]) -> dict[str, torch.Tensor]:
    """Per-row metrics ``{"hr@10": (B,), ...}`` for every k in ``ks``."""
    greater, ties = target_rank_counts(scores, targets, max(ks))
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        for name, value in expected_metrics(greater, ties, k).items():
            out[f"{name}@{k}"] = value
    return out

