"""Retrieval over item embeddings: exact top-k (chunked matrix products) vs faiss HNSW, recall and speed.

With ``--checkpoint`` the items are a trained model's embeddings and the queries its users' query vectors
(the last hidden state after their histories), the realistic case; without, clustered random vectors.

    python -m benchmarks.retrieval --checkpoint runs/sasrec_beauty/best.ckpt --queries 2000
    python -m benchmarks.retrieval --items 1000000 --dim 64 --queries 1000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from seqrec.serve.retrieval import HNSWIndex, exact_top_k, recall_at_k

from benchmarks.common import RESULTS, time_it, write


def model_vectors(checkpoint: Path, queries: int) -> tuple[np.ndarray, np.ndarray, str]:
    from seqrec.data.batches import history_batches
    from seqrec.serve.recommend import Recommender

    rec = Recommender.from_checkpoint(checkpoint)
    data = rec.histories
    assert data is not None
    users = np.arange(min(queries, data.num_users), dtype=np.int64)
    out = []
    with torch.no_grad():
        for batch in history_batches(data.offsets, data.items.astype(np.int64), users, rec.max_len, 512):
            out.append(rec.module.model(batch["inputs"])[:, -1].float().numpy())
    return np.concatenate(out), rec.item_embeddings(), f"{checkpoint} ({data.source})"


def clustered(items: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(items // 500, 1), dim))
    table = centers[rng.integers(len(centers), size=items)] + 0.5 * rng.normal(size=(items, dim))
    q = table[rng.integers(items, size=queries)] + 0.2 * rng.normal(size=(queries, dim))
    return q.astype(np.float32), table.astype(np.float32), f"clustered random ({items} x {dim})"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128, 256], help="HNSW efSearch values")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.checkpoint is not None:
        queries, items, source = model_vectors(args.checkpoint, args.queries)
    else:
        queries, items, source = clustered(args.items, args.dim, args.queries)
    exact_scores, exact = exact_top_k(queries, items, args.k)
    t_exact = time_it(lambda _: exact_top_k(queries, items, args.k), args.repeats, 1)["median"]
    start = time.perf_counter()
    index = HNSWIndex(items)
    build = time.perf_counter() - start
    rows = []
    for ef in args.ef:
        index.index.hnsw.efSearch = ef
        approx = index.search(queries, args.k)[1]
        t = time_it(lambda _: index.search(queries, args.k), args.repeats, 1)["median"]
        rows.append({"ef_search": ef, "recall": recall_at_k(approx, exact), "seconds": t,
                     "queries_per_s": len(queries) / t, "speedup_vs_exact": t_exact / t})
    result = {"source": source, "items": int(items.shape[0]), "dim": int(items.shape[1]),
              "queries": int(len(queries)), "k": args.k, "exact_seconds": t_exact,
              "exact_queries_per_s": len(queries) / t_exact, "hnsw_build_seconds": build, "hnsw": rows}
    lines = [f"# Retrieval: exact top-{args.k} vs faiss HNSW (M=32) on {source}", "",
             f"{result['items']} items, {result['queries']} queries, {torch.get_num_threads()} torch threads. "
             f"Exact: {result['exact_queries_per_s']:.0f} queries/s. HNSW build: {build:.1f} s. "
             "Recall: share of the exact top-k found.", "",
             "| efSearch | recall@k | queries/s | speed-up vs exact |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['ef_search']} | {r['recall']:.4f} | {r['queries_per_s']:.0f} | {r['speedup_vs_exact']:.1f}x |"
              for r in rows]
    write("retrieval", result, "\n".join(lines), args.out)
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
