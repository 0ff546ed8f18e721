"""Distributions of the samplers that had none tested: the sampled protocol's candidates, uniform draws without
exclusion, shared and mixed uniform draws, BERT4Rec's targets_logq, and the in-batch fallback of a lone row.

Each chi-square test draws a seeded sample, fails only at p < 0.001 for a correct sampler (``chi2_critical``),
and shows its power in the same test: the same counts reject a nearby wrong distribution.
"""

import numpy as np
import pytest
import torch
from seqrec._core import BatchBuilder, SequenceStore
from seqrec.data.reference import pool_reference, proposal_reference
from seqrec.train.losses import sampled_softmax
from stats import chi2, chi2_critical


def lone_user_store(num_items: int = 10, seen: tuple[int, ...] = (1, 2, 3, 4)) -> tuple[SequenceStore, np.ndarray]:
    """One user who saw ``seen``: every other item of the catalogue has no training count at all."""
    items = np.array(seen, dtype=np.int32)
    return SequenceStore(np.array([0, items.size], dtype=np.int64), items, num_items), items


@pytest.mark.parametrize("mode", ["in_batch", "mixed"])
def test_a_lone_row_draws_in_batch_negatives_uniformly_and_says_so(mode: str) -> None:
    """A batch of one row has no other rows' targets: its in-batch draws fall back to uniform over the
    catalogue, so their logQ is -ln(num_items) (in the mixed proposal: the uniform share of both parts), also
    for items never seen in training (their training frequency is 0), and the sampled softmax stays finite.

    The in-batch draws: 15,000 over 10 items, chi-square at p < 0.001 (power: the counts reject a linear tilt of
    30% across the ids); logq exactly the reference's (rtol 1e-6)."""
    num_items, kb = 10, 5000
    store, seen = lone_user_store(num_items)
    builder = BatchBuilder(store, 3, negatives=mode, num_negatives=kb if mode == "in_batch" else 3,
                           num_in_batch=kb if mode == "mixed" else 0)
    batch = builder.build(np.array([0], dtype=np.int64), seed=0)
    real = batch["targets"] != 0  # (1, W)
    negatives, logq = batch["negatives"][real], batch["negatives_logq"][real]  # (T, K)
    draws = negatives[:, -kb:].ravel()
    assert np.isin(draws, np.arange(5, num_items + 1)).any(), "the case this test is about: never-seen items drawn"
    counts = np.bincount(draws, minlength=num_items + 1).astype(float)
    stat, df = chi2(counts, np.r_[0.0, np.ones(num_items)])
    assert stat < chi2_critical(df), stat
    wrong, _ = chi2(counts, np.r_[0.0, np.linspace(1.0, 1.3, num_items)])
    assert wrong > chi2_critical(df), wrong
    p = proposal_reference(mode, np.asarray(store.item_counts()), seen, True, num_negatives=3, num_in_batch=kb,
                           in_batch_uniform=True)
    assert np.isfinite(logq).all() and np.isfinite(batch["targets_logq"]).all()
    np.testing.assert_allclose(logq, np.log(p[negatives]), rtol=1e-6)
    np.testing.assert_allclose(batch["targets_logq"][real], np.log(p[batch["targets"][real]]), rtol=1e-6)
    if mode == "in_batch":
        np.testing.assert_allclose(logq, -np.log(num_items), rtol=1e-6)
    t = {name: torch.from_numpy(array) for name, array in batch.items()}
    # Equal scores: the loss is then its logQ terms alone.
    loss = sampled_softmax(torch.zeros(real.shape), torch.zeros(t["negatives"].shape), t["targets"] != 0,
                           t["targets_logq"], t["negatives_logq"], t["negatives"] != t["targets"][..., None])
    assert torch.isfinite(loss), loss


# The sampled evaluation protocol --------------------------------------------------------------------------


def pooled_expectation(users: np.ndarray, histories, weights: np.ndarray, n: int) -> np.ndarray:
    """Expected counts of every item over ``n`` candidates per user, each user's drawn in proportion to
    ``weights`` over the items outside their history. The Pearson statistic of the pooled counts is then a
    little conservative (a sum of multinomials varies less than one multinomial of the pooled probabilities)."""
    out = np.zeros(weights.size)
    for u in users.tolist():
        w = weights.astype(float).copy()
        w[0] = 0.0
        w[np.unique(histories(u))] = 0.0
        out += n * w / w.sum()
    return out


def test_uniform_candidates_of_the_sampled_protocol_are_uniform_over_unseen_items(data, store) -> None:
    """``store.uniform_negatives``: 500 per user for all 300 users (150,000 draws over 90 items), never from
    the user's history, pooled chi-square at p < 0.001. Power: the same counts reject candidates that forgot to
    exclude the user's last two items (the held-out targets a training-split store would not know)."""
    users = np.arange(data.num_users, dtype=np.int64)
    n = 500
    out = store.uniform_negatives(users, n, seed=5)
    for u in users.tolist():
        assert not np.isin(out[u], data.sequence(u)).any(), f"user {u} got a candidate from their history"
    observed = np.bincount(out.ravel(), minlength=data.num_items + 1).astype(float)
    ones = np.ones(data.num_items + 1)
    stat, df = chi2(observed, pooled_expectation(users, data.sequence, ones, n))
    assert stat < chi2_critical(df), stat
    wrong, _ = chi2(observed, pooled_expectation(users, lambda u: data.sequence(u)[:-2], ones, n))
    assert wrong > chi2_critical(df), wrong


@pytest.mark.parametrize("mode", ["uniform", "popularity"])
def test_the_data_module_draws_sampled_candidates_over_the_whole_history(mode: str) -> None:
    """``sampled_eval``: the validation users' candidates avoid everything the user ever interacted with (the
    held-out targets too), uniformly or by the whole dataset's counts (the BERT4Rec protocol). 1,000 per user
    for 300 users, pooled chi-square at p < 0.001. Power: the same counts reject what a store of the training
    split would draw (for uniform: the held-out targets not excluded; for popularity: training counts)."""
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec

    spec = SyntheticSpec(num_users=300, num_items=90, num_clusters=5, mean_length=14.0, seed=8)
    n = 1000
    dm = SeqRecDataModule(synthetic=spec, sampled_eval=mode, num_sampled=n)
    full = dm.interactions
    batches = dm.eval_batches("val")
    users = np.concatenate([b["users"].numpy() for b in batches])
    candidates = np.concatenate([b["candidates"].numpy() for b in batches])  # (U, n)
    assert candidates.shape == (users.size, n)
    for u, row in zip(users.tolist(), candidates):
        assert not np.isin(row, full.sequence(u)).any(), f"user {u} got a candidate from their history"
    observed = np.bincount(candidates.ravel(), minlength=full.num_items + 1).astype(float)
    weights = full.item_counts() if mode == "popularity" else np.ones(full.num_items + 1)
    stat, df = chi2(observed, pooled_expectation(users, full.sequence, weights, n))
    assert stat < chi2_critical(df), stat
    if mode == "popularity":
        wrong_e = pooled_expectation(users, full.sequence, dm.split.train_item_counts(), n)
    else:
        wrong_e = pooled_expectation(users, lambda u: full.sequence(u)[:-2], weights, n)
    wrong, _ = chi2(observed, wrong_e)
    assert wrong > chi2_critical(df), wrong


# Uniform training negatives: without exclusion, shared, mixed ---------------------------------------------

LAYOUTS = {  # BatchBuilder options, and the uniform draws per row (rows: enough for about 40,000 draws)
    "per_position": ({"negatives": "uniform", "num_negatives": 5}, 400),
    "shared": ({"negatives": "uniform", "num_negatives": 40, "shared_negatives": True}, 1000),
    "mixed": ({"negatives": "mixed", "num_negatives": 5, "num_in_batch": 2}, 400),
    "shared_mixed": ({"negatives": "mixed", "num_negatives": 40, "num_in_batch": 3, "shared_negatives": True}, 1000),
}


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_uniform_negatives_cover_exactly_the_items_they_should(layout: str, exclude_seen: bool) -> None:
    """Uniform draws (per position, shared by a sequence, and the uniform part of mixed draws) of a user who
    saw 20 of 60 items: over the 40 others when excluding, over all 60 when not (the seen ones at their
    uniform rate, 1/3 of the draws), with logq the reference proposal's. About 40,000 draws, chi-square at
    p < 0.001. Power: the same counts reject a sampler tilted by 20% (excluding: linearly from the lowest id
    to the highest; not excluding: the seen items drawn at 0.8 of the others' rate), which by simulation
    such a test rejects for 99.8% and 100% of seeds."""
    num_items = 60
    seen = np.random.default_rng(0).choice(np.arange(1, num_items + 1), size=20, replace=False).astype(np.int32)
    store = SequenceStore(np.array([0, seen.size], dtype=np.int64), seen, num_items)
    options, rows = LAYOUTS[layout]
    k = options["num_negatives"]
    batch = BatchBuilder(store, 19, exclude_seen=exclude_seen, **options).build(np.zeros(rows, dtype=np.int64),
                                                                                seed=3)
    real = batch["targets"] != 0  # (B, W)
    if options.get("shared_negatives"):
        assert batch["negatives"].shape == (rows, 1, k + options.get("num_in_batch", 0))
        negatives, logq = batch["negatives"][:, 0], batch["negatives_logq"][:, 0]  # (B, K)
    else:
        negatives, logq = batch["negatives"][real], batch["negatives_logq"][real]  # (T, K)
    draws = negatives[:, :k].ravel()
    assert draws.size >= 38_000
    observed = np.bincount(draws, minlength=num_items + 1).astype(float)
    allowed = np.ones(num_items + 1)
    allowed[0] = 0.0
    if exclude_seen:
        allowed[seen] = 0.0
    stat, df = chi2(observed, allowed)
    assert stat < chi2_critical(df), stat
    counts = np.asarray(store.item_counts())
    p = proposal_reference(options["negatives"], counts, seen, exclude_seen, num_negatives=k,
                           num_in_batch=options.get("num_in_batch", 0))
    np.testing.assert_allclose(logq, np.log(p[negatives]), rtol=1e-6)
    tilted = allowed * np.linspace(1.0, 1.2, num_items + 1) if exclude_seen else np.where(
        np.isin(np.arange(num_items + 1), seen), 0.8, 1.0) * allowed
    wrong, _ = chi2(observed, tilted)
    assert wrong > chi2_critical(df), wrong


# BERT4Rec's targets_logq ----------------------------------------------------------------------------------

BERT_RECIPES = {  # BatchBuilder options of each recipe that reports targets_logq
    # bert4rec_beauty.yaml's negatives: uniform, one set per sequence
    "uniform_shared": {"negatives": "uniform", "num_negatives": 16, "shared_negatives": True},
    "uniform_not_excluding": {"negatives": "uniform", "num_negatives": 4, "exclude_seen": False},
    "popularity": {"negatives": "popularity", "num_negatives": 4, "alpha": 0.5},
    "popularity_not_excluding": {"negatives": "popularity", "num_negatives": 4, "exclude_seen": False},
    "in_batch": {"negatives": "in_batch", "num_negatives": 4},
    "mixed": {"negatives": "mixed", "num_negatives": 3, "num_in_batch": 2},
    # sasrec_beauty.yaml's pool: uniform, joined by the batch's targets
    "pool_uniform_in_batch": {"negatives": "uniform", "pool_size": 20, "pool_in_batch": True},
    "pool_popularity": {"negatives": "popularity", "pool_size": 20, "alpha": 0.5},
}


@pytest.mark.parametrize("recipe", list(BERT_RECIPES))
def test_bert4rec_targets_logq_is_the_log_probability_of_each_masked_target(data, store, recipe: str) -> None:
    """Cloze batches over random windows: at every masked position targets_logq is the log of the proposal's
    probability of the target (the reference proposal of the row's user; with a pool, the log-probability that
    the target is in the batch's pool), exactly up to float32 (rtol 1e-5); unmasked positions and padding
    carry 0."""
    options = BERT_RECIPES[recipe]
    rng = np.random.default_rng(4)
    users = rng.choice(data.num_users, size=64, replace=False).astype(np.int64)
    ends = np.array([rng.integers(1, data.lengths[u] + 1) for u in users], dtype=np.int64)
    batch = BatchBuilder(store, 12, task="bert4rec", mask_prob=0.4, **options).build(users, ends, seed=2)
    targets, logq = batch["targets"], batch["targets_logq"]  # (B, W)
    masked = targets != 0
    assert masked.sum(1).min() >= 1 and (batch["inputs"][masked] == data.num_items + 1).all()
    assert (logq[~masked] == 0).all(), "unmasked positions and padding carry no log-probability"
    counts = np.asarray(store.item_counts())
    if "pool_size" in options:
        ref = pool_reference(batch["pool"], targets, counts, options["pool_size"], data.num_items,
                             sampling=options["negatives"], in_batch=options.get("pool_in_batch", False),
                             alpha=options.get("alpha", 1.0))
        expected = ref["targets_logq"]
    else:
        expected = np.zeros(targets.shape)
        for row, u in enumerate(users.tolist()):
            p = proposal_reference(options["negatives"], counts, data.sequence(u), options.get("exclude_seen", True),
                                   alpha=options.get("alpha", 1.0), num_negatives=options["num_negatives"],
                                   num_in_batch=options.get("num_in_batch", 0))
            expected[row, masked[row]] = np.log(p[targets[row, masked[row]]])
    assert np.isfinite(logq).all()
    np.testing.assert_allclose(logq[masked], expected[masked], rtol=1e-5)
