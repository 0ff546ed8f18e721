"""BERT4Rec (Sun et al., 2019): a bidirectional transformer trained to recover masked items (cloze)."""

from __future__ import annotations

import torch

from seqrec.models.transformer import ModelConfig, NextItemModel

BERT4RecConfig = ModelConfig


class BERT4Rec(NextItemModel):
    """Bidirectional self-attention with BERT's GELU feed-forward layer (4x wide) and a mask token.

    The mask token is item id ``num_items + 1``; a masked position predicts the item it hides. At
    evaluation the next item is predicted by appending a mask after the history (``with_mask_appended``).
    """

    causal = False
    ffn_mult = 4
    activation = "gelu"
    extra_tokens = 1

    @property
    def mask_token(self) -> int:
        # The engine's rule (seqrec-core's Task::default_mask_token); tests check the two agree.
        return self.config.num_items + 1

    def query_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, L) histories -> (B, L): a mask appended after each, whose hidden state is the query."""
        return self.with_mask_appended(inputs)

    def with_mask_appended(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded histories -> (B, L): the last L - 1 items, then the mask token."""
        mask = torch.full_like(inputs[:, :1], self.mask_token)
        return torch.cat([inputs[:, 1:], mask], dim=1)
