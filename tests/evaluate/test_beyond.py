"""Beyond-accuracy metrics and uncertainty, on hand-computed cases and seeded statistical checks."""

import math

import numpy as np
import pytest
from seqrec.evaluate.beyond_accuracy import beyond_accuracy, gini, head_items
from seqrec.evaluate.uncertainty import bootstrap_ci, paired_comparison


def test_gini_by_hand() -> None:
    assert gini(np.array([1, 1, 1, 1])) == 0.0
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(3 / 4)  # (n - 1) / n: one item takes everything
    assert gini(np.array([3, 1, 2])) == pytest.approx(4 / 18)  # sorted 1, 2, 3: (-2*1 + 0*2 + 2*3) / (3 * 6)
    assert gini(np.zeros(3)) == 0.0


def test_beyond_accuracy_by_hand() -> None:
    counts = np.array([0, 10, 5, 1, 0])  # padding, then items 1..4 (item 4 never in training)
    top = np.array([[1, 2], [1, 3]])
    out = beyond_accuracy(top, counts, targets=np.array([3, 4]))
    assert out["coverage"] == pytest.approx(3 / 4)  # items 1, 2, 3 recommended
    assert out["avg_popularity"] == pytest.approx((10 + 5 + 10 + 1) / 4)
    p = np.array([10, 5, 1, 1]) / 16  # item 4 counts as seen once
    assert out["novelty"] == pytest.approx(-(2 * math.log2(p[0]) + math.log2(p[1]) + math.log2(p[2])) / 4)
    assert out["gini"] == pytest.approx(6 / 16)  # exposure 2, 1, 1, 0
    assert head_items(counts).tolist() == [False, True, False, False, False]  # the top 20% of 4 items: item 1
    assert out["long_tail"] == pytest.approx(0.5)  # items 2 and 3 of the four recommendations
    assert out["consumed_popularity"] == pytest.approx(0.5)
    assert out["popularity_ratio"] == pytest.approx(13.0)
    with pytest.raises(ValueError, match="1..4"):
        beyond_accuracy(np.array([[5, 1]]), counts)
    padded = beyond_accuracy(np.array([[1, 2], [1, 0]]), counts)  # 0: an empty slot, not an item
    assert padded["avg_popularity"] == pytest.approx((10 + 5 + 10) / 3)


def test_bootstrap_interval_width_and_coverage() -> None:
    # Bernoulli(0.3) hits of 2000 users: the 95% interval is about +-1.96 * sqrt(0.21 / 2000) = +-0.020.
    rng = np.random.default_rng(0)
    hits = (rng.random(2000) < 0.3).astype(float)
    ci = bootstrap_ci(hits, resamples=1000, seed=1)
    assert ci.low < hits.mean() < ci.high
    assert (ci.high - ci.low) / 2 == pytest.approx(1.96 * math.sqrt(0.21 / 2000), rel=0.25)
    constant = bootstrap_ci(np.full(10, 0.25))
    assert constant.low == constant.high == constant.mean == 0.25


def test_bootstrap_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2)
    trials = 200
    covered = 0
    for s in range(trials):
        sample = (rng.random(400) < 0.3).astype(float)
        ci = bootstrap_ci(sample, resamples=400, seed=s)
        covered += ci.low <= 0.3 <= ci.high
    # 95% nominal; with 200 trials the binomial sd is 1.5%, so 88%..99% is a 4-sd band.
    assert 0.88 <= covered / trials <= 0.99


def test_paired_comparison_detects_a_shift_and_not_noise() -> None:
    rng = np.random.default_rng(3)
    a = (rng.random(3000) < 0.3).astype(float)
    better = np.where(rng.random(3000) < 0.1, 1.0, a)  # B hits wherever A does, plus 10% more users
    res = paired_comparison(a, better, resamples=2000, seed=0)
    assert res.difference.low > 0 and res.p_value < 0.01 and res.users == 3000
    noise = np.where(rng.random(3000) < 0.5, a, np.roll(a, 1))  # same distribution, no systematic change
    null = paired_comparison(a, noise, resamples=2000, seed=0)
    assert null.p_value > 0.05 and null.difference.low < 0 < null.difference.high
    same = paired_comparison(a, a.copy(), resamples=200)
    assert same.p_value == 1.0 and same.difference.mean == 0.0
    with pytest.raises(ValueError, match="aligned"):
        paired_comparison(a, a[:10])


@pytest.mark.slow
def test_test_runs_keep_per_user_rows_and_compare(tmp_path, capsys) -> None:
    import json

    from seqrec.cli import run
    from seqrec.cli.tools import tools
    from seqrec.evaluate.per_user import read_per_user

    common = ["--config", "configs/sasrec_synthetic.yaml", "--data.synthetic.num_users=300",
              "--data.synthetic.num_items=120", "--data.synthetic.num_clusters=6", "--data.synthetic.mean_length=12",
              "--model.hidden_size=16", "--trainer.logger=false", "--trainer.enable_progress_bar=false"]
    a = run(["fit", *common, "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path / 'a'}"])
    run(["fit", *common, "--trainer.max_epochs=4", f"--trainer.default_root_dir={tmp_path / 'b'}"])
    rows = read_per_user(tmp_path / "a")
    assert rows["user"].size == 300 and rows["top_model"].shape == (300, 10)
    # The per-user rows average to the logged metrics.
    assert rows["ndcg@10"].mean() == pytest.approx(a.model.results["test"]["ndcg@10"], abs=1e-6)
    record = json.loads((tmp_path / "a" / "test_results.json").read_text())
    iv = record["intervals"]["ndcg@10"]
    assert iv["low"] <= record["metrics"]["ndcg@10"] <= iv["high"]
    assert 0 < record["beyond_accuracy"]["model"]["coverage"] <= 1
    assert sum(g["users"] for g in record["slices"]["history_length"]["ndcg@10"]) == 300
    assert "beyond accuracy of the top-10 lists" in capsys.readouterr().out
    assert tools(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp.json")]) == 0
    table = capsys.readouterr().out
    assert "300 users in both" in table and "| ndcg@10 |" in table
    cmp = json.loads((tmp_path / "cmp.json").read_text())["metrics"]["ndcg@10"]
    assert cmp["difference"]["mean"] == pytest.approx(cmp["b"] - cmp["a"])
    same = json.loads((tools(["compare", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "s.json")])
                       and "{}") or (tmp_path / "s.json").read_text())
    assert same["metrics"]["ndcg@10"]["p_value"] == 1.0
    # A run on other data (another synthetic draw: same ids, other people) is refused, not paired.
    run(["fit", *common, "--trainer.max_epochs=1", "--data.synthetic.num_items=100",
         f"--trainer.default_root_dir={tmp_path / 'other'}"])
    with pytest.raises(ValueError, match="tested on different data"):
        tools(["compare", str(tmp_path / "a"), str(tmp_path / "other")])


@pytest.mark.slow
def test_evaluate_writes_a_report(tmp_path) -> None:
    import json

    from seqrec.cli import run
    from seqrec.cli.tools import tools

    run(["fit", "--config", "configs/sasrec_synthetic.yaml", "--data.synthetic.num_users=300",
         "--data.synthetic.num_items=120", "--data.synthetic.num_clusters=6", "--data.synthetic.mean_length=12",
         "--model.hidden_size=16", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
         "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path}"])
    assert tools(["evaluate", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| ndcg@10 |" in text and "## Beyond accuracy" in text and "| history_length |" in text
    for png in ("ndcg_by_slice.png", "popularity_recommended_vs_consumed.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:4] == b"\x89PNG"
    record = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert record["users"] == 300 and record["metrics"]["ndcg@10"] == pytest.approx(
        record["intervals"]["ndcg@10"]["mean"], abs=1e-6)
    with pytest.raises(FileNotFoundError, match="test_per_user"):
        tools(["evaluate", str(tmp_path / "rep")])


def test_slices_have_no_empty_groups_when_quartiles_tie() -> None:
    from seqrec.evaluate.per_user import summarize

    rng = np.random.default_rng(0)
    n = 400
    lengths = np.where(rng.random(n) < 0.4, 4, rng.integers(5, 30, n))  # a heavy minimum, as in 5-core data
    rows = {"history_length": lengths, "target": rng.integers(1, 50, n),
            "top_model": rng.integers(1, 50, (n, 10)), "top_popularity": rng.integers(1, 50, (n, 10)),
            "ndcg@10": rng.random(n), "popularity/ndcg@10": rng.random(n)}
    out = summarize(rows, np.arange(51), [10])
    groups = out["slices"]["history_length"]["ndcg@10"]
    assert all(g["users"] > 0 for g in groups) and sum(g["users"] for g in groups) == n
    assert groups[0]["group"].startswith("4-") and len(groups) == 3  # the tied quartile at 4 merged away


def test_cold_targets_get_a_slice_margins_over_the_new_item_baselines_and_exposure() -> None:
    from seqrec.evaluate.per_user import format_summary, summarize

    rng = np.random.default_rng(1)
    n = 600
    cold = rng.random(n) < 0.2
    knn = np.where(cold, rng.random(n) * 0.2, rng.random(n))
    model = np.where(cold, knn + 0.1, knn)  # better than kNN by 0.1 on every cold user, equal on warm ones
    top = rng.integers(10, 50, (n, 10))
    top[:, 0] = 7  # withheld item 7 is the first of every list; withheld 8 and 9 are never recommended
    rows = {"history_length": rng.integers(3, 30, n), "target": rng.integers(1, 50, n), "top_model": top,
            "top_popularity": np.full((n, 10), 1), "ndcg@10": model, "hr@10": (model > 0.5).astype(float),
            "popularity/ndcg@10": rng.random(n), "feature_knn/ndcg@10": knn, "cold_target": cold}
    out = summarize(rows, np.arange(51), [10], cold_items=np.array([7, 8, 9]))
    warm_g, cold_g = out["slices"]["target_cold"]["ndcg@10"]
    assert (warm_g["users"], cold_g["users"]) == ((~cold).sum(), cold.sum())
    assert cold_g["mean"] == pytest.approx(model[cold].mean()) and warm_g["mean"] == pytest.approx(model[~cold].mean())
    m = out["cold_start"]["margins"]["feature_knn/ndcg@10"]
    assert out["cold_start"]["users"] == cold.sum()
    assert m["difference"]["mean"] == pytest.approx(0.1) and m["difference"]["low"] == pytest.approx(0.1)
    assert m["p_value"] < 0.01 and m["baseline"] == pytest.approx(knn[cold].mean())
    assert "feature_knn/hr@10" not in out["cold_start"]["margins"]  # no such per-user rows
    beyond = out["beyond_accuracy"]["model"]
    assert beyond["withheld_share"] == pytest.approx(0.1) and beyond["withheld_coverage"] == pytest.approx(1 / 3)
    assert out["beyond_accuracy"]["popularity"]["withheld_share"] == 0
    assert "cold targets (%d users)" % cold.sum() in format_summary(out, 10)
    plain = summarize({k: v for k, v in rows.items() if k != "cold_target"}, np.arange(51), [10])
    assert "cold_start" not in plain and "withheld_share" not in plain["beyond_accuracy"]["model"]


def _loop_bootstrap(x: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The reference: one resample of users at a time (what bootstrap_ci did before it was vectorised)."""
    rng = np.random.default_rng(seed)
    return np.array([x[rng.integers(0, x.size, size=x.size)].mean() for _ in range(resamples)])


def _loop_sign_flip_p(d: np.ndarray, resamples: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    extreme = sum(abs(((rng.integers(0, 2, size=d.size) * 2 - 1) * d).mean()) >= abs(d.mean()) - 1e-15
                  for _ in range(resamples))
    return (extreme + 1) / (resamples + 1)


def _ndcg_like(rng: np.random.Generator, n: int, scale: float = 30.0) -> np.ndarray:
    rank = np.floor(rng.exponential(scale, n)).astype(int)  # eleven distinct values, mostly 0
    return np.where(rank < 10, 1 / np.log2(rank + 2), 0.0)


@pytest.mark.parametrize("kind", ["few distinct values", "continuous"])
def test_vectorised_bootstrap_draws_what_the_resampling_loop_draws(kind: str) -> None:
    from seqrec.evaluate.uncertainty import GROUPED_MAX_VALUES, resampled_means

    rng = np.random.default_rng(4)
    n = 6000
    x = _ndcg_like(rng, n) if kind == "few distinct values" else rng.gamma(0.5, size=n)
    assert (np.unique(x).size <= GROUPED_MAX_VALUES) == (kind == "few distinct values")  # each path in turn
    means = resampled_means(x, 4000, np.random.default_rng(0))
    reference = _loop_bootstrap(x, 4000, seed=1)
    sd = x.std() / np.sqrt(n)  # the bootstrap distribution's sd
    # Mean and sd of the resampled means within 5 Monte Carlo sds (sd / sqrt(R); sd / sqrt(2R) for the sd).
    assert means.mean() == pytest.approx(x.mean(), abs=5 * sd / np.sqrt(4000))
    assert means.std() == pytest.approx(sd, rel=5 / np.sqrt(2 * 4000))
    # The interval ends: quantiles of 4000 draws, each within 0.06 sd of the truth (one Monte Carlo sd).
    ours, theirs = np.quantile(means, [0.025, 0.975]), np.quantile(reference, [0.025, 0.975])
    np.testing.assert_allclose(ours, theirs, atol=0.4 * sd)
    ci = bootstrap_ci(x, resamples=4000, seed=0)
    assert (ci.low, ci.high) == tuple(np.quantile(means, [0.025, 0.975]))
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)


@pytest.mark.parametrize("kind", ["few distinct values", "continuous"])
def test_vectorised_sign_flip_p_value_agrees_with_the_loop(kind: str) -> None:
    rng = np.random.default_rng(5)
    n = 5000
    if kind == "few distinct values":
        a, b = _ndcg_like(rng, n), _ndcg_like(rng, n, scale=29.0)
    else:
        a, b = rng.random(n), rng.random(n)
    res = paired_comparison(a, b, resamples=4000, seed=0)
    expected = _loop_sign_flip_p(b - a, 4000, seed=1)
    assert 0.01 < expected < 0.9  # a p-value the check can tell apart from 0 and 1
    assert res.p_value == pytest.approx(expected, abs=5 * np.sqrt(expected * (1 - expected) / 4000) * np.sqrt(2))
    assert paired_comparison(a, b, resamples=500, seed=3) == paired_comparison(a, b, resamples=500, seed=3)


def test_bootstrap_and_comparison_cost_far_less_than_one_resample_at_a_time() -> None:
    """The loop resampled 300k users 1,000 times per metric (about 3 s each on a free core, 30 s under load);
    per-user metrics take few values, and counting draws per value is what the vectorised version does."""
    import time

    rng = np.random.default_rng(6)
    a, b = _ndcg_like(rng, 100_000), _ndcg_like(rng, 100_000, scale=25.0)

    def per_resample(f, resamples: int) -> float:
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            f(resamples)
            best = min(best, time.perf_counter() - start)
        return best / resamples

    loop = per_resample(lambda r: _loop_bootstrap(a, r, 0), 20)
    ours = per_resample(lambda r: bootstrap_ci(a, resamples=r), 1000)
    paired = per_resample(lambda r: paired_comparison(a, b, resamples=r), 1000)
    assert ours * 20 < loop, f"bootstrap: {ours * 1e6:.1f} us per resample vs the loop's {loop * 1e6:.1f}"
    # The comparison is a bootstrap plus a sign-flip test: twice the loop's work before.
    assert paired * 10 < loop, f"paired comparison: {paired * 1e6:.1f} us per resample vs the loop's {loop * 1e6:.1f}"


def test_comparison_table_prints_small_p_values_as_below_the_resolution() -> None:
    from seqrec.evaluate.per_user import format_comparison

    metrics = {"ndcg@10": {"a": 0.1, "b": 0.2, "difference": {"mean": 0.1, "low": 0.05, "high": 0.15},
                           "p_value": 1 / 1001}}
    table = format_comparison({"users": 10, "only_a": 0, "only_b": 0, "metrics": metrics}, "A", "B")
    assert table.splitlines()[-1] == "| ndcg@10 | 0.1000 | 0.2000 | +0.1000 | [+0.0500, +0.1500] | < 0.001 |"
    from seqrec.evaluate.per_user import format_p

    assert [format_p(p) for p in (1 / 1001, 0.0009, 0.001, 0.01234, 0.5, 1.0)] == \
        ["< 0.001", "< 0.001", "0.001", "0.012", "0.500", "1.000"]
