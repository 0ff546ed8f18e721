"""SASRec (Kang and McAuley, 2018): a causal transformer over the item sequence, scored by dot product."""

from __future__ import annotations

from seqrec.models.transformer import ModelConfig, NextItemModel

SASRecConfig = ModelConfig


class SASRec(NextItemModel):
    """Causal self-attention with a ReLU point-wise feed-forward layer: position t predicts item t + 1."""

    causal = True
    ffn_mult = 1
    activation = "relu"
