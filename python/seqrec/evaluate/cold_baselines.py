"""Baselines that can score items never seen in training, for the cold-start protocol (``data.cold_items``).

Popularity gives a withheld item nothing (it has no training interactions), so a cold-start result is set
beside two that need only item features: the popularity of the item's attributes, and the nearest
neighbours in feature space of the user's most recent items.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

RECENT = 5  # the user's last items that the nearest-neighbour baseline averages


def feature_popularity(attributes: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(N + 1,) scores: the mean, over an item's attributes, of the training interactions per item carrying
    the attribute. attributes (N + 1, A) long (0 pads), counts (N + 1,) training interactions per item."""
    rows = attributes.shape[0]
    if attributes.numel() == 0:
        return torch.zeros(rows)
    num_attr = int(attributes.max()) + 1
    present = attributes != 0
    item = torch.arange(rows).unsqueeze(1).expand_as(attributes)[present]
    attr = attributes[present]
    total = torch.zeros(num_attr, dtype=torch.float64).index_add_(0, attr, counts.double()[item])
    carriers = torch.bincount(attr, minlength=num_attr).double().clamp(min=1)
    per_attr = total / carriers  # mean interactions of an item with the attribute
    score = torch.zeros(rows, dtype=torch.float64).index_add_(0, item, per_attr[attr])
    return (score / present.sum(1).clamp(min=1)).float()


def feature_matrix(state: Mapping[str, Any]) -> torch.Tensor | None:
    """(N + 1, F) unit rows of every item's features (``ItemFeatureTable.to_state``): its attributes one-hot
    (scaled to unit weight per item), its normalised numbers and its vectors (unit norm), side by side.
    None when the items have no features."""
    parts = []
    attrs = torch.as_tensor(state["attributes"])
    if attrs.numel() and int(attrs.max()) > 0:
        onehot = torch.zeros(attrs.shape[0], int(attrs.max()) + 1)
        onehot.scatter_(1, attrs, 1.0)
        onehot[:, 0] = 0
        parts.append(onehot / onehot.sum(1, keepdim=True).clamp(min=1).sqrt())
    numeric = torch.as_tensor(state["numeric"]).float()
    if numeric.numel():
        parts.append(numeric)
    vectors = torch.as_tensor(state["vectors"]).float()
    if vectors.numel():
        parts.append(vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12))
    if not parts:
        return None
    table = torch.cat(parts, dim=1)
    table = table / table.norm(dim=1, keepdim=True).clamp(min=1e-12)
    table[0] = 0
    return table


def recent_item_knn(inputs: torch.Tensor, features: torch.Tensor, recent: int = RECENT) -> torch.Tensor:
    """(B, N + 1) cosine of every item's features to the mean features of each user's last ``recent``
    items; inputs (B, L) left-padded item ids, features (N + 1, F) unit rows (``feature_matrix``)."""
    last = inputs[:, -recent:]
    mean = features[last].sum(1) / (last != 0).sum(1, keepdim=True).clamp(min=1)  # padding rows are 0
    mean = mean / mean.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return mean @ features.T
