"""Two inner loops, old and new expression timed in the same run on the same tensors (median of repeats):

- ranking counts at evaluation: comparing every score of every row vs the top-k shortcut
  (``target_rank_counts(..., max_k)``), on a 54,543-item catalogue (BERT4Rec-Beauty), twice: on random
  scores, where a target almost never reaches the top k and the shortcut counts almost no row (its best
  case), and on the scores of a SASRec trained here on synthetic data of the same catalogue size, seen
  items excluded as evaluation excludes them, where the rows it must count are the model's hits;
- scoring shared negatives: a broadcast (B, L, K, D) product vs one (L, D) x (D, K) product per row
  (dense products: their speed does not depend on the values, so random tensors only).

    python -m benchmarks.kernels
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from seqrec.evaluate.metrics import target_rank_counts
from seqrec.evaluate.ranking import exclude_items

from benchmarks.common import RESULTS, time_it, write


def trained_scores(users: int, items: int, train_users: int, epochs: int, hidden: int) -> dict[str, Any]:
    """(users, C) validation scores of a SASRec trained ``epochs`` epochs (BCE, 1 negative) on synthetic
    data of ``train_users`` x ``items``, padding and seen items at ``-inf``, with the targets' columns."""
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec
    from seqrec.models.sasrec import SASRec, SASRecConfig

    from benchmarks.training import Meter, train_epoch

    spec = SyntheticSpec(num_users=max(train_users, users), num_items=items, num_clusters=50, mean_length=20, seed=0)
    dm = SeqRecDataModule(synthetic=spec, max_len=50, batch_size=128, seed=0)
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=dm.num_items, max_len=50, hidden_size=hidden, num_blocks=2, num_heads=1,
                                dropout=0.2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    meter = Meter()
    for epoch in range(epochs):
        dm._epoch = lambda epoch=epoch: epoch  # type: ignore[method-assign]
        train_epoch(model, opt, dm.train_dataloader(), meter)
    model.eval()
    rows, targets, n = [], [], 0
    with torch.no_grad():
        for batch in dm.eval_batches("val"):
            scores = model.score_all(model.query(batch["inputs"])).float()  # (B, num_items + 1)
            rows.append(exclude_items(scores, batch["history_rows"], batch["history_items"]))
            targets.append(batch["targets"])
            n += scores.shape[0]
            if n >= users:
                break
    return {"scores": torch.cat(rows)[:users], "targets": torch.cat(targets)[:users], "items": dm.num_items,
            "epochs": epochs, "train_users": spec.num_users}


def rank_counts(scores: torch.Tensor, targets: torch.Tensor, repeats: int, k: int = 10) -> dict[str, Any]:
    """Both expressions timed on the same scores, and the share of rows the shortcut counts exactly."""
    all_rows = time_it(lambda _: target_rank_counts(scores, targets), repeats, 1)
    shortcut = time_it(lambda _: target_rank_counts(scores, targets, k), repeats, 1)
    greater, _ = target_rank_counts(scores, targets)
    return {"all_rows": all_rows, "top_k_shortcut": shortcut, "speedup": all_rows["median"] / shortcut["median"],
            "rows_counted": float((greater < k).float().mean()), "users": int(scores.shape[0]),
            "columns": int(scores.shape[1])}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=512)
    p.add_argument("--items", type=int, default=54543)
    p.add_argument("--negatives", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--train-users", type=int, default=20000, help="users of the synthetic data the model trains on")
    p.add_argument("--train-epochs", type=int, default=3)
    p.add_argument("--hidden", type=int, default=32, help="hidden size of the trained SASRec")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(args.users, args.items, generator=g)
    targets = torch.randint(1, args.items, (args.users,), generator=g)
    random = rank_counts(scores, targets, args.repeats)
    trained = trained_scores(args.users, args.items, args.train_users, args.train_epochs, args.hidden)
    real = rank_counts(trained["scores"], trained["targets"], args.repeats)
    real["model"] = {k: trained[k] for k in ("items", "epochs", "train_users")} | {"hidden": args.hidden}
    hidden = torch.randn(128, 50, 64, generator=g)
    emb = torch.randn(128, 1, args.negatives, 64, generator=g)
    broadcast = time_it(lambda _: (hidden.unsqueeze(-2) * emb).sum(-1), args.repeats, 1)
    product = time_it(lambda _: hidden @ emb.squeeze(1).transpose(-1, -2), args.repeats, 1)
    out = {
        "rank_counts": random,
        "rank_counts_trained": real,
        "shared_negatives": {"broadcast": broadcast, "matrix_product": product,
                             "speedup": broadcast["median"] / product["median"]},
        "torch_threads": torch.get_num_threads(),
    }
    m = real["model"]
    lines = ["# Inner loops: old vs new expression, same run, same tensors (median seconds per call)", "",
             "| what | old | new | speed-up | rows counted |", "|---|---:|---:|---:|---:|"]
    for label, r in ((f"rank counts, random scores, {random['users']} users x {random['columns']:,} items", random),
                     (f"rank counts, trained SASRec's scores, {real['users']} users x {m['items']:,} items", real)):
        lines.append(f"| {label} | {r['all_rows']['median']:.4f} | {r['top_k_shortcut']['median']:.4f} | "
                     f"{r['speedup']:.1f}x | {r['rows_counted']:.1%} |")
    lines += [f"| {args.negatives} shared negatives, 128 x 50 positions, d=64 | {broadcast['median']:.4f} | "
              f"{product['median']:.4f} | {out['shared_negatives']['speedup']:.1f}x | |", "",
              f"Rows counted: the share whose target reaches the top 10, which the shortcut counts exactly (on "
              f"random scores almost none, its best case). The trained model: SASRec hidden {m['hidden']}, "
              f"{m['epochs']} epochs on {m['train_users']:,} synthetic users over {m['items']:,} items, validation "
              f"users, seen items excluded."]
    write("kernels", out, "\n".join(lines), args.out)
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
