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


def pool_softmax(
    pos_logits: torch.Tensor,
    pool_logits: torch.Tensor,
    pos_logq: torch.Tensor | None = None,
    pool_logq: torch.Tensor | None = None,
    target_index: torch.Tensor | None = None,
    masked: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Sampled softmax of T targets against one shared candidate pool of P items.

    Each position's candidates are its positive and the pool, less the pool's copy of its own target
    (``target_index``, -1 when absent: an accidental hit is no negative) and any ``masked`` entries (e.g.
    items of the user's history). ``pos_logq`` / ``pool_logq`` are log-probabilities that an item is in the
    pool, subtracted from the logits (logQ correction); with the whole catalogue in the pool they are 0 and
    the loss is exactly full cross-entropy.

    Parameters
    ----------
    pos_logits : (T,); pool_logits : (T, P); pos_logq : (T,); pool_logq : (P,).
    target_index : (T,) int64 or None; masked : (T, P) bool or None.
    reduction : ``mean``, ``sum`` or ``none`` (the (T,) losses).
    """
    if pos_logq is not None:
        pos_logits = pos_logits - pos_logq
    if pool_logq is not None:
        pool_logits = pool_logits - pool_logq
    if masked is not None:
        pool_logits = pool_logits.masked_fill(masked, float("-inf"))
    if target_index is not None:
        # Accidental hits: at most one per row, so T scattered writes instead of a (T, P) mask; out of place,
        # since autograd needs the logits as they were.
        rows = torch.nonzero(target_index >= 0).squeeze(-1)
        if rows.numel():
            minus_inf = torch.full((rows.numel(),), float("-inf"), dtype=pool_logits.dtype, device=pool_logits.device)
            pool_logits = pool_logits.index_put((rows, target_index[rows]), minus_inf)
    lse = torch.logaddexp(pos_logits, torch.logsumexp(pool_logits, dim=-1))
    per_position = lse - pos_logits
    if reduction == "none":
        return per_position
    return per_position.sum() if reduction == "sum" else per_position.mean()


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Softmax cross-entropy of (T, D) queries over an (N, D) table without a (T, N) tensor.

    Forward accumulates the log-sum-exp over item chunks; backward recomputes each chunk's logits from the
    saved log-sum-exp, so memory is T x chunk however large the catalogue (compute: the product twice).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        t, n = hidden.shape[0], table.shape[0]
        acc = torch.promote_types(hidden.dtype, torch.float32)  # bf16 products, float32 sums
        lse = torch.full((t,), float("-inf"), dtype=acc, device=hidden.device)
        for lo in range(0, n, chunk):
            logits = (hidden @ table[lo : lo + chunk].T).to(acc)
            lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=-1))
        target_logits = (hidden * table[targets]).sum(-1).to(acc)
        ctx.save_for_backward(hidden, table, targets, lse)
        ctx.chunk = chunk
        return lse - target_logits  # (T,)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        hidden, table, targets, lse = ctx.saved_tensors
        chunk = ctx.chunk
        acc = lse.dtype
        g = grad_out.to(acc).unsqueeze(-1)  # (T, 1)
        h = hidden.to(acc)
        grad_hidden = torch.zeros_like(h)
        grad_table = torch.zeros_like(table, dtype=acc) if ctx.needs_input_grad[1] else None
        for lo in range(0, table.shape[0], chunk):
            part = table[lo : lo + chunk]
            p = torch.exp((hidden @ part.T).to(acc) - lse.unsqueeze(-1)) * g  # (T, C) d loss / d logits
            grad_hidden += p @ part.to(acc)
            if grad_table is not None:
                grad_table[lo : lo + chunk] = p.T @ h
        # The target's own logit enters with -1.
        grad_hidden -= g * table[targets].to(acc)
        if grad_table is not None:
            grad_table.index_add_(0, targets, -g * h)
            grad_table = grad_table.to(table.dtype)
        return grad_hidden.to(hidden.dtype), grad_table, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, chunk: int = 16384, reduction: str = "mean"
) -> torch.Tensor:
    """Full softmax cross-entropy of ``hidden @ table[1:].T`` (row 0 of the table is padding), in item chunks.

    Equals ``full_cross_entropy(hidden @ table.T, targets)`` in value and gradient; peak memory is
    T x ``chunk`` scores instead of T x N.

    Parameters
    ----------
    hidden : (T, D) queries; table : (N + 1, D) item table; targets : (T,) item ids in 1..N.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    per_position = _ChunkedCrossEntropy.apply(hidden, table[1:], targets - 1, chunk)
    return per_position.sum() if reduction == "sum" else per_position.mean()
