"""Evaluation protocols over fixed evaluation batches: full ranking and the sampled-candidates protocol."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from seqrec.evaluate.metrics import expected_metrics, ranking_metrics


def exclude_items(scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor, start: int = 0,
                  padding: bool = True) -> torch.Tensor:
    """Sets to ``-inf``, in place, the scores of (row, item) pairs that must not be ranked or recommended.

    ``scores`` holds columns ``start .. start + C`` of the catalogue (a chunk, or all of it); pairs whose item
    falls outside are skipped. With ``padding``, column 0 (the padding id) goes too when the chunk holds it.
    The one rule behind full ranking, recommendations and retrieval: padding and (usually) seen items never
    count. Returns ``scores``.
    """
    stop = start + scores.shape[1]
    if padding and start == 0 and scores.shape[1] > 0:
        scores[:, 0] = float("-inf")
    here = (items >= start) & (items < stop)
    scores[rows[here], items[here] - start] = float("-inf")
    return scores


def masked_top_k(scores: torch.Tensor, batch: dict[str, torch.Tensor], k: int, exclude_seen: bool,
                 blocked: torch.Tensor | None = None) -> Any:
    """Top-k of (B, N + 1) ``scores`` (modified in place) without padding, without the items in ``blocked``
    ((N + 1,) bool, True: never recommended; product rules, ``seqrec.serve.rules``) and, with ``exclude_seen``,
    without the items in the batch's ``history_rows`` / ``history_items``.

    Excluded items score ``-inf``; a row with fewer than k items left ends in ``-inf`` slots, which callers
    drop (``recommendation_rows``) or blank (per-user rows).
    """
    if exclude_seen and "history_rows" in batch:
        exclude_items(scores, batch["history_rows"], batch["history_items"])
    else:
        scores[:, 0] = float("-inf")
    if blocked is not None:
        scores.masked_fill_(blocked.to(scores.device), float("-inf"))  # (N + 1,) broadcast over the rows
    return scores.topk(k, dim=1)


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
    if exclude_seen:
        exclude_items(masked, batch["history_rows"], batch["history_items"])
    else:
        masked[:, 0] = float("-inf")
    out = ranking_metrics(masked, targets, ks)
    if "candidates" in batch:
        cand = torch.cat([targets.unsqueeze(1), batch["candidates"]], dim=1)  # (B, 1 + S), target first
        sampled = ranking_metrics(scores.gather(1, cand), torch.zeros_like(targets), ks)
        out.update({f"sampled/{name}": v for name, v in sampled.items()})
    return out


def chunked_batch_metrics(
    chunk_scores: Callable[[int, int], torch.Tensor],
    num_columns: int,
    batch: dict[str, torch.Tensor],
    ks: list[int],
    exclude_seen: bool = True,
    chunk: int = 65536,
) -> dict[str, torch.Tensor]:
    """``batch_metrics`` for catalogues too large to score at once: ``chunk_scores(start, stop)`` gives the
    (B, stop - start) scores of columns ``start:stop``, and memory stays at B x ``chunk``.

    Two passes over the catalogue: the first reads each target's score from the same products that rank
    it (a separately computed dot product can round differently and break ties), the second counts the
    items above and tied with it. The sampled protocol scores only the candidates.
    """
    targets = batch["targets"]
    b = targets.shape[0]
    rows = torch.arange(b, device=targets.device)
    hist_rows, hist_items = batch["history_rows"], batch["history_items"]
    target_scores = torch.empty(b, dtype=torch.float32, device=targets.device)
    cand = None
    if "candidates" in batch:
        cand = torch.cat([targets.unsqueeze(1), batch["candidates"]], dim=1)  # (B, 1 + S), target first
        cand_scores = torch.empty(cand.shape, dtype=torch.float32, device=targets.device)
    for start in range(0, num_columns, chunk):
        stop = min(start + chunk, num_columns)
        s = chunk_scores(start, stop).float()
        inside = (targets >= start) & (targets < stop)
        target_scores[inside] = s[rows[inside], targets[inside] - start]
        if cand is not None:
            here = (cand >= start) & (cand < stop)
            r, c = torch.nonzero(here, as_tuple=True)
            cand_scores[r, c] = s[r, cand[r, c] - start]
    excluded = targets == 0
    if exclude_seen:  # a target the user already saw is itself excluded: a miss, as in batch_metrics
        seen = torch.zeros(b, dtype=torch.long, device=targets.device)
        seen.index_add_(0, hist_rows, (hist_items == targets[hist_rows]).long())
        excluded |= seen > 0
    greater = torch.zeros(b, dtype=torch.long, device=targets.device)
    ties = torch.zeros(b, dtype=torch.long, device=targets.device)
    t = target_scores.unsqueeze(1)
    for start in range(0, num_columns, chunk):
        stop = min(start + chunk, num_columns)
        s = chunk_scores(start, stop).float()
        if exclude_seen:
            exclude_items(s, hist_rows, hist_items, start)
        elif start == 0:
            s[:, 0] = float("-inf")  # padding
        greater += (s > t).sum(1)
        ties += (s == t).sum(1)
    ties -= 1  # the target itself
    greater = torch.where(excluded, torch.full_like(greater, num_columns), greater)
    ties = torch.where(excluded, torch.zeros_like(ties), ties.clamp(min=0))
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        for name, value in expected_metrics(greater, ties, k).items():
            out[f"{name}@{k}"] = value
    if cand is not None:
        sampled = ranking_metrics(cand_scores, torch.zeros_like(targets), ks)
        out.update({f"sampled/{name}": v for name, v in sampled.items()})
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]], ks: list[int],
             exclude_seen: bool = True) -> dict[str, float]:
    """Mean metrics of a next-item ``model`` (its ``query`` then ``score_all``) over ``batches``: the path training's
    validation runs, BERT4Rec's appended mask and time inputs included."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    count = 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        scores = model.score_all(model.query(batch["inputs"], batch.get("time_inputs"))).float()
        for name, v in batch_metrics(scores, batch, ks, exclude_seen).items():
            sums[name] = sums.get(name, 0.0) + float(v.sum())
        count += batch["inputs"].shape[0]
    model.train(was_training)
    return {name: total / max(count, 1) for name, total in sums.items()}
