"""Time to quality: validation NDCG@10 against training seconds for a config trained with several recipes.

Each recipe is a named set of overrides (loss, negatives, pool size, optimiser) applied to the config; each
run trains within the budget with early stopping on validation (never test), and a ``TrainingClock`` records
(epoch, training seconds without evaluation, validation NDCG@10) at every validation. The table gives each
recipe's best validation NDCG@10, its epochs, and the training seconds it needed to reach 95% and 99% of the
reference recipe's best (full CE, ``ce``, when it is among the recipes); the PNG draws the curves. Test
numbers of the best checkpoint are stored too, but recipes are compared on validation only.

    python -m benchmarks.time_to_quality --config sasrec_beauty_s3 --recipes ce pool_2k pool_8k --minutes 20
    python -m benchmarks.time_to_quality --merge ttq_a ttq_b --name time_to_quality_s3   # parallel runs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, write

ROOT = Path(__file__).resolve().parents[1]

# Each recipe's overrides of the config (LightningCLI keys). "ce" is the reference.
RECIPES: dict[str, list[str]] = {
    "ce": ["--model.loss=ce", "--model.sparse_embeddings=false", "--data.negatives=none", "--data.negative_pool=0"],
    "shared_1k": ["--model.loss=sampled_softmax", "--data.negatives=uniform", "--data.num_negatives=1024",
                  "--data.shared_negatives=true", "--data.negative_pool=0"],
    "pool_2k": ["--model.loss=sampled_softmax", "--data.negatives=uniform", "--data.negative_pool=2048",
                "--data.pool_in_batch=true"],
    "pool_8k": ["--model.loss=sampled_softmax", "--data.negatives=uniform", "--data.negative_pool=8192",
                "--data.pool_in_batch=true"],
    "pool_8k_sparse": ["--model.loss=sampled_softmax", "--data.negatives=uniform", "--data.negative_pool=8192",
                       "--data.pool_in_batch=true", "--model.sparse_embeddings=true"],
    "pool_8k_pop": ["--model.loss=sampled_softmax", "--data.negatives=popularity", "--data.popularity_alpha=0.5",
                    "--data.negative_pool=8192", "--data.pool_in_batch=true"],
}
FRACTIONS = (0.95, 0.99)


def run_recipe(config: str, recipe: str, minutes: float, seed: int, out_dir: Path, extra: list[str]) -> dict[str, Any]:
    from seqrec.cli import run
    from seqrec.train.callbacks import TrainingClock

    root = out_dir / "runs" / f"ttq_{config}_{recipe}_seed{seed}"
    hh, mm = divmod(int(minutes), 60)
    ss = int(round((minutes - int(minutes)) * 60))
    logger = json.dumps([{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": str(root)}}])
    start = time.perf_counter()
    cli = run(["fit", "--config", str(ROOT / "configs" / f"{config}.yaml"), *RECIPES[recipe], *extra,
               f"--trainer.max_time=00:{hh:02d}:{mm:02d}:{ss:02d}", f"--trainer.default_root_dir={root}",
               f"--trainer.logger={logger}", "--trainer.enable_progress_bar=false",
               "--trainer.callbacks+=seqrec.train.callbacks.TrainingClock",
               f"--seed_everything={seed}", f"--data.seed={seed}"])
    clock = next(c for c in cli.trainer.callbacks if isinstance(c, TrainingClock))
    stopper = cli.trainer.early_stopping_callback
    return {
        "config": config,
        "recipe": recipe,
        "overrides": RECIPES[recipe] + extra,
        "seed": seed,
        "budget_minutes": minutes,
        "wall_minutes": (time.perf_counter() - start) / 60,
        "epochs": int(cli.trainer.current_epoch),
        "train_seconds": clock.seconds,
        "early_stopped": bool(stopper is not None and stopper.stopped_epoch > 0),
        "curve": [{"epoch": e, "seconds": s, "val_ndcg@10": v} for e, s, v in clock.curve],
        "val": cli.model.results.get("val", {}),
        "test": cli.model.results.get("test", {}),
    }


def seconds_to(curve: list[dict[str, float]], level: float) -> float | None:
    """Training seconds of the first validation at or above ``level`` (None if never)."""
    return next((p["seconds"] for p in curve if p["val_ndcg@10"] >= level), None)


def table(runs: list[dict[str, Any]]) -> str:
    reference = max((r for r in runs if r["recipe"] == "ce"), key=lambda r: r["seed"] == 42, default=None)
    ref_best = max((p["val_ndcg@10"] for p in reference["curve"]), default=0.0) if reference else None
    lines = ["# Time to quality (leave-one-out; validation NDCG@10 by full ranking; training seconds without "
             "evaluation)", ""]
    if ref_best:
        lines.append(f"Reference: full CE's best validation NDCG@10, {ref_best:.4f}.")
        lines.append("")
    head = ["config", "recipe", "seed", "budget min", "epochs", "train s", "early stop", "best val NDCG@10"]
    head += [f"s to {int(f * 100)}% of CE" for f in FRACTIONS] + ["test HR@10", "test NDCG@10"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        best = max((p["val_ndcg@10"] for p in r["curve"]), default=float("nan"))
        reach = []
        for f in FRACTIONS:
            s = seconds_to(r["curve"], f * ref_best) if ref_best else None
            reach.append("–" if s is None else f"{s:.0f}")
        test = r.get("test", {})
        lines.append(f"| {r['config']} | {r['recipe']} | {r['seed']} | {r['budget_minutes']:g} | {r['epochs']} | "
                     f"{r['train_seconds']:.0f} | "
                     f"{'yes' if r['early_stopped'] else 'no'} | {best:.4f} | " + " | ".join(reach) +
                     f" | {test.get('hr@10', float('nan')):.4f} | {test.get('ndcg@10', float('nan')):.4f} |")
    lines += ["", "Recipes (overrides of the config):", ""]
    for name in dict.fromkeys(r["recipe"] for r in runs):
        overrides = next(r["overrides"] for r in runs if r["recipe"] == name)
        lines.append(f"- `{name}`: `{' '.join(overrides)}`")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        xs = [p["seconds"] for p in r["curve"]]
        ys = [p["val_ndcg@10"] for p in r["curve"]]
        ax.plot(xs, ys, marker=".", label=f"{r['recipe']} (seed {r['seed']})")
    ax.set_xlabel("training seconds (evaluation excluded)")
    ax.set_ylabel("validation NDCG@10 (full ranking)")
    ax.set_title(", ".join(sorted({r["config"] for r in runs})))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="sasrec_beauty_s3")
    p.add_argument("--recipes", nargs="+", default=["ce", "pool_2k", "pool_8k"], choices=sorted(RECIPES))
    p.add_argument("--minutes", type=float, default=20.0, help="training budget per run (wall clock)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra overrides for every recipe, e.g. trainer.max_epochs=3")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default=None, help="result file name (default time_to_quality_<config>)")
    p.add_argument("--merge", nargs="+", default=None, metavar="NAME",
                   help="train nothing: combine the runs of these result files")
    args = p.parse_args(argv)
    name = args.name or f"time_to_quality_{args.config}"
    if args.merge:
        runs = [r for n in args.merge for r in json.loads((args.out / f"{n}.json").read_text())["runs"]]
    else:
        extra = [f"--{kv}" for kv in args.set]
        runs = [run_recipe(args.config, recipe, args.minutes, seed, args.out, extra)
                for recipe in args.recipes for seed in args.seeds]
    text = table(runs)
    write(name, {"runs": runs}, text, args.out)
    plot(runs, args.out / f"{name}.png")
    print(text)
    return runs


if __name__ == "__main__":
    main()
