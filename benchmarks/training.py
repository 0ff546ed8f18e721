"""End-to-end SASRec training throughput: the original SASRec data pipeline vs seqrec's engine, decomposed.

``original``: every batch padded to max_len, built by the per-sample Python loop of the SASRec authors'
sampler (random users, one rejection-sampled negative per position) in DataLoader worker processes, as
their WarpSampler does. ``seqrec``: the Rust engine, length-aware batches padded to their longest
sequence, built ahead on a background thread in the main process. Same model, loss (BCE, 1 negative),
optimiser and number of sequences per epoch. Reports non-padding tokens/s, steps/s, the share of wall
time spent waiting for batches, and validation NDCG@10 (full ranking) after the same number of epochs.

The two differ in two ways at once, the sampler and the padding (87% of the original's positions are
padding), so two control arms in the same run separate them: ``seqrec_fixed``, the engine padding every
batch to max_len (``length_bucketing=False``: no buckets, ``batch_size`` sequences), and
``original_bucketed``, the original Python sampler whose users are grouped by length (groups of 64
batches sorted by length, as the engine's buckets) and whose batches are cut to their longest row. Each
epoch runs every arm in turn, so drift of the machine falls on all of them alike.

    python -m benchmarks.training                          # Games-shaped synthetic data, 3 epochs each
    python -m benchmarks.training --users 3000 --items 2000 --epochs 1   # quick
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from seqrec.data.datamodule import SeqRecDataModule
from seqrec.data.source import SyntheticSpec
from seqrec.evaluate.ranking import evaluate
from seqrec.models.sasrec import SASRec, SASRecConfig
from seqrec.train.losses import bce_sampled
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from benchmarks.baselines import python_loop_batch
from benchmarks.common import RESULTS, write

# The arms of one run, and what each changes against the original pipeline.
SETUPS = {
    "original": "Python sampler, padded to max_len",
    "original_bucketed": "Python sampler, length-grouped batches cut to their longest row",
    "seqrec_fixed": "engine, padded to max_len (length_bucketing=False)",
    "seqrec": "engine, length-aware batches under a token budget",
}
BUCKET_BATCHES = 64  # batches per length-sorted group: the engine's default


class OriginalSampler(IterableDataset):
    """SASRec's sampler: each batch draws random users (with replacement) and builds them one by one.

    With ``bucket``, the control arm ``original_bucketed``: each worker draws the users of ``BUCKET_BATCHES``
    batches at once, sorts them by length, cuts them into batches, builds each as before and drops the
    columns no row fills; the group's batches come out in random order.
    """

    def __init__(self, offsets, items, num_items, users, batch_size, max_len, steps, seed, bucket=False):
        self.args = (offsets, items, num_items)
        self.users, self.batch_size, self.max_len, self.steps, self.seed = users, batch_size, max_len, steps, seed
        self.bucket = bucket

    def _batch(self, users, rng):
        inputs, positives, negatives = python_loop_batch(*self.args, users, self.max_len, rng)
        if self.bucket:
            width = max(int((inputs != 0).sum(1).max()), 1)
            inputs, positives, negatives = inputs[:, -width:], positives[:, -width:], negatives[:, -width:]
        return {"inputs": torch.from_numpy(np.ascontiguousarray(inputs)),
                "targets": torch.from_numpy(np.ascontiguousarray(positives)),
                "negatives": torch.from_numpy(np.ascontiguousarray(negatives))}

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.RandomState(self.seed + wid)
        if not self.bucket:
            for _ in range(wid, self.steps, nw):
                yield self._batch(rng.choice(self.users, size=self.batch_size), rng)
            return
        offsets = self.args[0]
        for first in range(wid * BUCKET_BATCHES, self.steps, nw * BUCKET_BATCHES):
            n = min(BUCKET_BATCHES, self.steps - first)
            users = rng.choice(self.users, size=n * self.batch_size)
            users = users[np.argsort(-(offsets[users + 1] - offsets[users]), kind="stable")]
            for b in rng.permutation(n):
                yield self._batch(users[b * self.batch_size : (b + 1) * self.batch_size], rng)


class Meter:
    """Wait and step times of one arm over its epochs (the first 3 steps of its first epoch are warm-up)."""

    def __init__(self) -> None:
        self.wait = self.busy = 0.0
        self.tokens = self.positions = self.steps = 0

    def figures(self) -> dict[str, float]:
        total = self.wait + self.busy
        if self.steps <= 3 or total <= 0:
            raise ValueError(f"only {self.steps} steps: too few to time (the first 3 are warm-up); use more users "
                             "or epochs")
        return {"tokens_per_s": self.tokens / total, "steps_per_s": (self.steps - 3) / total,
                "data_wait_fraction": self.wait / total, "padding_fraction": 1 - self.tokens / self.positions,
                "seconds": total}


def train_epoch(model, optimizer, loader, meter: Meter) -> None:
    """Trains one epoch, timing the wait for each batch apart from the step itself."""
    model.train()
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        t1 = time.perf_counter()
        if batch is None:
            break
        h = model(batch["inputs"])
        mask = batch["targets"] != 0
        pos, neg = model.score_items(h, batch["targets"]), model.score_items(h, batch["negatives"])
        if "loss_scale" in batch:  # seqrec: sum times a constant, as SeqRecModule trains
            loss = bce_sampled(pos, neg, mask, reduction="sum") * batch["loss_scale"]
        else:  # the original: mean over the batch's positions
            loss = bce_sampled(pos, neg, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        t2 = time.perf_counter()
        if meter.steps >= 3:
            meter.wait += t1 - t0
            meter.busy += t2 - t1
            meter.tokens += int((batch["inputs"] != 0).sum())
            meter.positions += batch["inputs"].numel()
        meter.steps += 1


def train_epochs(model, optimizer, loaders, epochs: int) -> dict[str, float]:
    """Trains ``epochs`` epochs of ``loaders(epoch)`` and returns the timing figures (see ``Meter``)."""
    meter = Meter()
    for epoch in range(epochs):
        train_epoch(model, optimizer, loaders(epoch), meter)
    return meter.figures()


def run(args: argparse.Namespace) -> dict:
    spec = SyntheticSpec(num_users=args.users, num_items=args.items, num_clusters=args.clusters,
                         mean_length=args.mean_length, seed=0)
    dm = SeqRecDataModule(synthetic=spec, max_len=args.max_len, batch_size=args.batch_size, seed=0)
    fixed = None
    if "seqrec_fixed" in args.setups:  # the same split, batches padded to max_len
        fixed = SeqRecDataModule(synthetic=spec, max_len=args.max_len, batch_size=args.batch_size, seed=0,
                                 length_bucketing=False)
    split = dm.split
    train_users = np.flatnonzero(np.diff(split.train_offsets) >= 2)
    steps = -(-train_users.size // args.batch_size)
    arms = {}
    for setup in args.setups:
        torch.manual_seed(0)
        model = SASRec(SASRecConfig(num_items=dm.num_items, max_len=args.max_len, hidden_size=args.hidden,
                                    num_blocks=2, num_heads=1, dropout=args.dropout))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
        if setup.startswith("original"):
            def loaders(epoch, bucket=setup == "original_bucketed"):
                ds = OriginalSampler(split.train_offsets, split.train_items, dm.num_items, train_users,
                                     args.batch_size, args.max_len, steps, seed=epoch * 1000, bucket=bucket)
                return DataLoader(ds, batch_size=None, num_workers=args.workers, persistent_workers=False)
        else:
            def loaders(epoch, module=fixed if setup == "seqrec_fixed" else dm):
                module._epoch = lambda: epoch  # type: ignore[method-assign]
                return module.train_dataloader()
        arms[setup] = (model, opt, loaders, Meter())
    for epoch in range(args.epochs):  # every arm in turn, each epoch: drift falls on all alike
        for model, opt, loaders, meter in arms.values():
            train_epoch(model, opt, loaders(epoch), meter)
    results = {}
    for setup, (model, _, _, meter) in arms.items():
        figures = meter.figures()
        figures["val"] = evaluate(model, dm.eval_batches("val"), [10])
        results[setup] = figures
        print(setup, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}, flush=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out = {"config": config, "data": dm.stats(), "setups": results}
    if {"original", "seqrec"} <= results.keys():
        out["speedup_tokens_per_s"] = results["seqrec"]["tokens_per_s"] / results["original"]["tokens_per_s"]
        out["speedup_steps_per_s"] = results["seqrec"]["steps_per_s"] / results["original"]["steps_per_s"]
    out["decomposition"] = decompose(results)
    return out


# (name, faster arm, slower arm, what differs): each a ratio of non-padding tokens/s in the same run.
FACTORS = [
    ("sampler_at_fixed_padding", "seqrec_fixed", "original", "the sampler, every batch padded to max_len"),
    ("sampler_at_length_aware_batches", "seqrec", "original_bucketed", "the sampler, length-aware batches"),
    ("batching_with_engine", "seqrec", "seqrec_fixed", "length-aware batching, the engine's sampler"),
    ("batching_with_python_sampler", "original_bucketed", "original", "length-aware batching, the Python sampler"),
]


def decompose(results: dict) -> dict[str, float]:
    """The speed-up of seqrec over the original split into the sampler's and the batching's factors.

    Two routes multiply to the whole: ``sampler_at_fixed_padding x batching_with_engine`` and
    ``batching_with_python_sampler x sampler_at_length_aware_batches``. ``*_share`` is each factor's share
    of the whole on a log scale (the two of a route sum to 1).
    """
    out: dict[str, float] = {}
    for name, fast, slow, _ in FACTORS:
        if {fast, slow} <= results.keys():
            out[name] = results[fast]["tokens_per_s"] / results[slow]["tokens_per_s"]
    if {"original", "seqrec"} <= results.keys():
        total = results["seqrec"]["tokens_per_s"] / results["original"]["tokens_per_s"]
        if total > 0 and abs(math.log(total)) > 1e-9:
            for name in list(out):
                out[f"{name}_share"] = math.log(out[name]) / math.log(total)
    return out


def table(out: dict) -> str:
    c = out["config"]
    lines = [
        "# End-to-end SASRec training throughput",
        "",
        f"Synthetic data shaped like Amazon Games: {out['data']['users']:,} users, {out['data']['items']:,} items, "
        f"mean length {out['data']['mean_length']:.1f}; SASRec hidden {c['hidden']}, 2 blocks, max_len {c['max_len']}, "
        f"batch {c['batch_size']}, BCE with 1 negative; {c['epochs']} epoch(s) each, the arms in turn within each "
        f"epoch; torch threads {torch.get_num_threads()}. Validation NDCG@10 by full ranking, seen items excluded.",
        "",
        "| pipeline | sampler and batches | tokens/s | steps/s | data wait | padding | val NDCG@10 | val HR@10 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in out["setups"].items():
        lines.append(f"| {name} | {SETUPS[name]} | {r['tokens_per_s']:,.0f} | {r['steps_per_s']:.1f} | "
                     f"{r['data_wait_fraction']:.1%} | {r['padding_fraction']:.0%} | {r['val']['ndcg@10']:.4f} | "
                     f"{r['val']['hr@10']:.4f} |")
    if "speedup_tokens_per_s" in out:
        lines += ["", f"seqrec trains **{out['speedup_tokens_per_s']:.1f}x** the non-padding tokens per second of the "
                      f"original pipeline ({out['speedup_steps_per_s']:.1f}x the steps per second)."]
    d = out.get("decomposition", {})
    if any(name in d for name, *_ in FACTORS):
        lines += ["", "Where the speed-up comes from (ratios of tokens/s in this run; share: of the whole speed-up, "
                      "on a log scale):", "",
                  "| factor | faster arm / slower arm | what differs | speed-up | share |", "|---|---|---|---:|---:|"]
        for name, fast, slow, what in FACTORS:
            if name in d:
                share = f"{d[name + '_share']:.0%}" if name + "_share" in d else "–"
                lines.append(f"| {name} | {fast} / {slow} | {what} | {d[name]:.2f}x | {share} |")
        lines += ["", "The engine's length-aware batches also fill a token budget (more sequences when they are "
                      "short); the bucketed original keeps its batch size."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=31013)
    p.add_argument("--items", type=int, default=23715)
    p.add_argument("--clusters", type=int, default=200)
    p.add_argument("--mean-length", type=float, default=9.26)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--hidden", type=int, default=50)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="worker processes of the original sampler")
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown results")
    p.add_argument("--name", default="training")
    args = p.parse_args(argv)
    out = run(args)
    text = table(out)
    write(args.name, out, text, args.out)
    print(text)
    return out


if __name__ == "__main__":
    main()
