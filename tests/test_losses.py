import math

import pytest
import torch

from seqrec.losses import bce_sampled, full_cross_entropy
from seqrec.models.sasrec import SASRec, SASRecConfig


def test_bce_by_hand() -> None:
    pos = torch.tensor([[0.0, 2.0, 9.0]])
    neg = torch.tensor([[[0.0, 0.0], [-1.0, 1.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, False]])
    # position 0: log 2 + 2 log 2; position 1: softplus(-2) + softplus(-1) + softplus(1); position 2 masked.
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    expected = (3 * math.log(2) + sp(-2) + sp(-1) + sp(1)) / 2
    assert float(bce_sampled(pos, neg, mask)) == pytest.approx(expected)


def test_full_cross_entropy_ignores_padding_column() -> None:
    logits = torch.tensor([[100.0, 1.0, 2.0]])  # column 0 (padding) must not take probability mass
    assert float(full_cross_entropy(logits, torch.tensor([2]))) == pytest.approx(math.log1p(math.exp(-1)))


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_one_step_raises_the_positive_score(loss: str) -> None:
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=20, max_len=5, hidden_size=16, dropout=0.0))
    inputs = torch.tensor([[0, 3, 4, 5, 6]])
    positives = torch.tensor([[0, 4, 5, 6, 7]])
    negatives = torch.tensor([[[0], [9], [10], [11], [12]]])
    mask = positives != 0

    def scores():
        h = model(inputs)
        return model.score_items(h, positives)[mask], model.score_items(h, negatives)[mask]

    before_pos, before_neg = (s.detach() for s in scores())
    h = model(inputs)
    if loss == "bce":
        value = bce_sampled(model.score_items(h, positives), model.score_items(h, negatives), mask)
    else:
        value = full_cross_entropy(model.score_all(h[mask]), positives[mask])
    value.backward()
    torch.optim.SGD(model.parameters(), lr=0.05).step()
    after_pos, after_neg = (s.detach() for s in scores())
    assert (after_pos - before_pos).mean() > 0
    if loss == "bce":
        assert (after_neg - before_neg).mean() < 0
