"""SASRec (Kang and McAuley, 2018): a causal transformer over the item sequence, scored by dot product."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqrec.models.transformer import SequenceEncoder


@dataclass
class SASRecConfig:
    num_items: int
    max_len: int = 50
    hidden_size: int = 64
    num_blocks: int = 2
    num_heads: int = 1
    dropout: float = 0.2
    norm_first: bool = True


class SASRec(nn.Module):
    """Causal self-attention encoder; item scores are dot products with the (tied) item embeddings."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        if config.num_items < 1:
            raise ValueError(f"num_items must be positive, got {config.num_items}")
        self.config = config
        self.encoder = SequenceEncoder(
            vocab_size=config.num_items + 1,
            max_len=config.max_len,
            hidden_size=config.hidden_size,
            num_blocks=config.num_blocks,
            num_heads=config.num_heads,
            dropout=config.dropout,
            norm_first=config.norm_first,
            causal=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # SASRec's reference code uses Xavier-normal on every weight matrix; LayerNorms keep (1, 0).
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
            elif "norm" not in name:
                nn.init.zeros_(p)
        with torch.no_grad():
            self.encoder.item_emb.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item ids -> (B, L, D) hidden states; position t predicts item t + 1."""
        return self.encoder(seq)

    @property
    def item_embeddings(self) -> torch.Tensor:
        """(num_items + 1, D), row 0 is padding."""
        return self.encoder.item_emb.weight

    def score_all(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., num_items + 1) scores of every item; column 0 (padding) is meaningless."""
        return hidden @ self.item_embeddings.T

    def score_items(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of given items: hidden (B, L, D) with items (B, L) or (B, L, K) -> same shape as items."""
        emb = self.encoder.item_emb(items)  # (B, L, D) or (B, L, K, D)
        if items.dim() == hidden.dim() - 1:
            return (hidden * emb).sum(-1)
        return (hidden.unsqueeze(-2) * emb).sum(-1)
