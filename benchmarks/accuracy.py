"""Accuracy on the public benchmarks, beside the published numbers for the same file and protocol.

For each named config it trains (early stopping on validation NDCG@10, never on test) within a wall-clock
budget, tests the best checkpoint by full ranking and by the sampled protocol of the source paper, and
writes benchmarks/results/accuracy.json plus a markdown table. Configs whose data file is absent are skipped
with a message. Data comes from $SEQREC_DATA_DIR (default ../shared/data).

    python -m benchmarks.accuracy                                  # every config below
    python -m benchmarks.accuracy --configs sasrec_games --minutes 30 --seeds 42 43 44
    python -m benchmarks.accuracy --merge accuracy_a accuracy_b    # combine runs made in parallel (a later
                                                                   # file's config and seed replaces an earlier)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from seqrec.data.source import resolve_data_path

from benchmarks.common import RESULTS, mean_sd, write

ROOT = Path(__file__).resolve().parents[1]

# Published HR@10 / NDCG@10 on exactly these files (see ../shared/data/README.md for the sources).
PUBLISHED = {
    "sasrec_games": [("SASRec paper (ICDM 2018)", "sampled", 0.7410, 0.5360),
                     ("SASRec.pytorch, pre-LN", "sampled", 0.7442, 0.5376)],
    "sasrec_games_best": [("SASRec.pytorch, pre-LN", "sampled", 0.7442, 0.5376)],
    "sasrec_games_ce": [("SASRec.pytorch, pre-LN", "sampled", 0.7442, 0.5376)],
    "sasrec_beauty": [("SASRec full CE, Klenitskiy & Vasilev", "full", 0.0533, 0.0327),
                      ("SASRec softmax, RecTools benchmark", "full", 0.0595, 0.0359)],
    "bert4rec_beauty": [("BERT4Rec paper (CIKM 2019)", "sampled", 0.3025, 0.1862),
                        ("BERT4Rec, Klenitskiy & Vasilev", "full", 0.0338, 0.0187)],
    "sasrec_beauty_s3": [("SASRec sampled softmax, eSASRec benchmark", "full", 0.0921, 0.0531),
                         ("eSASRec, same benchmark", "full", 0.0928, 0.0523)],
}
PUBLISHED["sasrec_beauty_s3_features"] = PUBLISHED["sasrec_beauty_s3_best"] = PUBLISHED["sasrec_beauty_s3"]
PUBLISHED["sasrec_beauty_best"] = PUBLISHED["sasrec_beauty"]
# No BERT4Rec figure is published on the S3-Rec file: SASRec's and eSASRec's are the ones to stand beside.
PUBLISHED["bert4rec_beauty_s3"] = PUBLISHED["sasrec_beauty_s3"]
PUBLISHED["bert4rec_beauty_pool"] = PUBLISHED["bert4rec_beauty_best"] = PUBLISHED["bert4rec_beauty"] + [
    ("SASRec softmax, RecTools benchmark (the accuracy issue's BERT4Rec target)", "full", 0.0595, 0.0359)]

# Candidates that are a shipped config plus overrides: name -> (config, LightningCLI overrides). A variant is
# run and recorded like a config; which one a config file ships is chosen on validation (see SELECTIONS).
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "sasrec_games_k4": ("sasrec_games", ["--data.num_negatives=4"]),
    "sasrec_games_k16": ("sasrec_games", ["--data.num_negatives=16"]),
    # The original SASRec batching (every batch padded to max_len, 128 sequences) as a control arm.
    "sasrec_games_fixed": ("sasrec_games", ["--data.length_bucketing=false"]),
    # eSASRec's block on the shipped recipes (issue: the strongest simple SASRec).
    "sasrec_beauty_s3_ligr": ("sasrec_beauty_s3", ["--model.block=ligr"]),
    # Twice the pool: a softmax over a third of the 12k catalogue per batch instead of a sixth.
    "sasrec_beauty_s3_p4096": ("sasrec_beauty_s3", ["--data.negative_pool=4096"]),
    "sasrec_games_k16_ligr": ("sasrec_games", ["--data.num_negatives=16", "--model.block=ligr"]),
    # S3-Rec Beauty's recipe on Games: a softmax over one batch-wide pool of 2,048 uniform items plus the batch's
    # targets (logQ-corrected), in place of BCE; the paper's model otherwise.
    "sasrec_games_pool": ("sasrec_games", ["--model.loss=sampled_softmax", "--data.negative_pool=2048",
                                           "--data.pool_in_batch=true"]),
    "bert4rec_beauty_ligr": ("bert4rec_beauty", ["--model.block=ligr"]),
    # BERT4Rec with SASRec-Beauty's pool recipe (8,192 distinct items + the batch's targets, logQ-corrected) is
    # configs/bert4rec_beauty_pool.yaml; its first runs were bert4rec_beauty with these two data overrides.
    # Validation every 4 epochs: the pool run spent a third of its 30 minutes validating and was still improving.
    "bert4rec_beauty_pool_ligr": ("bert4rec_beauty", ["--data.negative_pool=8192", "--data.pool_in_batch=true",
                                                      "--model.block=ligr", "--trainer.check_val_every_n_epoch=4"]),
    # Fewer masked positions (the paper's 0.6 hides most of Beauty's short histories) and validation every 4
    # epochs, so more of the budget trains.
    "bert4rec_beauty_pool_m04": ("bert4rec_beauty_pool", ["--data.mask_prob=0.4",
                                                          "--trainer.check_val_every_n_epoch=4"]),
    # SASRec on BERT4Rec's 54k-item Beauty file: its seed-42 run peaked at epoch 13 of 22 with dropout 0.3 (the
    # paper's 0.5 regularises Amazon's sparse histories), alone and with eSASRec's block.
    "sasrec_beauty_d05": ("sasrec_beauty", ["--model.dropout=0.5"]),
    "sasrec_beauty_d05_ligr": ("sasrec_beauty", ["--model.dropout=0.5", "--model.block=ligr"]),
    # BERT4Rec beside SASRec on the S3-Rec Beauty file: its pool recipe with SASRec-S3's pool of 2,048 (of 12k
    # items), full ranking only, as that file's benchmark reports.
    "bert4rec_beauty_s3": ("bert4rec_beauty_pool", ["--data.path=$SEQREC_DATA_DIR/amazon-beauty-s3rec/Beauty.txt",
                                                    "--data.format=user_lines", "--data.negative_pool=2048",
                                                    "--data.sampled_eval=none"]),
}
PROTOCOL = {"sasrec_games": "uniform-100", "sasrec_games_best": "uniform-100", "sasrec_games_ce": "uniform-100",
            "sasrec_beauty": "popularity-100", "sasrec_beauty_best": "popularity-100",
            "bert4rec_beauty": "popularity-100", "bert4rec_beauty_pool": "popularity-100", "bert4rec_beauty_best": "popularity-100",
            "sasrec_beauty_s3": "none",
            "sasrec_beauty_s3_features": "none", "bert4rec_beauty_s3": "none", "sasrec_beauty_s3_best": "none"}


def data_path(config: Path) -> str | None:
    for line in config.read_text().splitlines():
        if line.strip().startswith("path:"):
            value = line.split("path:", 1)[1].split("#", 1)[0].strip()
            return None if value in ("null", "") else value
    return None


def run_one(name: str, minutes: float, seed: int, out_dir: Path, extra: list[str] | None = None,
            folder: str | None = None) -> dict | None:
    from seqrec.cli import run

    base, overrides = VARIANTS.get(name, (name, []))
    overrides = [*overrides, *(extra or [])]
    config = ROOT / "configs" / f"{base}.yaml"
    path = data_path(config)
    try:
        if path is not None:
            resolve_data_path(path)
    except FileNotFoundError as e:
        print(f"skipping {name}: {e}")
        return None
    root = out_dir / "runs" / (folder or f"{name}_seed{seed}")
    hh, mm = divmod(int(minutes), 60)
    start = time.perf_counter()
    loggers = json.dumps([
        {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": str(root)}},
        {"class_path": "seqrec.train.tracking.WandbLogger", "init_args": {"save_dir": str(root), "name": f"{name}_seed{seed}"}},
    ])
    cli = run(["fit", "--config", str(config), *overrides, f"--trainer.max_time=00:{hh:02d}:{mm:02d}:00",
               f"--trainer.default_root_dir={root}", f"--trainer.logger={loggers}",
               "--trainer.enable_progress_bar=false", "--trainer.callbacks+=seqrec.train.callbacks.TrainingClock",
               f"--seed_everything={seed}", f"--data.seed={seed}"])
    elapsed = (time.perf_counter() - start) / 60
    import wandb

    wandb.finish()  # one W&B run per config and seed
    ckpt = cli.trainer.checkpoint_callback
    from seqrec.train.callbacks import TrainingClock

    clock = next(c for c in cli.trainer.callbacks if isinstance(c, TrainingClock))
    return {
        "config": name,
        "base_config": base,
        "overrides": overrides,
        "budget_minutes": minutes,
        "seed": seed,
        "epochs": int(cli.trainer.current_epoch),
        "best_epoch_checkpoint": Path(ckpt.best_model_path).name if ckpt else "",
        "minutes": elapsed,
        "train_seconds": clock.seconds,  # training alone, evaluation excluded
        "curve": [{"epoch": e, "seconds": t, "val_ndcg@10": v} for e, t, v in clock.curve],
        "test": cli.model.results.get("test", {}),
        "val": cli.model.results.get("val", {}),
        "run_folder": str(root),
    }


# Which shipped config holds which candidate is decided here, on validation only: group -> (candidates,
# validation metric, the config file that ships the choice). The test split is read once per final config.
SELECTIONS: dict[str, tuple[list[str], str, str]] = {
    "Amazon Games, uniform-100": (["sasrec_games", "sasrec_games_k4", "sasrec_games_k16", "sasrec_games_ce",
                                   "sasrec_games_k16_ligr", "sasrec_games_pool"], "sampled/ndcg@10",
                                  "sasrec_games_best"),
    "S3-Rec Beauty, full ranking": (["sasrec_beauty_s3", "sasrec_beauty_s3_ligr", "sasrec_beauty_s3_p4096"], "ndcg@10",
                                    "sasrec_beauty_s3_best"),
    "BERT4Rec on its Beauty file, full ranking": (["bert4rec_beauty", "bert4rec_beauty_pool", "bert4rec_beauty_pool_ligr",
                                                   "bert4rec_beauty_pool_m04"],
                                                  "ndcg@10", "bert4rec_beauty_best"),
    "SASRec on BERT4Rec's Beauty file, full ranking": (["sasrec_beauty", "sasrec_beauty_d05", "sasrec_beauty_d05_ligr"],
                                                       "ndcg@10", "sasrec_beauty_best"),
}


def _protocol(row: dict) -> str:
    return PROTOCOL.get(row["config"]) or PROTOCOL.get(row.get("base_config", ""), "?")


def _command(row: dict, seeds: list[int]) -> str:
    base = row.get("base_config", row["config"])
    budget = row.get("budget_minutes")
    extra = [o for o in row.get("overrides", []) if o not in VARIANTS.get(row["config"], ("", []))[1]]
    parts = ["SEQREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m benchmarks.accuracy",
             f"--configs {row['config'] if row['config'] in VARIANTS or row['config'] == base else base}",
             "--seeds " + " ".join(map(str, seeds))]
    parts.append(f"--minutes {budget:g}" if budget is not None else "--minutes <budget: not recorded by this older run>")
    if extra:
        parts.append("--set " + " ".join(o.lstrip("-") for o in extra))
    if row.get("file"):
        parts.append(f"--name {row['file']}")
    return " ".join(parts)


def table(rows: list[dict]) -> str:
    """Every section from the stored rows alone, so a ``--merge`` regenerates the whole page."""
    lines = ["# Accuracy on public benchmarks (leave-one-out; test split; best validation checkpoint)", "",
             "Full ranking: the target against the whole catalogue, items the user saw excluded. Sampled: the "
             "target against 100 negatives from unseen items, uniform or by popularity as the source paper did. "
             "The two are not comparable. Early stopping and every choice of config use validation NDCG@10 only; "
             "the test split is read once per run, after training. Several seeds: mean ± standard deviation.", "",
             "| config | seed(s) | epochs | minutes | val NDCG@10 | full HR@10 | full NDCG@10 | sampled protocol | "
             "sampled HR@10 | sampled NDCG@10 | popularity full NDCG@10 |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    by_config: dict[str, list[dict]] = {}
    for r in rows:
        by_config.setdefault(r["config"], []).append(r)
    for name, runs in by_config.items():
        def agg(key: str, split: str = "test") -> str:
            return mean_sd([r[split][key] for r in runs if key in r.get(split, {})])
        seeds = ",".join(str(r["seed"]) for r in runs)
        lines.append(f"| {name} | {seeds} | {max(r['epochs'] for r in runs)} | {max(r['minutes'] for r in runs):.0f} | "
                     f"{agg('ndcg@10', 'val')} | {agg('hr@10')} | {agg('ndcg@10')} | {_protocol(runs[0])} | "
                     f"{agg('sampled/hr@10')} | {agg('sampled/ndcg@10')} | {agg('popularity/ndcg@10')} |")
    lines += ["", "Published numbers on the same files:", "", "| config | source | protocol | HR@10 | NDCG@10 |",
              "|---|---|---|---:|---:|"]
    for name, runs in by_config.items():
        base = runs[0].get("base_config", name)
        for source, protocol, hr, ndcg in PUBLISHED.get(name, PUBLISHED.get(base, [])):
            shown = _protocol(runs[0]) if protocol == "sampled" else "full"
            lines.append(f"| {name} | {source} | {shown} | {hr:.4f} | {ndcg:.4f} |")

    for group, (candidates, metric, shipped) in SELECTIONS.items():
        present = [c for c in candidates if c in by_config]
        if not present:
            continue
        # The seeds every candidate ran: the candidates then differ only in the recipe. The score is each run's
        # last validation (where early stopping or the budget ended it), the one figure every stored run has.
        common = sorted(set.intersection(*({r["seed"] for r in by_config[c] if metric in r["val"]} for c in present)))
        chosen_runs = {c: [r for r in by_config[c] if r["seed"] in common] for c in present}
        score = {c: statistics.mean(r["val"][metric] for r in runs) for c, runs in chosen_runs.items() if runs}
        lines += ["", f"Choice for {group}, on validation {metric} (mean over seeds {', '.join(map(str, common))}, "
                  "which every candidate ran; the last validation of each run; test not used):", "",
                  "| candidate | overrides | budget (min) | epochs | validation " + metric + " |", "|---|---|---:|---:|---:|"]
        for c in present:
            runs = chosen_runs[c]
            over = " ".join(by_config[c][0].get("overrides", [])) or "(the config as shipped)"
            if not runs:
                lines.append(f"| {c} | {over} | – | – | – |")
                continue
            budgets = sorted({f"{r['budget_minutes']:g}" if r.get("budget_minutes") is not None else "not recorded"
                              for r in runs})
            lines.append(f"| {c} | {over} | {', '.join(budgets)} | {', '.join(str(r['epochs']) for r in runs)} | "
                         f"{score[c]:.4f} |")
        if score:
            best = max(score, key=score.__getitem__)
            lines += ["", f"Chosen: {best}, which configs/{shipped}.yaml holds (the others' test numbers above are "
                      "shown, not used)."]

    lines += ["", "How each row was run (one command per row; the page itself is "
              "`python -m benchmarks.accuracy --merge <the files below> --name accuracy`):", ""]
    for name, runs in by_config.items():
        by_file: dict[str, list[dict]] = {}
        for r in runs:
            by_file.setdefault(r.get("file", ""), []).append(r)
        for file_runs in by_file.values():
            lines.append(f"    {_command(file_runs[0], [r['seed'] for r in file_runs])}")
    lines += ["", "Per seed:", "", "| config | seed | budget (min) | epochs | minutes | best checkpoint | val NDCG@10 | "
              "full HR@10 | full NDCG@10 | sampled HR@10 | sampled NDCG@10 | file |",
              "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    def cell(r: dict, key: str, split: str = "test") -> str:
        return f"{r[split][key]:.4f}" if key in r.get(split, {}) else "–"

    for name, runs in by_config.items():
        for r in runs:
            budget = f"{r['budget_minutes']:g}" if r.get("budget_minutes") is not None else "–"
            lines.append(f"| {name} | {r['seed']} | {budget} | {r['epochs']} | {r['minutes']:.0f} | "
                         f"{r.get('best_epoch_checkpoint', '')} | {cell(r, 'ndcg@10', 'val')} | {cell(r, 'hr@10')} | "
                         f"{cell(r, 'ndcg@10')} | {cell(r, 'sampled/hr@10')} | {cell(r, 'sampled/ndcg@10')} | "
                         f"{r.get('file', '')} |")
    lines += time_to_quality(by_config)
    gaps = [r["val"]["ndcg@10"] / r["test"]["ndcg@10"] - 1 for r in rows
            if r.get("val", {}).get("ndcg@10") and r.get("test", {}).get("ndcg@10")]
    if gaps:
        lines += ["", f"Validation NDCG@10 runs {100 * statistics.median(gaps):.0f}% above test (median over the "
                  f"{len(gaps)} runs): the test item is the harder one on these files."]
    return "\n".join(lines)


MARKS = (5, 10, 20, 30)  # minutes of training at which the time-to-quality table reads each curve


def best_by(curve: list[dict], minutes: float) -> float | None:
    """The best validation NDCG@10 a run had reached after ``minutes`` of training (None: no validation yet)."""
    seen = [p["val_ndcg@10"] for p in curve if p["seconds"] <= 60 * minutes]
    return max(seen) if seen else None


def time_to_quality(by_config: dict[str, list[dict]]) -> list[str]:
    """The recipes' validation curves read at fixed training times (mean over the seeds that got there)."""
    shown = {c: runs for c, runs in by_config.items() if any(r.get("curve") for r in runs)}
    if not shown:
        return []
    lines = ["", "Time to quality: the best validation NDCG@10 (full ranking) after so many minutes of training, "
             "evaluation time excluded (`TrainingClock`), mean over the seeds with a validation by then; "
             "`time_to_quality.png` draws the curves.", "",
             "| config | seeds | " + " | ".join(f"{m} min" for m in MARKS) + " | training minutes in all |",
             "|---|---|" + "---:|" * (len(MARKS) + 1)]
    for name, runs in shown.items():
        cells = []
        for m in MARKS:
            values = [v for r in runs if (v := best_by(r.get("curve", []), m)) is not None]
            cells.append(f"{statistics.mean(values):.4f}" if values else "–")
        train = max(r.get("train_seconds", 0) for r in runs) / 60
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {train:.0f} |")
    return lines


def plot_curves(rows: list[dict], path: Path) -> Path | None:
    """One panel per data file: every run's validation NDCG@10 against its training minutes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("curve"):
            groups.setdefault(r.get("base_config", r["config"]), []).append(r)
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.8), squeeze=False)
    for ax, (base, runs) in zip(axes[0], groups.items()):
        colours: dict[str, str] = {}
        for r in runs:
            c = colours.setdefault(r["config"], f"C{len(colours)}")
            ax.plot([p["seconds"] / 60 for p in r["curve"]], [p["val_ndcg@10"] for p in r["curve"]], color=c,
                    lw=1.2, label=r["config"] if sum(q["config"] == r["config"] for q in runs[: runs.index(r) + 1]) == 1 else None)
        ax.set_title(base, fontsize=9)
        ax.set_xlabel("training minutes (evaluation excluded)")
        ax.set_ylabel("validation NDCG@10 (full ranking)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(PUBLISHED), help=f"configs or variants ({', '.join(VARIANTS)})")
    p.add_argument("--minutes", type=float, default=30.0, help="training budget per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="accuracy")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra overrides for every run (e.g. trainer.max_epochs=30), recorded in each row")
    p.add_argument("--merge", nargs="+", default=None, metavar="NAME",
                   help="train nothing: combine the runs of these result files (e.g. runs made in parallel)")
    args = p.parse_args(argv)
    if args.merge:
        # A later file's run of the same config and seed replaces an earlier one (a rerun supersedes it).
        merged: dict[tuple[str, int], dict] = {}
        for name in args.merge:
            for r in json.loads((args.out / f"{name}.json").read_text())["runs"]:
                merged.pop((r["config"], r["seed"]), None)
                merged[(r["config"], r["seed"])] = {**r, "file": r.get("file") or name}
        rows = list(merged.values())
        text = table(rows)
        write(args.name, {"runs": rows}, text, args.out)
        plot_curves(rows, args.out / "time_to_quality.png")
        print(text)
        return rows
    rows = []
    previous = args.out / f"{args.name}.json"
    if previous.exists():  # keep results of configs not rerun now
        rows = [r for r in json.loads(previous.read_text()).get("runs", []) if r["config"] not in args.configs]
    for name in args.configs:
        for seed in args.seeds:
            r = run_one(name, args.minutes, seed, args.out, [f"--{kv}" for kv in args.set])
            if r is not None:
                rows.append({**r, "file": args.name})
    text = table(rows)
    write(args.name, {"runs": rows}, text, args.out)
    print(text)
    return rows


if __name__ == "__main__":
    main()
