"""Evaluation protocols over fixed evaluation batches: full ranking and the sampled-candidates protocol."""

from __future__ import annotations

from typing import Iterable

import torch

from seqrec.metrics import ranking_metrics


def batch_metrics(
    scores: torch.Tensor, batch: dict[str, torch.Tensor], ks: list[int], exclude_seen: bool = True
) -> dict[str, torch.Tensor]:
    """Per-user metrics of one evaluation batch.

    Parameters
    ----------
    scores : (B, num_items + 1) scores of every item (column 0 is padding); not modified.
    batch : an evaluation batch (``targets``, ``history_rows``, ``history_items``, optional ``candidates``).

    Returns full-ranking metrics (``hr@10``, ...) over the whole catalogue, items the user saw excluded when
    ``exclude_seen``, plus ``sampled/hr@10``, ... ranking the target among the batch's candidates.
    """
    targets = batch["targets"]
    masked = scores.clone()
    masked[:, 0] = float("-inf")
    if exclude_seen:
        masked[batch["history_rows"], batch["history_items"]] = float("-inf")
    out = ranking_metrics(masked, targets, ks)
    if "candidates" in batch:
        cand = torch.cat([targets.unsqueeze(1), batch["candidates"]], dim=1)  # (B, 1 + S), target first
        sampled = ranking_metrics(scores.gather(1, cand), torch.zeros_like(targets), ks)
        out.update({f"sampled/{name}": v for name, v in sampled.items()})
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], ks: list[int],
             exclude_seen: bool = True) -> dict[str, float]:
    """Mean metrics of a next-item ``model`` (``model(inputs)`` then ``model.score_all``) over ``batches``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    count = 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        scores = model.score_all(model(batch["inputs"])[:, -1]).float()
        for name, v in batch_metrics(scores, batch, ks, exclude_seen).items():
            sums[name] = sums.get(name, 0.0) + float(v.sum())
        count += batch["inputs"].shape[0]
    model.train(was_training)
    return {name: total / max(count, 1) for name, total in sums.items()}
