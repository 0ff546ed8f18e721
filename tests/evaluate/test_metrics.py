import math

import pytest
import torch
from seqrec.evaluate.metrics import (
    expected_metrics,
    ranking_metrics,
    target_rank_counts,
)

INF = float("inf")


def metrics(scores, target, k):
    out = ranking_metrics(torch.tensor([scores], dtype=torch.float64), torch.tensor([target]), [k])
    return {name.split("@")[0]: float(v[0]) for name, v in out.items()}


def test_strict_ranking_by_hand() -> None:
    # target score 0.3 is beaten by 0.5 and 0.9: rank 3.
    m = metrics([0.1, 0.5, 0.3, 0.9], 2, 3)
    assert m["hr"] == 1.0
    assert m["ndcg"] == pytest.approx(1 / math.log2(4))
    assert m["mrr"] == pytest.approx(1 / 3)
    assert metrics([0.1, 0.5, 0.3, 0.9], 2, 2) == {"hr": 0.0, "ndcg": 0.0, "mrr": 0.0}
    top = metrics([0.1, 0.5, 0.3, 0.9], 3, 1)
    assert top == {"hr": 1.0, "ndcg": 1.0, "mrr": 1.0}


def test_all_tied_is_random_ranking() -> None:
    # 4 items all scored alike: rank uniform on 1..4.
    m = metrics([1.0, 1.0, 1.0, 1.0], 0, 2)
    assert m["hr"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert m["mrr"] == pytest.approx((1 + 0.5) / 4)


def test_partial_tie_by_hand() -> None:
    # one item above, one tied: rank 2 or 3 with equal chance.
    m = metrics([2.0, 1.0, 1.0, 0.5], 1, 2)
    assert m["hr"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx(0.5 / math.log2(3))
    assert m["mrr"] == pytest.approx(0.25)


def test_excluded_items_and_excluded_target() -> None:
    # excluded items (-inf) never outrank anything...
    assert metrics([-INF, 0.2, -INF, 0.1], 1, 1)["hr"] == 1.0
    # ...and a target that is itself excluded is a miss, even among ties of -inf.
    assert metrics([-INF, -INF, 0.3], 0, 3) == {"hr": 0.0, "ndcg": 0.0, "mrr": 0.0}


def test_expected_metrics_match_brute_force_average() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (200, 12), generator=gen).double()
    targets = torch.randint(0, 12, (200,), generator=gen)
    greater, ties = target_rank_counts(scores, targets)
    for k in (1, 3, 5, 12):
        got = expected_metrics(greater, ties, k)
        for i in range(200):
            g, e = int(greater[i]), int(ties[i])
            ranks = range(g + 1, g + e + 2)
            hr = sum(r <= k for r in ranks) / (e + 1)
            ndcg = sum(1 / math.log2(r + 1) for r in ranks if r <= k) / (e + 1)
            mrr = sum(1 / r for r in ranks if r <= k) / (e + 1)
            assert float(got["hr"][i]) == pytest.approx(hr)
            assert float(got["ndcg"][i]) == pytest.approx(ndcg)
            assert float(got["mrr"][i]) == pytest.approx(mrr)


def test_bad_k() -> None:
    with pytest.raises(ValueError, match="k must be positive"):
        expected_metrics(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), 0)


def test_top_k_shortcut_gives_the_exact_metrics() -> None:
    # Coarse scores make many ties, some at the k-th place; excluded items and targets included.
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 30, (300, 200), generator=gen).float()
    scores[torch.rand(300, 200, generator=gen) < 0.05] = float("-inf")
    targets = torch.randint(1, 200, (300,), generator=gen)
    exact = target_rank_counts(scores, targets)
    fast = target_rank_counts(scores, targets, max_k=20)
    counted = fast[0] < scores.shape[1]
    assert counted.any() and (~counted).any()
    assert torch.equal(fast[0][counted], exact[0][counted])
    assert torch.equal(fast[1][counted], exact[1][counted])
    excluded = torch.isneginf(scores.gather(1, targets[:, None]).squeeze(1))
    assert ((exact[0] >= 20) | excluded)[~counted].all()  # skipped rows miss at every k <= 20
    for k in (1, 5, 10, 20):
        for name, value in expected_metrics(*fast, k).items():
            torch.testing.assert_close(value, expected_metrics(*exact, k)[name], msg=f"{name}@{k}")


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_metrics_equal_whole_catalogue_metrics(chunk: int) -> None:
    from seqrec.evaluate.ranking import batch_metrics, chunked_batch_metrics

    gen = torch.Generator().manual_seed(chunk)
    b, n = 40, 150
    scores = torch.randint(0, 12, (b, n + 1), generator=gen).float()  # coarse: many ties
    targets = torch.randint(1, n + 1, (b,), generator=gen)
    rows = torch.repeat_interleave(torch.arange(b), 5)
    items = torch.randint(1, n + 1, (b * 5,), generator=gen)
    items[:5] = targets[0]  # one user's target is in their history: a miss either way
    batch = {"targets": targets, "history_rows": rows, "history_items": items,
             "candidates": torch.randint(1, n + 1, (b, 20), generator=gen)}
    for exclude in (True, False):
        whole = batch_metrics(scores, batch, [1, 5, 10], exclude)
        parts = chunked_batch_metrics(lambda lo, hi: scores[:, lo:hi].clone(), n + 1, batch, [1, 5, 10], exclude,
                                      chunk=chunk)
        assert whole.keys() == parts.keys()
        for name in whole:
            torch.testing.assert_close(parts[name], whole[name], msg=f"{name} exclude={exclude}")


def test_masked_top_k_never_returns_blocked_or_seen_items() -> None:
    from seqrec.evaluate.ranking import masked_top_k

    scores = torch.tensor([[9.0, 5, 4, 3, 2, 1], [9.0, 1, 2, 3, 4, 5]])  # column 0 (padding) scores best
    batch = {"history_rows": torch.tensor([0]), "history_items": torch.tensor([1])}  # row 0 saw item 1
    blocked = torch.tensor([False, False, True, False, False, False])  # product rules forbid item 2
    _, items = masked_top_k(scores.clone(), batch, 3, True, blocked)
    assert items.tolist() == [[3, 4, 5], [5, 4, 3]]
    only = torch.ones(6, dtype=torch.bool)
    only[[1, 3]] = False  # an allow-list of items 1 and 3
    top, items = masked_top_k(scores.clone(), batch, 3, True, only)
    assert items[0, 0] == 3 and torch.isinf(top[0, 1:]).all()  # row 0 saw item 1: one allowed item left
    assert items[1, :2].tolist() == [3, 1] and torch.isinf(top[1, 2:]).all()
