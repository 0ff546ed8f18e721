"""Training losses over next-item predictions; each takes a mask of the positions that count."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_sampled(
    pos_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    mask: torch.Tensor,
    neg_mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary cross-entropy with sampled negatives (SASRec): positive pushed up, each negative down.

    Parameters
    ----------
    pos_logits : (B, L) scores of the true next items.
    neg_logits : (B, L, K) scores of K sampled negatives per position.
    mask : (B, L) bool, the positions to train on.
    neg_mask : (B, L, K) bool or None, the negatives that count (False for a draw equal to the target).

    Returns the mean (or with ``reduction="sum"`` the sum) over masked positions of
    ``-log s(pos) - sum_k log(1 - s(neg_k))``.
    """
    pos = F.softplus(-pos_logits[mask])  # -log sigmoid(x) = softplus(-x)
    neg = F.softplus(neg_logits)  # -log(1 - sigmoid(x)) = softplus(x)
    if neg_mask is not None:
        neg = neg * neg_mask.expand_as(neg)
    per_position = pos + neg[mask].sum(-1)
    return per_position.sum() if reduction == "sum" else per_position.mean()


def full_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Softmax cross-entropy over the whole catalogue.

    Parameters
    ----------
    logits : (T, num_items + 1) scores at the T positions that count; column 0 is padding and excluded.
    targets : (T,) dense item ids in 1..num_items.
    """
    logits = logits.clone()
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, targets, reduction=reduction)
