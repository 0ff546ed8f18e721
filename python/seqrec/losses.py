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


def sampled_softmax(
    pos_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    mask: torch.Tensor,
    pos_logq: torch.Tensor | None = None,
    neg_logq: torch.Tensor | None = None,
    neg_mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax cross-entropy over the positive and its K sampled negatives, with logQ correction.

    Each logit has the log-probability that the sampler proposes its item subtracted (Bengio and Senecal;
    Yi et al., 2019), which makes the sampled softmax an unbiased-in-the-limit estimate of the full one
    under non-uniform sampling (popularity, in-batch); for uniform sampling it is a constant and changes
    nothing. Negatives with ``neg_mask`` False (draws equal to the target) are left out.

    Parameters
    ----------
    pos_logits : (B, L); neg_logits : (B, L, K); mask : (B, L) bool.
    pos_logq : (B, L) and neg_logq : (B, L|1, K) log-probabilities of the proposal, or None.
    """
    if pos_logq is not None:
        pos_logits = pos_logits - pos_logq
    if neg_logq is not None:
        neg_logits = neg_logits - neg_logq
    if neg_mask is not None:
        neg_logits = neg_logits.masked_fill(~neg_mask.expand_as(neg_logits), float("-inf"))
    logits = torch.cat([pos_logits[mask].unsqueeze(-1), neg_logits[mask]], dim=-1)  # (T, 1 + K)
    per_position = torch.logsumexp(logits, dim=-1) - logits[:, 0]
    return per_position.sum() if reduction == "sum" else per_position.mean()


def gbce(
    pos_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    mask: torch.Tensor,
    num_items: int,
    t: float = 0.75,
    neg_mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Generalised BCE of gSASRec (Petrov and Macdonald, 2023).

    With K uniform negatives out of ``num_items - 1`` the sampling rate is ``a = K / (num_items - 1)``;
    the positive's probability is raised to ``beta = a * (t * (1 - 1/a) + 1/a)``, which counters the
    overconfidence BCE learns from few negatives. ``t = 0`` gives plain BCE (beta = 1), ``t = 1`` gives
    beta = a, calibrated to the full catalogue.
    """
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"gBCE t must be in [0, 1], got {t}")
    k = neg_logits.shape[-1]
    alpha = k / max(num_items - 1, 1)
    beta = alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
    pos = beta * F.softplus(-pos_logits[mask])  # -log(sigmoid(s) ** beta)
    neg = F.softplus(neg_logits)
    if neg_mask is not None:
        neg = neg * neg_mask.expand_as(neg)
    per_position = pos + neg[mask].sum(-1)
    return per_position.sum() if reduction == "sum" else per_position.mean()
