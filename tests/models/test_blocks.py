"""Block variants: the LiGR layer's equations, its use in both architectures, and the options around it."""

import pytest
import torch
import torch.nn.functional as F
from seqrec.models import BERT4Rec, SASRec, SASRecConfig
from seqrec.models.transformer import LiGRBlock, TransformerBlock


def ligr_by_hand(block: LiGRBlock, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The LiGR equations written out from the paper's description, with torch's own attention."""
    def attend(h: torch.Tensor) -> torch.Tensor:
        b, l, d = h.shape
        q, k, v = (block.qkv(h)).split(d, dim=-1)
        heads = block.num_heads
        q, k, v = (t.view(b, l, heads, d // heads).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / (d // heads) ** 0.5
        scores = scores.masked_fill(~allowed, float("-inf"))
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, l, d)
        return block.proj(out)

    def swiglu(h: torch.Tensor) -> torch.Tensor:
        return block.ffn.down(F.silu(block.ffn.gate(h)) * block.ffn.up(h))

    x = x + torch.sigmoid(block.attn_gate(x)) * attend(F.layer_norm(x, x.shape[-1:], block.attn_norm.weight,
                                                                    block.attn_norm.bias, 1e-8))
    return x + torch.sigmoid(block.ffn_gate(x)) * swiglu(F.layer_norm(x, x.shape[-1:], block.ffn_norm.weight,
                                                                      block.ffn_norm.bias, 1e-8))


def test_ligr_block_computes_gated_pre_norm_branches_with_swiglu() -> None:
    torch.manual_seed(0)
    block = LiGRBlock(hidden_size=8, num_heads=2, dropout=0.0, ffn_mult=3).eval()
    for p in block.parameters():  # away from the zero-bias init, so the gates really vary
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(3, 5, 8)
    allowed = torch.ones(5, 5, dtype=torch.bool).tril().expand(3, 1, 5, 5)
    torch.testing.assert_close(block(x, allowed), ligr_by_hand(block, x, allowed), atol=1e-5, rtol=1e-5)
    assert block.ffn.gate.weight.shape == (24, 8) and block.ffn.gate.bias is None
    ungated = TransformerBlock(8, 2, 0.0, norm_first=True).eval()
    assert not isinstance(ungated, LiGRBlock)


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec])
def test_both_architectures_take_the_ligr_block(cls: type) -> None:
    torch.manual_seed(0)
    config = SASRecConfig(num_items=30, max_len=6, hidden_size=16, num_heads=2, block="ligr")
    model = cls(config).eval()
    assert all(isinstance(b, LiGRBlock) for b in model.encoder.blocks)
    assert model.encoder.blocks[0].ffn.up.out_features == 64  # LiGR's default width: 4 x hidden
    seq = torch.tensor([[0, 0, 3, 4, 5, 6]])
    out = model(seq)
    assert out.shape == (1, 6, 16) and torch.isfinite(out).all() and (out[:, :2] == 0).all()
    if cls is SASRec:  # still causal: later items do not change earlier positions
        other = model(torch.tensor([[0, 0, 3, 4, 9, 8]]))
        torch.testing.assert_close(out[:, :4], other[:, :4])


def test_block_options_are_checked_and_ffn_mult_and_embedding_dropout_apply() -> None:
    with pytest.raises(ValueError, match="block must be one of"):
        SASRec(SASRecConfig(num_items=10, block="gated"))
    with pytest.raises(ValueError, match="'ligr' is a pre-norm block"):
        SASRec(SASRecConfig(num_items=10, block="ligr", norm_first=False))
    wide = SASRec(SASRecConfig(num_items=10, hidden_size=8, ffn_mult=2))
    assert wide.encoder.blocks[0].ffn[0].out_features == 16
    model = SASRec(SASRecConfig(num_items=10, hidden_size=8, dropout=0.5, embedding_dropout=0.1))
    assert model.encoder.emb_drop.p == 0.1 and model.encoder.blocks[0].drop.p == 0.5
    assert SASRec(SASRecConfig(num_items=10, dropout=0.3)).encoder.emb_drop.p == 0.3
