"""A million-item catalogue on one CPU machine: memory and throughput of training and full-ranking evaluation.

Synthetic data (random walks on an item-successor graph, built vectorised so that 10 million interactions
take seconds), SASRec trained with a sampled softmax over shared uniform negatives (a full softmax over a
million items would need batch x length x 1M logits), and evaluation by full ranking in item chunks. Reports
tokens/s, users/s and the peak resident memory after each phase, and projects the model's memory to 10M items.

    python -m benchmarks.large_catalogue                                   # 1M items, 10M interactions
    python -m benchmarks.large_catalogue --items 20000 --users 5000 --train-steps 20 --eval-users 512   # quick
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, write
from seqrec.data.interactions import Interactions


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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=500_000)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--mean-length", type=float, default=20.0)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--negatives", type=int, default=512)
    p.add_argument("--train-steps", type=int, default=100)
    p.add_argument("--eval-users", type=int, default=2048)
    p.add_argument("--eval-chunk", type=int, default=131_072)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    import pytorch_lightning as pl

    from seqrec.callbacks import ThroughputMonitor
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.module import SeqRecModule

    start = time.perf_counter()
    data = random_walks(args.users, args.items, args.mean_length)
    gen_seconds = time.perf_counter() - start
    mem = {"after_data": peak_rss_gib()}

    class Prebuilt(SeqRecDataModule):
        def _load(self) -> Interactions:  # the walks above instead of a file
            return data

    dm = Prebuilt(max_len=50, batch_size=128, eval_batch_size=256, negatives="uniform",
                  num_negatives=args.negatives, shared_negatives=True, seed=0)
    mem["after_split"] = peak_rss_gib()
    model = SeqRecModule(num_items=dm.num_items, max_len=50, hidden_size=args.hidden, loss="sampled_softmax",
                         eval_chunk=args.eval_chunk)
    monitor = ThroughputMonitor()
    eval_batches = -(-args.eval_users // 256)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=args.train_steps, limit_val_batches=eval_batches,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[monitor], accelerator="cpu")
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_seconds = time.perf_counter() - start
    mem["after_fit"] = peak_rss_gib()
    start = time.perf_counter()
    trainer.validate(model, datamodule=dm, verbose=False)
    eval_seconds = time.perf_counter() - start
    mem["after_eval"] = peak_rss_gib()

    params = sum(p.numel() for p in model.parameters())
    table = (dm.num_items + 1) * args.hidden
    # Weights, gradient and Adam's two moments of the item table, in float32.
    table_gib = 4 * table * 4 / 2**30
    per_item_bytes = 4 * args.hidden * 4
    result = {
        "users": data.num_users, "items": dm.num_items, "interactions": data.num_interactions,
        "generate_seconds": gen_seconds, "parameters": params, "torch_threads": torch.get_num_threads(),
        "train": {"steps": args.train_steps, "negatives": args.negatives, **monitor.summary},
        "eval": {"users": model.evaluated.get("val", 0), "seconds": eval_seconds,
                 "users_per_s": model.evaluated.get("val", 0) / eval_seconds, "chunk": args.eval_chunk,
                 "ndcg@10": model.results.get("val", {}).get("ndcg@10")},
        "fit_seconds": fit_seconds, "peak_rss_gib": mem,
        "item_table_training_gib": table_gib,
        "projected_item_table_training_gib_10M_items": per_item_bytes * 10_000_000 / 2**30,
    }
    lines = [f"# Large catalogue: {dm.num_items:,} items, {data.num_interactions:,} interactions, one CPU process", "",
             f"SASRec (d={args.hidden}), sampled softmax over {args.negatives} shared uniform negatives; full-ranking "
             f"evaluation in chunks of {args.eval_chunk:,} items; {torch.get_num_threads()} torch thread(s).", "",
             "| phase | figure | peak resident memory |", "|---|---|---:|",
             f"| data ({gen_seconds:.0f} s to generate) | {data.num_interactions:,} interactions | "
             f"{mem['after_data']:.2f} GiB |",
             f"| split + engine | leave-one-out, CSR arrays | {mem['after_split']:.2f} GiB |",
             f"| training ({args.train_steps} steps) | {monitor.summary.get('tokens_per_s', 0):,.0f} tokens/s, "
             f"data wait {monitor.summary.get('data_wait_fraction', 0):.1%} | {mem['after_fit']:.2f} GiB |",
             f"| evaluation, full ranking | {result['eval']['users_per_s']:,.0f} users/s over {dm.num_items:,} items | "
             f"{mem['after_eval']:.2f} GiB |", "",
             f"The item table in training (weights, gradient, two Adam moments, float32) takes {table_gib:.2f} GiB "
             f"here; at 10M items it would take {result['projected_item_table_training_gib_10M_items']:.1f} GiB, "
             "plus the data (about 12 bytes per interaction) and B x chunk evaluation scores."]
    write("large_catalogue", result, "\n".join(lines), args.out)
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
