"""How far to lift new items: the warm/cold trade-off of ``model.new_item_boost``, read off validation.

A model with an item encoder scores an item without a trained ID from its features and the stand-in for its
ID. Trained for the likelihood of every next item, it places such items where they belong on average, which
is low: it cannot know which new listing will sell. A constant added to their scores lifts them as a group;
every slot they take in a top-k list is taken from a known item. ``boost_curve`` measures that trade-off on
the validation targets of a cold-start split (``data.cold_items``), one scoring pass for every boost, and
``choose_boost`` picks the largest boost whose warm NDCG stays within a tolerance of the unboosted model's.
"""

from __future__ import annotations

from typing import Iterable

import torch

from seqrec.evaluate.ranking import batch_metrics

BOOSTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def boost_curve(module: torch.nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                boosts: Iterable[float] = BOOSTS, k: int = 10) -> list[dict[str, float]]:
    """NDCG@k of warm targets, cold targets and all, for each boost added to the items without a trained ID.

    ``module`` is a ``SeqRecModule`` whose model has an item encoder; ``batches`` are evaluation batches of a
    cold-start split (they carry ``cold_targets``). The module's own ``new_item_boost`` is not used: each
    boost of ``boosts`` is added to the unboosted scores.
    """
    model = module.model
    if model.item_encoder is None:
        raise ValueError("new_item_boost lifts items scored from their features: the model needs "
                         "model.feature_sides both")
    boosts = sorted(set(float(b) for b in boosts) | {0.0})
    sums = {b: {"warm": 0.0, "cold": 0.0} for b in boosts}
    counts = {"warm": 0, "cold": 0}
    saved, model.config.new_item_boost = model.config.new_item_boost, 0.0
    was_training = module.training
    module.eval()
    try:
        ids = model.score_ids()
        new = (~model.item_encoder.id_known[ids] & (ids != 0)).float()  # (N + 1,)
        with torch.no_grad():
            for batch in batches:
                if "cold_targets" not in batch:
                    raise ValueError("boost_curve needs a cold-start split (data.cold_items): the batches have no "
                                     "cold_targets")
                batch = {name: v.to(module.device) if torch.is_tensor(v) else v for name, v in batch.items()}
                scores = module._scores(batch)  # (B, N + 1), unboosted
                cold = batch["cold_targets"]
                counts["cold"] += int(cold.sum())
                counts["warm"] += int((~cold).sum())
                for b in boosts:
                    ndcg = batch_metrics(scores + b * new.to(scores.device), batch, [k])[f"ndcg@{k}"]
                    sums[b]["cold"] += float(ndcg[cold].sum())
                    sums[b]["warm"] += float(ndcg[~cold].sum())
    finally:
        model.config.new_item_boost = saved
        module.train(was_training)
    if not counts["cold"] or not counts["warm"]:
        raise ValueError(f"the batches hold {counts['cold']} cold and {counts['warm']} warm targets: both are needed")
    users = counts["cold"] + counts["warm"]
    return [{"boost": b, "warm": s["warm"] / counts["warm"], "cold": s["cold"] / counts["cold"],
             "all": (s["warm"] + s["cold"]) / users} for b, s in sums.items()]


def choose_boost(curve: list[dict[str, float]], tolerance: float = 0.02) -> float:
    """The largest boost of ``curve`` up to which every boost keeps the warm NDCG at least ``1 - tolerance`` of
    the unboosted one's."""
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must lie in [0, 1), got {tolerance}")
    base = next((p["warm"] for p in curve if p["boost"] == 0.0), None)
    if base is None:
        raise ValueError("the curve has no unboosted point (boost 0)")
    chosen = 0.0
    for p in sorted(curve, key=lambda p: p["boost"]):
        if p["warm"] < (1 - tolerance) * base:
            break
        chosen = p["boost"]
    return chosen
