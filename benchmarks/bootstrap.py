"""Bootstrap intervals of a test run's per-user metrics: seqrec's resampling against the per-resample Python
loop it replaced, on per-user values shaped like real ones (HR: 0/1; NDCG: mostly 0, a few distinct values).

    python -m benchmarks.bootstrap                              # 300k users, 1,000 resamples: results/bootstrap.{json,md}
    python -m benchmarks.bootstrap --users 2000 --repeats 1     # tiny (the tests)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, write
from seqrec.evaluate.uncertainty import bootstrap_ci


def loop_bootstrap(values: np.ndarray, resamples: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """The reference: one resample of every user per Python iteration (seqrec before the change)."""
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for r in range(resamples):
        means[r] = x[rng.integers(0, x.size, size=x.size)].mean()
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def metric_values(users: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rank = rng.geometric(0.02, size=users)  # the target's rank, 1-based
    hit = rank <= 10
    return {"hr@10": hit.astype(np.float64), "ndcg@10": np.where(hit, 1 / np.log2(rank + 1), 0.0)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=300_000)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="bootstrap")
    args = p.parse_args(argv)
    rows = []
    for metric, values in metric_values(args.users).items():
        timings: dict[str, list[float]] = {"loop": [], "seqrec": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            ref = loop_bootstrap(values, args.resamples)
            timings["loop"].append(time.perf_counter() - start)
            start = time.perf_counter()
            got = bootstrap_ci(values, args.resamples)
            timings["seqrec"].append(time.perf_counter() - start)
        ratios = [a / b for a, b in zip(timings["loop"], timings["seqrec"])]
        rows.append({"metric": metric, "loop_s": timings["loop"], "seqrec_s": timings["seqrec"],
                     "speedup_median": statistics.median(ratios), "interval_loop": ref,
                     "interval_seqrec": [got.low, got.high], "mean": got.mean})
    lines = [f"# Bootstrap intervals: {args.users:,} users, {args.resamples:,} resamples, median of {args.repeats}", "",
             "| metric | Python loop (s) | seqrec (s) | speed-up | 95% interval, loop | 95% interval, seqrec |",
             "|---|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['metric']} | {statistics.median(r['loop_s']):.2f} | {statistics.median(r['seqrec_s']):.3f} | "
                     f"{r['speedup_median']:.0f}x | {r['interval_loop'][0]:.5f} – {r['interval_loop'][1]:.5f} | "
                     f"{r['interval_seqrec'][0]:.5f} – {r['interval_seqrec'][1]:.5f} |")
    lines += ["", "A test run bootstraps 12 metrics (HR, NDCG, MRR at each k, model and popularity). Command: "
              "`python -m benchmarks.bootstrap`"]
    payload = {"users": args.users, "resamples": args.resamples, "rows": rows}
    write(args.name, payload, "\n".join(lines), args.out)
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()
