"""A million-item catalogue on one CPU machine: memory and throughput of training and full-ranking evaluation.

Synthetic data (random walks on an item-successor graph, built vectorised so that 10 million interactions
take seconds), SASRec trained with a sampled softmax by two recipes (per-sequence negatives with dense Adam;
the batch-wide pool with row-sparse updates), each catalogue size in a process of its own, and evaluation by
full ranking in item chunks. Reports tokens/s (medians over interleaved repeats), the ratio to the smallest
catalogue in the same run, users/s and the peak resident memory.

    python -m benchmarks.large_catalogue                                   # 20k vs 1M items, 10M interactions
    python -m benchmarks.large_catalogue --catalogues 10000000 --recipes pool_sparse --repeats 1 --name large_catalogue_10m
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from seqrec.data.interactions import Interactions

from benchmarks.common import RESULTS, write


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def random_walks(num_users: int, num_items: int, mean_length: float, seed: int = 0) -> Interactions:
    """Each user walks the successor graph (4 preferred next items per item, 80% of steps) from a
    Zipf-popular start; lengths are 5 plus a geometric draw. Vectorised over users, one step at a time."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(1, num_items + 1, size=(num_items + 1, 4))
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.9
    cdf = np.cumsum(popularity) / popularity.sum()
    lengths = 5 + rng.geometric(1.0 / max(mean_length - 4, 1.0), size=num_users) - 1
    lengths = np.minimum(lengths, 200)
    width = int(lengths.max())
    seqs = np.zeros((num_users, width), dtype=np.int64)
    current = np.searchsorted(cdf, rng.random(num_users)) + 1
    seqs[:, 0] = current
    for t in range(1, width):
        follow = rng.random(num_users) < 0.8
        nxt = np.where(follow, successors[current, rng.integers(0, 4, size=num_users)],
                       np.searchsorted(cdf, rng.random(num_users)) + 1)
        seqs[:, t] = current = np.minimum(nxt, num_items)
    keep = np.arange(width)[None, :] < lengths[:, None]
    users = np.repeat(np.arange(num_users), lengths)
    return Interactions.from_arrays(users, seqs[keep], source=f"random walks ({num_users} users, {num_items} items)")


RECIPES = {
    # What the project trained with before the pool: 512 uniform negatives per sequence, dense Adam.
    "shared_dense": dict(data=dict(negatives="uniform", num_negatives=512, shared_negatives=True),
                         model=dict(sparse_embeddings=False)),
    # The catalogue-scale path: one batch-wide pool joined by the batch's targets, row-sparse updates.
    "pool_sparse": dict(data=dict(negatives="uniform", negative_pool=8192, pool_in_batch=True),
                        model=dict(sparse_embeddings=True)),
    # The same with the 2,048-item pool that the S3 Beauty config trains with.
    "pool_sparse_2k": dict(data=dict(negatives="uniform", negative_pool=2048, pool_in_batch=True),
                           model=dict(sparse_embeddings=True)),
}


def one_catalogue(args: argparse.Namespace) -> dict:
    """Trains each recipe ``repeats`` times (interleaved) on one generated catalogue, then evaluates once."""
    import pytorch_lightning as pl
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.train.callbacks import ThroughputMonitor
    from seqrec.train.module import SeqRecModule

    start = time.perf_counter()
    data = random_walks(args.users, args.items, args.mean_length)
    gen_seconds = time.perf_counter() - start
    mem = {"after_data": peak_rss_gib()}

    class Prebuilt(SeqRecDataModule):
        def _load(self) -> Interactions:  # the walks above instead of a file
            return data

    runs: dict[str, list[dict]] = {r: [] for r in args.recipes}
    model = dm = trainer = None
    for _ in range(args.repeats):
        for recipe in args.recipes:
            spec = RECIPES[recipe]
            data_args = dict(spec["data"])
            if "negative_pool" in data_args:  # tiny test catalogues hold fewer items than the pool
                data_args["negative_pool"] = min(data_args["negative_pool"], data.num_items)
            dm = Prebuilt(max_len=50, batch_size=128, eval_batch_size=256, seed=0, **data_args)
            torch.manual_seed(0)
            model = SeqRecModule(num_items=dm.num_items, max_len=50, hidden_size=args.hidden,
                                 loss="sampled_softmax", eval_chunk=args.eval_chunk, **spec["model"])
            monitor = ThroughputMonitor()
            trainer = pl.Trainer(max_epochs=1, limit_train_batches=args.train_steps, limit_val_batches=0,
                                 num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                                 enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor],
                                 accelerator="cpu")
            trainer.fit(model, datamodule=dm)
            runs[recipe].append(dict(monitor.summary))
            mem[f"after_{recipe}"] = peak_rss_gib()
    assert model is not None and dm is not None
    eval_batches = -(-args.eval_users // 256)
    trainer = pl.Trainer(limit_val_batches=eval_batches, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    start = time.perf_counter()
    trainer.validate(model, datamodule=dm, verbose=False)
    eval_seconds = time.perf_counter() - start
    mem["after_eval"] = peak_rss_gib()
    train = {}
    for recipe, rs in runs.items():
        tps = [r.get("tokens_per_s", 0.0) for r in rs]
        train[recipe] = {"tokens_per_s_median": statistics.median(tps), "tokens_per_s": tps,
                         "data_wait_fraction": statistics.median(r.get("data_wait_fraction", 0.0) for r in rs),
                         **{k: v for k, v in RECIPES[recipe].items()}}
    return {
        "users": data.num_users, "items": dm.num_items, "interactions": data.num_interactions,
        "generate_seconds": gen_seconds, "parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(), "steps": args.train_steps, "repeats": args.repeats,
        "train": train,
        "eval": {"users": model.evaluated.get("val", 0), "seconds": eval_seconds,
                 "users_per_s": model.evaluated.get("val", 0) / eval_seconds, "chunk": args.eval_chunk},
        "peak_rss_gib": mem,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalogues", type=int, nargs="+", default=[20_000, 1_000_000],
                   help="item counts, each measured in a process of its own (so peak memory is its own)")
    p.add_argument("--users", type=int, default=500_000)
    p.add_argument("--mean-length", type=float, default=20.0)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--recipes", nargs="+", default=["shared_dense", "pool_sparse"], choices=list(RECIPES))
    p.add_argument("--train-steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--eval-users", type=int, default=2048)
    p.add_argument("--eval-chunk", type=int, default=131_072)
    p.add_argument("--name", default="large_catalogue")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one catalogue, JSON out
    args = p.parse_args(argv)
    if args.one is not None:
        args.items = args.one
        print("RESULT " + json.dumps(one_catalogue(args)))
        return {}
    results = []
    for items in args.catalogues:
        cmd = [sys.executable, "-m", "benchmarks.large_catalogue", "--one", str(items), "--users", str(args.users),
               "--mean-length", str(args.mean_length), "--hidden", str(args.hidden), "--recipes", *args.recipes,
               "--train-steps", str(args.train_steps), "--repeats", str(args.repeats), "--eval-users",
               str(args.eval_users), "--eval-chunk", str(args.eval_chunk)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"large_catalogue at {items} items failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(line[len("RESULT "):]))
    smallest = results[0]
    lines = [f"# Large catalogues: SASRec (d={args.hidden}) training and full-ranking evaluation, one CPU process each",
             "", f"Random-walk data, {args.users:,} users; {args.train_steps} training steps per measurement, "
             f"{args.repeats} repeats interleaved, medians; {results[0]['torch_threads']} torch thread(s). "
             f"Recipes: `shared_dense` (sampled softmax over 512 uniform negatives per sequence, dense Adam) and "
             f"`pool_sparse` (one batch-wide pool of 8,192 uniform items plus the batch's targets, row-sparse item "
             f"table and LazyAdam). Ratios are to the same recipe at {smallest['items']:,} items.", "",
             "| items | interactions | recipe | tokens/s (median) | vs smallest catalogue | data wait | "
             "peak memory after recipe | evaluation users/s |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in results:
        for recipe, t in r["train"].items():
            base = smallest["train"].get(recipe, {}).get("tokens_per_s_median") or float("nan")
            lines.append(f"| {r['items']:,} | {r['interactions']:,} | {recipe} | {t['tokens_per_s_median']:,.0f} | "
                         f"{t['tokens_per_s_median'] / base:.2f} | {t['data_wait_fraction']:.1%} | "
                         f"{r['peak_rss_gib'][f'after_{recipe}']:.2f} GiB | {r['eval']['users_per_s']:,.0f} |")
    lines += ["", "Peak memory is the process's peak resident set so far (data, engine, the model and optimiser of "
              "every recipe trained before), measured with getrusage."]
    payload = {"catalogues": results}
    write(args.name, payload, "\n".join(lines), args.out)
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()
