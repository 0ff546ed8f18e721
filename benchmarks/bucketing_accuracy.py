"""Does length-aware batching change accuracy? The validation curves of two arms on Amazon Games, 3 seeds each.

``sasrec_games`` batches sequences of similar length under a token budget (seqrec's default);
``sasrec_games_fixed`` pads every batch to max_len with 128 sequences, as the original SASRec code does. Same
model, loss, optimiser, data and seeds; both are recorded by ``benchmarks.accuracy`` (validation NDCG@10 by
full ranking at every validation, training seconds, and the test split of the best checkpoint), and this
module turns that run file into the table:

    SEQREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m benchmarks.accuracy \
        --configs sasrec_games sasrec_games_fixed --seeds 42 43 44 --set trainer.max_epochs=20 --name bucketing_runs
    python -m benchmarks.bucketing_accuracy --runs bucketing_runs
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.common import RESULTS, mean_sd, write

ARMS = ("sasrec_games", "sasrec_games_fixed")
LABEL = {"sasrec_games": "bucketed", "sasrec_games_fixed": "fixed"}


def table(rows: list[dict]) -> str:
    arms = {arm: [r for r in rows if r["config"] == arm] for arm in ARMS}
    curves = {arm: [{c["epoch"]: c for c in r.get("curve", [])} for r in runs] for arm, runs in arms.items()}
    epochs = sorted({e for per_arm in curves.values() for curve in per_arm for e in curve})
    seeds = {arm: ",".join(str(r["seed"]) for r in runs) for arm, runs in arms.items()}
    lines = ["# Length-aware batching and accuracy (Amazon Games, the SASRec paper's setup)", "",
             "Validation NDCG@10 by full ranking (seen items excluded) at each validation, mean ± standard deviation "
             "over seeds; `fixed` pads every batch to max_len 50 with 128 sequences (the original SASRec batching), "
             "`bucketed` is seqrec's default (similar lengths together, a token budget of 128 x mean targets per "
             "batch). Same model, BCE with one uniform negative, optimiser, data and seeds; one torch thread per run.",
             "", f"| epoch | fixed (seeds {seeds['sasrec_games_fixed']}) | bucketed (seeds {seeds['sasrec_games']}) | "
             "difference (bucketed - fixed) |", "|---:|---:|---:|---:|"]
    for e in epochs:
        per = {arm: [curve[e]["val_ndcg@10"] for curve in curves[arm] if e in curve] for arm in ARMS}
        diff = (f"{statistics.mean(per['sasrec_games']) - statistics.mean(per['sasrec_games_fixed']):+.4f}"
                if per["sasrec_games"] and per["sasrec_games_fixed"] else "–")
        lines.append(f"| {e} | {mean_sd(per['sasrec_games_fixed'])} | {mean_sd(per['sasrec_games'])} | {diff} |")
    lines += ["", "| arm | seeds | epochs | training seconds per epoch | test NDCG@10 (full) | test HR@10 (uniform-100) |",
              "|---|---|---:|---:|---:|---:|"]
    for arm, runs in arms.items():
        per_epoch = [r["train_seconds"] / max(r["epochs"], 1) for r in runs if r.get("train_seconds")]
        lines.append(f"| {LABEL[arm]} | {seeds[arm]} | {max((r['epochs'] for r in runs), default=0)} | "
                     f"{statistics.median(per_epoch):.1f} | {mean_sd([r['test']['ndcg@10'] for r in runs])} | "
                     f"{mean_sd([r['test']['sampled/hr@10'] for r in runs if 'sampled/hr@10' in r['test']])} |"
                     if per_epoch else f"| {LABEL[arm]} | {seeds[arm]} | – | – | – | – |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=["bucketing_runs"], help="run files of benchmarks.accuracy")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="bucketing_accuracy")
    args = p.parse_args(argv)
    rows = [r for name in args.runs for r in json.loads((args.out / f"{name}.json").read_text())["runs"]
            if r["config"] in ARMS]
    text = table(rows)
    write(args.name, {"runs": args.runs, "rows": len(rows)}, text, args.out)
    print(text)
    return text


if __name__ == "__main__":
    main()
