"""Catalogue-scale training: the batch-wide pool, the chunked softmax, row-sparse tables and LazyAdam."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from seqrec._core import BatchBuilder
from seqrec.data.reference import pool_reference
from seqrec.train.losses import chunked_cross_entropy, full_cross_entropy, pool_softmax
from seqrec.train.module import SeqRecModule
from seqrec.train.optim import LazyAdam
from stats import chi2, chi2_critical

# training_step is called here without a Trainer, where self.log only warns that there is none to log to.
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`:UserWarning")



def histories(data, users):
    return [data.items[data.offsets[u] : data.offsets[u + 1]] for u in users]


# the engine's pool against its reference ------------------------------------------------------------------


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
@pytest.mark.parametrize("in_batch", [False, True])
def test_pool_matches_reference(data, store, sampling: str, in_batch: bool) -> None:
    users = np.arange(40, dtype=np.int64)
    builder = BatchBuilder(store, 12, negatives=sampling, pool_size=25, pool_in_batch=in_batch,
                           pool_mask_history=True, alpha=0.5)
    assert builder.pool_size == 25 and builder.num_negatives == 0
    b = builder.build(users, seed=5)
    pool = b["pool"]
    assert "negatives" not in b
    assert np.all(np.diff(pool) > 0) and pool.min() >= 1 and pool.max() <= data.num_items
    if sampling == "uniform":
        assert pool.size >= 25  # 25 distinct draws, plus targets
    targets = b["targets"]
    if in_batch:
        assert np.isin(targets[targets != 0], pool).all()
    counts = np.bincount(data.items, minlength=data.num_items + 1)
    ref = pool_reference(pool, targets, counts, 25, data.num_items, sampling, in_batch, 0.5,
                         histories(data, users))
    np.testing.assert_allclose(b["pool_logq"], ref["pool_logq"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b["targets_logq"], ref["targets_logq"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(b["targets_pool"], ref["targets_pool"])
    np.testing.assert_array_equal(b["pool_hit_rows"], ref["pool_hit_rows"])
    np.testing.assert_array_equal(b["pool_hit_cols"], ref["pool_hit_cols"])
    # The same seed gives the same pool; another seed another one.
    again = builder.build(users, seed=5)
    np.testing.assert_array_equal(again["pool"], pool)
    assert not np.array_equal(builder.build(users, seed=6)["pool"], pool)


def test_uniform_pool_inclusion_is_size_over_catalogue(data, store) -> None:
    """Each item is in a uniform pool with probability K/N: chi-square over 2,000 batches (p = 0.001)."""
    builder = BatchBuilder(store, 12, negatives="uniform", pool_size=30)
    users = np.arange(8, dtype=np.int64)
    hits = np.zeros(data.num_items + 1)
    for seed in range(2000):
        b = builder.build(users, seed=seed)
        assert b["pool"].size == 30
        hits[b["pool"]] += 1
    expected = np.r_[0.0, np.ones(data.num_items)]
    stat, df = chi2(hits, expected)
    assert stat < chi2_critical(df), stat
    assert hits.sum() == 30 * 2000


def test_popularity_pool_inclusion_follows_counts(data, store) -> None:
    """P(item in pool) = 1 - (1 - p)^K for p ∝ count ** alpha; binomial z-scores within 4.5 (2,000 batches)."""
    builder = BatchBuilder(store, 12, negatives="popularity", pool_size=20, alpha=1.0)
    users = np.arange(8, dtype=np.int64)
    n = 2000
    hits = np.zeros(data.num_items + 1)
    for seed in range(n):
        hits[builder.build(users, seed=seed)["pool"]] += 1
    counts = np.bincount(data.items, minlength=data.num_items + 1).astype(float)
    p = counts / counts.sum()
    incl = 1 - (1 - p) ** 20
    keep = (incl > 0.02) & (incl < 0.98)
    z = (hits[keep] - n * incl[keep]) / np.sqrt(n * incl[keep] * (1 - incl[keep]))
    assert np.abs(z).max() < 4.5, z
    assert hits[counts == 0].sum() == 0


def test_full_uniform_pool_holds_the_catalogue_with_logq_zero(data, store) -> None:
    b = BatchBuilder(store, 12, negatives="uniform", pool_size=data.num_items).build(np.arange(5, dtype=np.int64))
    np.testing.assert_array_equal(b["pool"], np.arange(1, data.num_items + 1))
    assert np.all(b["pool_logq"] == 0) and np.all(b["targets_logq"] == 0)


POOL_DETERMINISM = """
import json, numpy as np
from seqrec._core import BatchBuilder, SequenceStore
from seqrec.data.synthetic import make_synthetic
d = make_synthetic(num_users=3000, num_items=5000, mean_length=30.0, seed=4)
s = SequenceStore(d.offsets, d.items, d.num_items)
b = BatchBuilder(s, 50, negatives="popularity", pool_size=2048, pool_in_batch=True, pool_mask_history=True)
out = b.build(np.arange(3000, dtype=np.int64), seed=9)
print(json.dumps({k: np.asarray(v).tolist() for k, v in out.items() if k.startswith("pool")}))
"""


def test_same_pool_with_one_and_sixteen_threads() -> None:
    runs = []
    for threads in ("1", "16"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        res = subprocess.run([sys.executable, "-c", POOL_DETERMINISM], env=env, capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(res.stdout))
    assert runs[0] == runs[1]
    assert len(runs[0]["pool"]) > 2048


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"negatives": "in_batch", "pool_size": 10}, "'uniform' or 'popularity'"),
    ({"negatives": "uniform", "pool_size": -1}, "pool_size"),
])
def test_pool_rejects_bad_options(store, kwargs, pattern) -> None:
    with pytest.raises(ValueError, match=pattern):
        BatchBuilder(store, 12, **kwargs)


# the pool loss ------------------------------------------------------------------------------------------


def tiny_module(num_items: int, **kwargs) -> SeqRecModule:
    torch.manual_seed(0)
    return SeqRecModule(num_items=num_items, max_len=12, hidden_size=16, dropout=0.0, **kwargs)


def test_pool_of_the_whole_catalogue_is_full_cross_entropy(data, store) -> None:
    """K = N uniform: the pool softmax (accidental hits masked) equals full CE in value and gradient."""
    b = BatchBuilder(store, 12, negatives="uniform", pool_size=data.num_items).build(np.arange(30, dtype=np.int64))
    batch = {k: torch.from_numpy(np.asarray(v)) for k, v in b.items()}
    losses, grads = [], []
    for loss in ("sampled_softmax", "ce"):
        module = tiny_module(data.num_items, loss=loss)
        feed = dict(batch) if loss == "sampled_softmax" else {k: v for k, v in batch.items() if "pool" not in k}
        value = module.training_step(feed, 0)
        value.backward()
        losses.append(value.detach())
        grads.append(module.model.encoder.item_emb.weight.grad.clone())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_pool_softmax_drops_accidental_hits_and_masked_items() -> None:
    torch.manual_seed(1)
    pos = torch.randn(3, dtype=torch.float64)
    pool_logits = torch.randn(3, 5, dtype=torch.float64)
    pool_logq = torch.log(torch.full((5,), 0.5, dtype=torch.float64))
    target_index = torch.tensor([2, -1, 0])
    masked = torch.zeros(3, 5, dtype=torch.bool)
    masked[1, 4] = True
    got = pool_softmax(pos, pool_logits, torch.zeros(3, dtype=torch.float64), pool_logq, target_index, masked,
                       reduction="none")
    expected = []
    for t in range(3):
        keep = [j for j in range(5) if j != target_index[t] and not masked[t, j]]
        logits = torch.cat([pos[t : t + 1], pool_logits[t, keep] - pool_logq[keep]])
        expected.append(torch.logsumexp(logits, 0) - pos[t])
    torch.testing.assert_close(got, torch.stack(expected))


def test_history_hits_name_each_rows_history_items_and_change_the_loss(data, store) -> None:
    """With pool_mask_history the batch names every (row, pool item) of the row's history, and the loss masks
    them (it differs from the loss of the same batch without the hits)."""
    users = np.arange(20, dtype=np.int64)
    b = BatchBuilder(store, 12, negatives="uniform", pool_size=60, pool_mask_history=True).build(users, seed=2)
    batch = {k: torch.from_numpy(np.asarray(v)) for k, v in b.items()}
    module = tiny_module(data.num_items, loss="sampled_softmax")
    masked = module.training_step(batch, 0)
    unmasked = module.training_step({**batch, "pool_hit_rows": batch["pool_hit_rows"][:0],
                                     "pool_hit_cols": batch["pool_hit_cols"][:0]}, 0)
    assert masked < unmasked  # fewer negatives in every softmax: a smaller loss
    pool = b["pool"]
    rows = set(zip(b["pool_hit_rows"].tolist(), b["pool_hit_cols"].tolist()))
    for row, seq in enumerate(histories(data, users)):
        expected = {(row, int(np.searchsorted(pool, x))) for x in np.unique(seq) if x in set(pool.tolist())}
        assert {(r, c) for r, c in rows if r == row} == expected


# the chunked softmax ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_cross_entropy_equals_cross_entropy(dtype, tol: float, chunk: int) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(37, 8, dtype=dtype, requires_grad=True)
    table = torch.randn(101, 8, dtype=dtype, requires_grad=True)
    targets = torch.randint(1, 101, (37,))
    ref = F.cross_entropy(torch.cat([torch.full((37, 1), float("-inf"), dtype=dtype), (hidden @ table.T)[:, 1:]], 1),
                          targets, reduction="sum")
    ref_grads = torch.autograd.grad(ref, [hidden, table])
    got = chunked_cross_entropy(hidden, table, targets, chunk=chunk, reduction="sum")
    grads = torch.autograd.grad(got, [hidden, table])
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=tol * 10, atol=tol * 10)
    assert grads[1][0].abs().max() == 0  # padding row 0 never gets gradient
    # and the same value as the project's own full CE
    torch.testing.assert_close(got.detach(), full_cross_entropy(hidden @ table.T, targets, "sum").detach(),
                               rtol=tol, atol=tol)


def test_module_uses_the_chunked_softmax_above_ce_chunk(data, store) -> None:
    b = BatchBuilder(store, 12, negatives="none").build(np.arange(30, dtype=np.int64))
    batch = {k: torch.from_numpy(np.asarray(v)) for k, v in b.items()}
    values = [tiny_module(data.num_items, loss="ce", ce_chunk=c).training_step(batch, 0) for c in (1000, 16)]
    torch.testing.assert_close(values[0], values[1], rtol=1e-5, atol=1e-6)


# row-sparse tables and LazyAdam ---------------------------------------------------------------------------


@pytest.mark.parametrize(("wd", "decoupled", "reference"), [
    (0.0, False, torch.optim.Adam), (0.1, False, torch.optim.Adam), (0.1, True, torch.optim.AdamW),
])
def test_lazy_adam_equals_adam_on_dense_gradients(wd: float, decoupled: bool, reference) -> None:
    torch.manual_seed(0)
    a = torch.randn(6, 4, requires_grad=True)
    b = a.detach().clone().requires_grad_()
    ours, theirs = LazyAdam([b], lr=1e-2, betas=(0.9, 0.98), weight_decay=wd, decoupled=decoupled), \
        reference([a], lr=1e-2, betas=(0.9, 0.98), weight_decay=wd)
    for _ in range(6):
        g = torch.randn(6, 4)
        a.grad, b.grad = g.clone(), g.clone()
        theirs.step()
        ours.step()
    torch.testing.assert_close(b, a, rtol=0, atol=1e-7)


def test_sparse_step_leaves_untouched_rows_bit_identical_and_matches_dense_adam_on_touched_ones() -> None:
    torch.manual_seed(0)
    sparse = torch.nn.Embedding(50, 4, sparse=True)
    dense = torch.nn.Embedding(50, 4)
    dense.weight.data.copy_(sparse.weight.data)
    before = sparse.weight.detach().clone()
    opt_s = LazyAdam(sparse.parameters(), lr=1e-2, weight_decay=0.01, decoupled=True)
    opt_d = torch.optim.AdamW(dense.parameters(), lr=1e-2, weight_decay=0.01)
    ids = torch.tensor([3, 7, 7, 11])
    for emb, opt in ((sparse, opt_s), (dense, opt_d)):
        (emb(ids) ** 2).sum().backward()
        opt.step()
    assert sparse.weight.grad.is_sparse
    touched = torch.zeros(50, dtype=torch.bool)
    touched[ids] = True
    assert torch.equal(sparse.weight[~touched], before[~touched])  # bit-identical
    torch.testing.assert_close(sparse.weight[touched], dense.weight[touched])
    assert not torch.equal(dense.weight[~touched], before[~touched])  # dense AdamW decays every row


def test_tied_sparse_table_gets_input_and_output_gradients(data, store) -> None:
    """The tied table's sparse gradient holds both sides: rows used only as inputs and only as pool items."""
    b = BatchBuilder(store, 12, negatives="uniform", pool_size=40).build(np.arange(20, dtype=np.int64), seed=1)
    batch = {k: torch.from_numpy(np.asarray(v)) for k, v in b.items()}
    sparse = tiny_module(data.num_items, loss="sampled_softmax", sparse_embeddings=True)
    dense = tiny_module(data.num_items, loss="sampled_softmax")
    for m in (sparse, dense):
        m.training_step(batch, 0).backward()
    grad = sparse.model.encoder.item_emb.weight.grad
    assert grad.is_sparse
    torch.testing.assert_close(grad.to_dense(), dense.model.encoder.item_emb.weight.grad, rtol=1e-5, atol=1e-7)
    inputs = set(b["inputs"][b["inputs"] != 0].tolist())
    outputs = set(b["pool"].tolist()) | set(b["targets"][b["targets"] != 0].tolist())
    only_out = sorted(outputs - inputs)
    only_in = sorted(inputs - outputs)
    assert only_out and only_in
    rows = grad.coalesce().indices()[0].tolist()
    assert set(only_out) <= set(rows) and set(only_in) <= set(rows)
    # An optimiser step moves only the rows the batch touched.
    before = sparse.model.encoder.item_emb.weight.detach().clone()
    opt = sparse.configure_optimizers()
    assert isinstance(opt, LazyAdam)
    opt.step()
    moved = (sparse.model.encoder.item_emb.weight != before).any(1).nonzero().squeeze(1).tolist()
    assert set(moved) <= set(rows) and set(moved)


def test_sparse_embeddings_are_refused_with_full_softmax() -> None:
    with pytest.raises(ValueError, match="sparse_embeddings"):
        SeqRecModule(num_items=10, loss="ce", sparse_embeddings=True)


def test_data_module_rejects_a_pool_with_per_position_modes() -> None:
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec

    with pytest.raises(ValueError, match="negative_pool"):
        SeqRecDataModule(synthetic=SyntheticSpec(num_users=50, num_items=40), negative_pool=8, negatives="mixed")


def test_a_uniform_pool_larger_than_the_catalogue_is_the_catalogue() -> None:
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec

    dm = SeqRecDataModule(synthetic=SyntheticSpec(num_users=50, num_items=40, mean_length=8.0), negative_pool=4096)
    assert dm.batch_builder().pool_size == dm.num_items
