"""Transformer blocks and the embedding stack shared by the sequence models."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqrec.models.item_encoder import ItemEncoder


class TransformerBlock(nn.Module):
    """Self-attention plus a point-wise feed-forward layer, each in a residual branch.

    ``norm_first=False`` is the post-LN block of the original Transformer (normalise after the residual
    sum); ``norm_first=True`` is pre-LN (normalise the branch input), which trains more stably when deep.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        dropout: float,
        norm_first: bool,
        ffn_mult: int = 1,
        activation: str = "relu",
    ):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm_first = norm_first
        self.dropout = dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_size, ffn_mult * hidden_size),
            nn.GELU() if activation == "gelu" else nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_mult * hidden_size, hidden_size),
        )
        self.attn_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.drop = nn.Dropout(dropout)

    def attention(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)  # (B, L, D) each
        q, k, v = (t.view(b, l, self.num_heads, d // self.num_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, L, Dh)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, L, Dh)
        return self.proj(out.transpose(1, 2).reshape(b, l, d))  # (B, L, D)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.drop(self.attention(self.attn_norm(x), allowed))
            return x + self.drop(self.ffn(self.ffn_norm(x)))
        x = self.attn_norm(x + self.drop(self.attention(x, allowed)))
        return self.ffn_norm(x + self.drop(self.ffn(x)))


class SwiGLU(nn.Module):
    """Gated feed-forward layer: ``down(silu(gate(x)) * up(x))``, without biases (as LLaMA and eSASRec)."""

    def __init__(self, hidden_size: int, inner: int, dropout: float):
        super().__init__()
        self.gate = nn.Linear(hidden_size, inner, bias=False)
        self.up = nn.Linear(hidden_size, inner, bias=False)
        self.down = nn.Linear(inner, hidden_size, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.drop(F.silu(self.gate(x)) * self.up(x)))  # (B, L, D)


class LiGRBlock(TransformerBlock):
    """The LiGR layer eSASRec uses (Tikhonovich et al., RecSys 2025, after LinkedIn's LiGR): pre-norm branches
    whose outputs enter the residual stream through a sigmoid gate computed from the stream itself, and a
    SwiGLU feed-forward layer.

        x = x + sigmoid(G_a x) * attention(norm(x))
        x = x + sigmoid(G_f x) * swiglu(norm(x))

    The gate lets each block choose, per dimension, how much of a branch to take, so stacking blocks starts
    close to the identity instead of summing every branch at full strength.
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, ffn_mult: int = 4):
        super().__init__(hidden_size, num_heads, dropout, norm_first=True)
        self.ffn = SwiGLU(hidden_size, ffn_mult * hidden_size, dropout)
        self.attn_gate = nn.Linear(hidden_size, hidden_size)
        self.ffn_gate = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + torch.sigmoid(self.attn_gate(x)) * self.drop(self.attention(self.attn_norm(x), allowed))
        return x + torch.sigmoid(self.ffn_gate(x)) * self.drop(self.ffn(self.ffn_norm(x)))


BLOCKS = ("transformer", "ligr")


class SequenceEncoder(nn.Module):
    """Item and position embeddings followed by transformer blocks; item 0 is padding.

    Positions are counted back from the most recent item (the last column of a left-padded batch is
    position 0), so a sequence gets the same encoding whatever padding its batch has. With a fixed
    ``max_len`` this is the same as SASRec's absolute positions.
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        hidden_size: int,
        num_blocks: int,
        num_heads: int,
        dropout: float,
        norm_first: bool,
        causal: bool,
        ffn_mult: int = 1,
        activation: str = "relu",
        sparse: bool = False,
        block: str = "transformer",
        embedding_dropout: float | None = None,
    ):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        if block == "ligr" and not norm_first:
            raise ValueError("block 'ligr' is a pre-norm block: norm_first must be true")
        self.max_len = max_len
        self.causal = causal
        self.norm_first = norm_first
        # sparse: row-sparse gradients, so a step costs the rows a batch touches, not the catalogue.
        self.item_emb = nn.Embedding(vocab_size, hidden_size, padding_idx=0, sparse=sparse)
        self.pos_emb = nn.Embedding(max_len, hidden_size)
        self.emb_drop = nn.Dropout(dropout if embedding_dropout is None else embedding_dropout)
        self.blocks = nn.ModuleList(
            LiGRBlock(hidden_size, num_heads, dropout, ffn_mult) if block == "ligr"
            else TransformerBlock(hidden_size, num_heads, dropout, norm_first, ffn_mult, activation)
            for _ in range(num_blocks)
        )
        # Pre-LN leaves the residual stream unnormalised; one last LayerNorm puts it on the embeddings' scale.
        self.final_norm = nn.LayerNorm(hidden_size, eps=1e-8) if norm_first else nn.Identity()
        self.scale = math.sqrt(hidden_size)

    def forward(self, seq: torch.Tensor, extra: torch.Tensor | None = None,
                items: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) item ids, left-padded with 0 -> (B, L, D) hidden states, zero on padding.

        ``extra`` (B, L, D), if given, is added to the input embeddings (side features); ``items`` (B, L, D),
        if given, replaces the ID embeddings of ``seq`` (items built from features, ``ItemEncoder``).
        """
        b, l = seq.shape
        if l > self.max_len:
            raise ValueError(f"sequence length {l} exceeds max_len {self.max_len}")
        keep = (seq != 0).unsqueeze(-1)  # (B, L, 1)
        positions = torch.arange(l - 1, -1, -1, device=seq.device)  # (L,) most recent = 0
        x = (self.item_emb(seq) if items is None else items) * self.scale + self.pos_emb(positions)  # (B, L, D)
        if extra is not None:
            x = x + extra
        x = self.emb_drop(x) * keep
        allowed = self.attention_mask(seq)
        for block in self.blocks:
            x = block(x, allowed) * keep
        return self.final_norm(x) * keep

    def attention_mask(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, 1, L, L) bool, True where query i may attend to key j.

        Keys on padding are hidden; every position may attend to itself, so that padded queries (whose
        output is zeroed anyway) never have an all-masked row, which would produce NaN.
        """
        l = seq.shape[1]
        eye = torch.eye(l, dtype=torch.bool, device=seq.device)
        allowed = (seq != 0)[:, None, None, :] | eye  # (B, 1, L, L)
        if self.causal:
            allowed = allowed & torch.ones(l, l, dtype=torch.bool, device=seq.device).tril()
        return allowed


@dataclass
class ModelConfig:
    """Size and shape of a sequence model; ``num_items`` is the catalogue (dense ids 1..num_items)."""

    num_items: int
    max_len: int = 50
    hidden_size: int = 64
    num_blocks: int = 2
    num_heads: int = 1
    dropout: float = 0.2
    norm_first: bool = True
    separate_output: bool = False
    num_attributes: int = 0  # > 0: item attributes (ids 1..num_attributes) join the input embeddings
    max_attributes: int = 0  # attribute slots per item in the attribute table
    num_time_buckets: int = 0  # > 0: an embedding of the time gap bucket joins the input embeddings
    sparse_embeddings: bool = False  # item tables get row-sparse gradients (see seqrec.train.optim.LazyAdam)
    block: str = "transformer"  # "transformer" (norm_first picks pre- or post-LN) or "ligr" (eSASRec's)
    ffn_mult: int = 0  # feed-forward width / hidden_size; 0: the architecture's (SASRec 1, BERT4Rec 4, LiGR 4)
    embedding_dropout: float | None = None  # dropout on the input embeddings; None: the same as dropout
    # "both": items are ItemEncoder vectors (ID + features) on the input and the scoring side; "input": the
    # attributes' mean embedding is only added to the input (seqrec's first feature path).
    feature_sides: str = "input"
    num_numeric: int = 0  # numeric features per item (feature_sides "both")
    vector_dim: int = 0  # width of precomputed item vectors (feature_sides "both")
    id_dropout: float = 0.0  # training-time probability that an item occurrence uses its features alone
    unknown_id: str = "zero"  # in place of a missing ID embedding: "zero" or "learned" (one shared vector)
    # Added at inference to the score of every item without a trained ID (withheld, or added later): how far
    # new items are lifted among the known ones, a choice of exposure (seqrec.evaluate.boost picks it).
    new_item_boost: float = 0.0


class NextItemModel(nn.Module):
    """A ``SequenceEncoder`` whose hidden states score items by dot product with an item table.

    The table is the input item embeddings (tied, as SASRec and BERT4Rec do) or, with
    ``separate_output``, an output table of its own (as gSASRec uses). Subclasses choose the attention
    (causal or bidirectional), the feed-forward layer and any extra input tokens.
    """

    causal = True
    ffn_mult = 1
    activation = "relu"
    extra_tokens = 0

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.num_items < 1:
            raise ValueError(f"num_items must be positive, got {config.num_items}")
        self.config = config
        self.encoder = SequenceEncoder(
            vocab_size=config.num_items + 1 + self.extra_tokens,
            max_len=config.max_len,
            hidden_size=config.hidden_size,
            num_blocks=config.num_blocks,
            num_heads=config.num_heads,
            dropout=config.dropout,
            norm_first=config.norm_first,
            causal=self.causal,
            ffn_mult=config.ffn_mult or (4 if config.block == "ligr" else self.ffn_mult),
            activation=self.activation,
            sparse=config.sparse_embeddings,
            block=config.block,
            embedding_dropout=config.embedding_dropout,
        )
        self.output = (
            nn.Embedding(config.num_items + 1, config.hidden_size, sparse=config.sparse_embeddings)
            if config.separate_output else None
        )
        if config.feature_sides not in ("input", "both"):
            raise ValueError(f"feature_sides must be 'input' or 'both', got {config.feature_sides!r}")
        if config.feature_sides == "input" and (config.num_numeric or config.vector_dim):
            raise ValueError("numeric features and item vectors need feature_sides 'both' (the item encoder)")
        self.item_encoder: ItemEncoder | None = None
        if config.feature_sides == "both":
            self.item_encoder = ItemEncoder(config.num_items + 1 + self.extra_tokens, config.hidden_size,
                                            config.num_attributes, config.max_attributes, config.num_numeric,
                                            config.vector_dim, config.id_dropout, config.unknown_id)
        self.attribute_emb: nn.Embedding | None = None
        if config.num_attributes > 0 and self.item_encoder is None:
            if config.max_attributes < 1:
                raise ValueError(f"max_attributes must be positive with attributes, got {config.max_attributes}")
            self.attribute_emb = nn.Embedding(config.num_attributes + 1, config.hidden_size, padding_idx=0)
            # Which attributes each token has; filled by set_item_attributes, saved with the checkpoint so
            # a loaded model needs no attribute file. Extra tokens (the mask) have none.
            table = torch.zeros(config.num_items + 1 + self.extra_tokens, config.max_attributes, dtype=torch.long)
            self.register_buffer("item_attributes", table)
        self.time_emb = (
            nn.Embedding(config.num_time_buckets, config.hidden_size, padding_idx=0)
            if config.num_time_buckets > 0 else None
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
            encoder_attrs = self.item_encoder.attribute_emb if self.item_encoder is not None else None
            for emb in (self.attribute_emb, self.time_emb, encoder_attrs):
                if emb is not None:
                    emb.weight[0].zero_()

    def set_item_attributes(self, table: torch.Tensor) -> None:
        """(num_items + 1, A) dense attribute ids per item, 0-padded (``seqrec.data.features``)."""
        if self.item_encoder is not None:
            self.item_encoder.set_features(attributes=table)
            return
        if self.attribute_emb is None:
            raise ValueError("this model was built without attributes (num_attributes = 0)")
        rows = self.config.num_items + 1
        if table.shape != (rows, self.config.max_attributes):
            raise ValueError(f"attribute table must be ({rows}, {self.config.max_attributes}), got {tuple(table.shape)}")
        if table.numel() and (table.min() < 0 or table.max() > self.config.num_attributes):
            raise ValueError(f"attribute ids must lie in 0..{self.config.num_attributes}")
        self.item_attributes[:rows].copy_(table)

    def side_embeddings(self, seq: torch.Tensor, time_buckets: torch.Tensor | None) -> torch.Tensor | None:
        """(B, L, D) sum of the attribute and time embeddings of the tokens, or None without side features."""
        extra = None
        if self.attribute_emb is not None:
            attrs = self.item_attributes[seq]  # (B, L, A)
            present = (attrs != 0).unsqueeze(-1)  # (B, L, A, 1)
            summed = (self.attribute_emb(attrs) * present).sum(-2)  # (B, L, D); padding rows are zero anyway
            extra = summed / present.sum(-2).clamp(min=1)  # mean over the item's attributes
        if self.time_emb is not None:
            if time_buckets is None:
                raise ValueError("this model uses time features: pass time_buckets (the batch's 'time_inputs')")
            t = self.time_emb(time_buckets)  # (B, L, D)
            extra = t if extra is None else extra + t
        return extra

    def forward(self, seq: torch.Tensor, time_buckets: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) left-padded token ids (and their time-gap buckets) -> (B, L, D) hidden states."""
        if self.item_encoder is None:
            return self.encoder(seq, self.side_embeddings(seq, time_buckets))
        ids = self.encoder.item_emb(self._known_rows(seq, self.encoder.item_emb))  # (B, L, D)
        items = self.item_encoder.combine(ids, seq)
        return self.encoder(seq, self.side_embeddings(seq, time_buckets), items=items)

    def _known_rows(self, items: torch.Tensor, table: nn.Embedding) -> torch.Tensor:
        # Items added at inference lie beyond the trained ID table: they look up padding (weighted 0 anyway).
        return torch.where(items < table.num_embeddings, items, torch.zeros_like(items))

    def query(self, inputs: torch.Tensor, time_inputs: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) left-padded histories (and their time buckets) -> (B, D): what scores each user's next item.

        The one definition used by training's evaluation, recommendations and the exported scorer: the hidden
        state of the most recent position (left padding puts it last) of ``query_inputs``. With a
        ``new_item_boost`` at inference, a last coordinate 1 meets the boost column of ``item_embeddings``.
        """
        q = self(self.query_inputs(inputs), time_inputs)[:, -1]  # (B, D)
        return torch.cat([q, q.new_ones(q.shape[0], 1)], dim=1) if self._boosted else q  # (B, D[+1])

    def query_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """The sequence whose last position is the query: the history itself (BERT4Rec appends its mask)."""
        return inputs

    @property
    def _boosted(self) -> bool:
        # Inference only: training scores targets against negatives, where a constant per item has no place.
        return not self.training and self.item_encoder is not None and self.config.new_item_boost != 0

    @property
    def item_embeddings(self) -> torch.Tensor:
        """(num_items + 1, D) table that scores items; row 0 is padding (D + 1 columns with a boost, ``query``)."""
        if self.item_encoder is not None:
            ids = self.score_ids()
            table = self.embed_items(ids)  # (N + 1, D)
            if not self._boosted:
                return table
            # An inner product with a bias: items without a trained ID carry the boost in a last column, which
            # the query's last coordinate (1) picks up; export and retrieval then score as recommending does.
            new = (~self.item_encoder.id_known[ids] & (ids != 0)).to(table.dtype).unsqueeze(1)  # (N + 1, 1)
            return torch.cat([table, self.config.new_item_boost * new], dim=1)  # (N + 1, D + 1)
        if self.output is not None:
            return self.output.weight
        return self.encoder.item_emb.weight[: self.config.num_items + 1]

    def score_ids(self) -> torch.Tensor:
        """Token id of each scoring column: 0..num_items, then any items added at inference (after the extra
        tokens, such as BERT4Rec's mask, which are never scored)."""
        n = self.config.num_items + 1
        rows = n + self.extra_tokens if self.item_encoder is None else self.item_encoder.id_known.shape[0]
        device = self.encoder.item_emb.weight.device
        return torch.cat([torch.arange(n, device=device), torch.arange(n + self.extra_tokens, rows, device=device)])

    def score_all(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., num_items + 1) scores of every item; column 0 (padding) is meaningless."""
        return hidden @ self.item_embeddings.T

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        """Rows of the scoring table for ``items`` (any shape, ids in 0..num_items) -> items' shape + (D,).

        Looks up the whole weight rather than the ``item_embeddings`` slice, so that with
        ``sparse_embeddings`` the gradient stays row-sparse (a slice's backward is dense).
        """
        table = self.output if self.output is not None else self.encoder.item_emb
        if self.item_encoder is None:
            return F.embedding(items, table.weight, sparse=self.config.sparse_embeddings)
        ids = F.embedding(self._known_rows(items, table), table.weight, sparse=self.config.sparse_embeddings)
        return self.item_encoder.combine(ids, items)

    def score_items(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of given items: hidden (B, L, D) with items (B, L) or (B, L|1, K) -> items' shape (broadcast)."""
        emb = self.embed_items(items)  # (B, L, D) or (B, L|1, K, D)
        if items.dim() == hidden.dim() - 1:
            return (hidden * emb).sum(-1)
        if items.shape[1] == 1 and hidden.shape[1] > 1:
            # Shared across the sequence: a (L, D) x (D, K) product per row. Broadcasting instead would
            # build a (B, L, K, D) tensor, 50x slower for 256 shared negatives.
            return hidden @ emb.squeeze(1).transpose(-1, -2)  # (B, L, K)
        return (hidden.unsqueeze(-2) * emb).sum(-1)
