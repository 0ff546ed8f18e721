"""Two inner loops, old and new expression timed in the same run on the same tensors (median of repeats):

- ranking counts at evaluation: comparing every score of every row vs the top-k shortcut
  (``target_rank_counts(..., max_k)``), on a 54,543-item catalogue (BERT4Rec-Beauty);
- scoring shared negatives: a broadcast (B, L, K, D) product vs one (L, D) x (D, K) product per row.

    python -m benchmarks.kernels
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from seqrec.evaluate.metrics import target_rank_counts

from benchmarks.common import RESULTS, time_it, write


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=512)
    p.add_argument("--items", type=int, default=54543)
    p.add_argument("--negatives", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(args.users, args.items, generator=g)
    targets = torch.randint(1, args.items, (args.users,), generator=g)
    all_rows = time_it(lambda _: target_rank_counts(scores, targets), args.repeats, 1)
    shortcut = time_it(lambda _: target_rank_counts(scores, targets, 10), args.repeats, 1)
    hidden = torch.randn(128, 50, 64, generator=g)
    emb = torch.randn(128, 1, args.negatives, 64, generator=g)
    broadcast = time_it(lambda _: (hidden.unsqueeze(-2) * emb).sum(-1), args.repeats, 1)
    product = time_it(lambda _: hidden @ emb.squeeze(1).transpose(-1, -2), args.repeats, 1)
    out = {
        "rank_counts": {"all_rows": all_rows, "top_k_shortcut": shortcut,
                        "speedup": all_rows["median"] / shortcut["median"]},
        "shared_negatives": {"broadcast": broadcast, "matrix_product": product,
                             "speedup": broadcast["median"] / product["median"]},
        "torch_threads": torch.get_num_threads(),
    }
    lines = ["# Inner loops: old vs new expression, same run, same tensors (median seconds per call)", "",
             "| what | old | new | speed-up |", "|---|---:|---:|---:|",
             f"| rank counts, {args.users} users x {args.items:,} items | {all_rows['median']:.4f} | "
             f"{shortcut['median']:.4f} | {out['rank_counts']['speedup']:.1f}x |",
             f"| {args.negatives} shared negatives, 128 x 50 positions, d=64 | {broadcast['median']:.4f} | "
             f"{product['median']:.4f} | {out['shared_negatives']['speedup']:.1f}x |"]
    write("kernels", out, "\n".join(lines), args.out)
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
