"""Item vectors from an ID embedding and the item's features, for items the model may never have seen.

An item's vector is ``w * id_embedding + features``, where ``features`` is a sum of projections: the mean of
its categorical attribute embeddings, a linear map of its normalised numeric values (with a present flag per
value, so a missing price is not a price of the mean), and a linear map of its precomputed dense vectors.
A sum of projections rather than an MLP: it is one matrix product per kind, adds nothing to a model without
features, and a new item's vector is linear in what is known of it, so no hidden layer has to extrapolate.

``w`` is 0 for an item whose ID was never trained (withheld by the cold-start split, or added at inference),
and during training is dropped to 0 with probability ``id_dropout`` per occurrence, so that the feature path
learns to stand alone (ID dropout; without it the ID embeddings carry everything and features learn little).
The same vectors are the input embeddings and the scoring table.

With ``unknown_id="learned"`` an item without its ID gets one learned vector in the ID's place instead of
zero. Zero is not a neutral place: the ID embeddings of the items a user is likely to want point along the
user's query, so an item whose ID part is zero scores below every relevant item with the same features, and
the only way for training to lift it is to lift the features of all those items too. A shared stand-in
learns where an item of unknown identity belongs (the DropoutNet idea of a default embedding), which moves
the withheld and the new items as a group and leaves the known ones where they are. On S3-Rec Beauty it
measured about even with zero (benchmarks/results/cold_start.md): trained for the likelihood of every next
item, either places new items low, and ``new_item_boost`` (the model's) is what lifts them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn


class ItemEncoder(nn.Module):
    """The feature part of every item's vector, and which IDs the model knows.

    Parameters
    ----------
    rows : int
        Table rows: padding, the items, and any extra tokens (BERT4Rec's mask).
    hidden_size : int
        Vector width D.
    num_attributes, max_attributes : int
        Distinct categorical attributes (ids 1..num_attributes) and attribute slots per item (0: none).
    num_numeric : int
        Numeric features per item (0: none).
    vector_dim : int
        Width of the precomputed dense vectors per item (0: none).
    id_dropout : float
        Training-time probability that an occurrence of an item uses its features alone.
    unknown_id : str
        What stands in for the ID embedding of an item without one: ``zero``, or ``learned`` (one vector
        shared by every such item, learned from the ID-dropped occurrences).
    """

    def __init__(self, rows: int, hidden_size: int, num_attributes: int = 0, max_attributes: int = 0,
                 num_numeric: int = 0, vector_dim: int = 0, id_dropout: float = 0.0, unknown_id: str = "zero"):
        super().__init__()
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"id_dropout must lie in [0, 1), got {id_dropout}")
        if unknown_id not in ("zero", "learned"):
            raise ValueError(f"unknown_id must be 'zero' or 'learned', got {unknown_id!r}")
        if num_attributes and max_attributes < 1:
            raise ValueError(f"max_attributes must be positive with attributes, got {max_attributes}")
        self.id_dropout = id_dropout
        self.attribute_emb = nn.Embedding(num_attributes + 1, hidden_size, padding_idx=0) if num_attributes else None
        # Values and present flags: a missing value (normalised to 0) is told apart from a mean one.
        self.numeric = nn.Linear(2 * num_numeric, hidden_size, bias=False) if num_numeric else None
        self.vector = nn.Linear(vector_dim, hidden_size, bias=False) if vector_dim else None
        self.unknown = nn.Parameter(torch.zeros(hidden_size)) if unknown_id == "learned" else None
        # Saved with the checkpoint, so a loaded model needs no feature file.
        self.register_buffer("attributes", torch.zeros(rows, max(max_attributes, 1) if num_attributes else 0,
                                                       dtype=torch.long))
        self.register_buffer("numeric_values", torch.zeros(rows, num_numeric))
        self.register_buffer("numeric_present", torch.zeros(rows, num_numeric))
        self.register_buffer("vectors", torch.zeros(rows, vector_dim))
        known = torch.ones(rows, dtype=torch.bool)
        known[0] = False  # padding has no vector at all
        self.register_buffer("id_known", known)
        self._ids_off = False  # features_only(): every item as one never trained

    @property
    def has_features(self) -> bool:
        return self.attribute_emb is not None or self.numeric is not None or self.vector is not None

    def set_features(self, attributes: torch.Tensor | None = None, numeric_values: torch.Tensor | None = None,
                     numeric_present: torch.Tensor | None = None, vectors: torch.Tensor | None = None) -> None:
        """Fills the first rows of the tables (items 0..N; extra tokens keep none)."""
        for name, table in (("attributes", attributes), ("numeric_values", numeric_values),
                            ("numeric_present", numeric_present), ("vectors", vectors)):
            if table is None:
                continue
            buf = getattr(self, name)
            if table.dim() != 2 or table.shape[1] != buf.shape[1] or table.shape[0] > buf.shape[0]:
                raise ValueError(f"item {name} must be (at most {buf.shape[0]}, {buf.shape[1]}), got {tuple(table.shape)}")
            if name == "attributes" and table.numel() and (table.min() < 0 or table.max() >= self.attribute_emb.num_embeddings):
                raise ValueError(f"attribute ids must lie in 0..{self.attribute_emb.num_embeddings - 1}")
            buf[: table.shape[0]].copy_(table.to(buf.dtype))

    def set_unknown_ids(self, items: torch.Tensor) -> None:
        """Marks items whose ID embedding was never trained (cold-start split): features alone represent them."""
        self.id_known[items] = False

    def features(self, items: torch.Tensor) -> torch.Tensor | None:
        """items (any shape) -> items' shape + (D,): the feature part of their vectors (None without features)."""
        out = None
        if self.attribute_emb is not None:
            attrs = self.attributes[items]  # (..., A)
            present = (attrs != 0).unsqueeze(-1)  # (..., A, 1)
            part = (self.attribute_emb(attrs) * present).sum(-2) / present.sum(-2).clamp(min=1)  # mean
            out = part
        if self.numeric is not None:
            part = self.numeric(torch.cat([self.numeric_values[items], self.numeric_present[items]], dim=-1))
            out = part if out is None else out + part
        if self.vector is not None:
            part = self.vector(self.vectors[items])
            out = part if out is None else out + part
        return out

    def id_weight(self, items: torch.Tensor) -> torch.Tensor:
        """items' shape + (1,): 1 where the item's ID embedding counts, 0 where its features stand alone."""
        if self._ids_off:
            return torch.zeros(*items.shape, 1, device=items.device)
        w = self.id_known[items]
        if self.training and self.id_dropout > 0:
            w = w & (torch.rand(items.shape, device=items.device) >= self.id_dropout)
        return w.unsqueeze(-1).to(torch.get_default_dtype())

    @contextmanager
    def features_only(self) -> Iterator[None]:
        """Within the block every item is encoded as if its ID were unknown: features and the stand-in."""
        self._ids_off = True
        try:
            yield
        finally:
            self._ids_off = False

    def combine(self, ids: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """ID embeddings (items' shape + (D,)) of ``items`` -> their vectors: the ID (or its stand-in where the
        ID is unknown or dropped) plus the features. Padding (item 0) gets no stand-in."""
        w = self.id_weight(items)
        out = ids * w
        if self.unknown is not None:
            out = out + (1 - w) * (items != 0).unsqueeze(-1) * self.unknown
        feats = self.features(items)
        return out if feats is None else out + feats

    def add_rows(self, attributes: torch.Tensor | None, numeric_values: torch.Tensor | None,
                 numeric_present: torch.Tensor | None, vectors: torch.Tensor | None, count: int) -> None:
        """Appends ``count`` rows of items the model never trained on (new items at inference)."""
        for name, table in (("attributes", attributes), ("numeric_values", numeric_values),
                            ("numeric_present", numeric_present), ("vectors", vectors)):
            buf = getattr(self, name)
            if name == "attributes" and table is not None and buf.shape[1] and table.shape[1] > buf.shape[1]:
                # A new item with more attributes than any trained one: every row gets the wider bag.
                buf = torch.cat([buf, buf.new_zeros(buf.shape[0], table.shape[1] - buf.shape[1])], dim=1)
            block = torch.zeros(count, buf.shape[1], dtype=buf.dtype, device=buf.device)
            if table is not None and buf.shape[1]:
                if name == "attributes" and table.shape[1] < block.shape[1]:
                    table = torch.cat([table, table.new_zeros(count, block.shape[1] - table.shape[1])], dim=1)
                if tuple(table.shape) != tuple(block.shape):
                    raise ValueError(f"new items' {name} must be {tuple(block.shape)}, got {tuple(table.shape)}")
                block.copy_(table.to(buf.dtype))
            setattr(self, name, torch.cat([buf, block]))
        self.id_known = torch.cat([self.id_known, torch.zeros(count, dtype=torch.bool, device=self.id_known.device)])
