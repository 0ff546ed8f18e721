"""End-to-end SASRec training throughput: the original SASRec data pipeline vs seqrec's engine.

``original``: every batch padded to max_len, built by the per-sample Python loop of the SASRec authors'
sampler (random users, one rejection-sampled negative per position) in DataLoader worker processes, as
their WarpSampler does. ``seqrec``: the Rust engine, length-aware batches padded to their longest
sequence, built ahead on a background thread in the main process. Same model, loss (BCE, 1 negative),
optimiser and number of sequences per epoch. Reports non-padding tokens/s, steps/s, the share of wall
time spent waiting for batches, and validation NDCG@10 (full ranking) after the same number of epochs.

    python -m benchmarks.training                          # Games-shaped synthetic data, 3 epochs each
    python -m benchmarks.training --users 3000 --items 2000 --epochs 1   # quick
"""

from __future__ import annotations

import argparse
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


class OriginalSampler(IterableDataset):
    """SASRec's sampler: each batch draws random users (with replacement) and builds them one by one."""

    def __init__(self, offsets, items, num_items, users, batch_size, max_len, steps, seed):
        self.args = (offsets, items, num_items)
        self.users, self.batch_size, self.max_len, self.steps, self.seed = users, batch_size, max_len, steps, seed

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.RandomState(self.seed + wid)
        for _ in range(wid, self.steps, nw):
            users = rng.choice(self.users, size=self.batch_size)
            inputs, positives, negatives = python_loop_batch(*self.args, users, self.max_len, rng)
            yield {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(positives),
                   "negatives": torch.from_numpy(negatives)}


def train_epochs(model, optimizer, loaders, epochs: int) -> dict[str, float]:
    """Trains, timing the wait for each batch apart from the step itself (first 3 steps are warm-up)."""
    wait = busy = 0.0
    tokens = positions = steps = 0
    model.train()
    for epoch in range(epochs):
        it = iter(loaders(epoch))
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
            if epoch > 0 or steps >= 3:
                wait += t1 - t0
                busy += t2 - t1
                tokens += int((batch["inputs"] != 0).sum())
                positions += batch["inputs"].numel()
            steps += 1
    total = wait + busy
    if steps <= 3 or total <= 0:
        raise ValueError(f"only {steps} steps: too few to time (the first 3 are warm-up); use more users or epochs")
    return {"tokens_per_s": tokens / total, "steps_per_s": (steps - 3) / total, "data_wait_fraction": wait / total,
            "padding_fraction": 1 - tokens / positions, "seconds": total}


def run(args: argparse.Namespace) -> dict:
    spec = SyntheticSpec(num_users=args.users, num_items=args.items, num_clusters=args.clusters,
                         mean_length=args.mean_length, seed=0)
    dm = SeqRecDataModule(synthetic=spec, max_len=args.max_len, batch_size=args.batch_size, seed=0)
    split = dm.split
    train_users = np.flatnonzero(np.diff(split.train_offsets) >= 2)
    steps = -(-train_users.size // args.batch_size)
    results = {}
    for setup in args.setups:
        torch.manual_seed(0)
        model = SASRec(SASRecConfig(num_items=dm.num_items, max_len=args.max_len, hidden_size=args.hidden,
                                    num_blocks=2, num_heads=1, dropout=args.dropout))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
        if setup == "original":
            def loaders(epoch, model=model):
                ds = OriginalSampler(split.train_offsets, split.train_items, dm.num_items, train_users,
                                     args.batch_size, args.max_len, steps, seed=epoch * 1000)
                return DataLoader(ds, batch_size=None, num_workers=args.workers, persistent_workers=False)
        else:
            def loaders(epoch):
                dm._epoch = lambda: epoch  # type: ignore[method-assign]
                return dm.train_dataloader()
        figures = train_epochs(model, opt, loaders, args.epochs)
        figures["val"] = evaluate(model, dm.eval_batches("val"), [10])
        results[setup] = figures
        print(setup, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}, flush=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out = {"config": config, "data": dm.stats(), "setups": results}
    if {"original", "seqrec"} <= results.keys():
        out["speedup_tokens_per_s"] = results["seqrec"]["tokens_per_s"] / results["original"]["tokens_per_s"]
        out["speedup_steps_per_s"] = results["seqrec"]["steps_per_s"] / results["original"]["steps_per_s"]
    return out


def table(out: dict) -> str:
    c = out["config"]
    lines = [
        "# End-to-end SASRec training throughput",
        "",
        f"Synthetic data shaped like Amazon Games: {out['data']['users']:,} users, {out['data']['items']:,} items, "
        f"mean length {out['data']['mean_length']:.1f}; SASRec hidden {c['hidden']}, 2 blocks, max_len {c['max_len']}, "
        f"batch {c['batch_size']}, BCE with 1 negative; {c['epochs']} epoch(s) each; torch threads "
        f"{torch.get_num_threads()}. Validation NDCG@10 by full ranking, seen items excluded.",
        "",
        "| pipeline | tokens/s | steps/s | data wait | padding | val NDCG@10 | val HR@10 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in out["setups"].items():
        lines.append(f"| {name} | {r['tokens_per_s']:,.0f} | {r['steps_per_s']:.1f} | {r['data_wait_fraction']:.1%} | "
                     f"{r['padding_fraction']:.0%} | {r['val']['ndcg@10']:.4f} | {r['val']['hr@10']:.4f} |")
    if "speedup_tokens_per_s" in out:
        lines += ["", f"seqrec trains **{out['speedup_tokens_per_s']:.1f}x** the non-padding tokens per second of the "
                      f"original pipeline ({out['speedup_steps_per_s']:.1f}x the steps per second)."]
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
    p.add_argument("--setups", nargs="+", default=["original", "seqrec"], choices=["original", "seqrec"])
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
