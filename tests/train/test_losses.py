import math

import pytest
import torch
from seqrec.models.sasrec import SASRec, SASRecConfig
from seqrec.train.losses import bce_sampled, full_cross_entropy, gbce, sampled_softmax


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


@pytest.mark.parametrize("loss", ["bce", "ce", "sampled_softmax", "gbce"])
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
    pos, neg = model.score_items(h, positives), model.score_items(h, negatives)
    if loss == "bce":
        value = bce_sampled(pos, neg, mask)
    elif loss == "sampled_softmax":
        value = sampled_softmax(pos, neg, mask)
    elif loss == "gbce":
        value = gbce(pos, neg, mask, num_items=20, t=0.75)
    else:
        value = full_cross_entropy(model.score_all(h[mask]), positives[mask])
    value.backward()
    torch.optim.SGD(model.parameters(), lr=0.05).step()
    after_pos, after_neg = (s.detach() for s in scores())
    assert (after_pos - before_pos).mean() > 0
    if loss != "ce":
        assert (after_neg - before_neg).mean() < 0


def test_sampled_softmax_by_hand_and_logq() -> None:
    from seqrec.train.losses import sampled_softmax

    pos = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[[0.0, 2.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, False]])
    expected = math.log(math.exp(1) + 1 + math.exp(2)) - 1
    assert float(sampled_softmax(pos, neg, mask)) == pytest.approx(expected)
    # logQ: subtract log q from every logit; a constant q changes nothing.
    const = torch.full((1, 2), -3.0)
    assert float(sampled_softmax(pos, neg, mask, const, const.unsqueeze(-1).expand(1, 2, 2))) == pytest.approx(expected)
    pq, nq = torch.tensor([[math.log(0.5), 0.0]]), torch.tensor([[[math.log(0.25), math.log(0.1)], [0.0, 0.0]]])
    z = [1 - math.log(0.5), 0 - math.log(0.25), 2 - math.log(0.1)]
    corrected = math.log(sum(math.exp(v) for v in z)) - z[0]
    assert float(sampled_softmax(pos, neg, mask, pq, nq)) == pytest.approx(corrected)
    # a negative equal to the target is dropped
    dropped = sampled_softmax(pos, neg, mask, neg_mask=torch.tensor([[[True, False], [True, True]]]))
    assert float(dropped) == pytest.approx(math.log(math.exp(1) + 1) - 1)


def test_gbce_by_hand() -> None:
    from seqrec.train.losses import gbce

    pos = torch.tensor([[0.5]])
    neg = torch.tensor([[[0.0, -1.0]]])
    mask = torch.tensor([[True]])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    alpha = 2 / 9  # 2 negatives of 10 items
    for t in (0.0, 0.75, 1.0):
        beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
        expected = beta * sp(-0.5) + sp(0.0) + sp(-1.0)
        assert float(gbce(pos, neg, mask, num_items=10, t=t)) == pytest.approx(expected)
    assert float(gbce(pos, neg, mask, 10, t=0.0)) == pytest.approx(float(bce_sampled(pos, neg, mask)))
    with pytest.raises(ValueError, match="t must be in"):
        gbce(pos, neg, mask, 10, t=1.5)
