"""Pictures of a dataset and of a training run, written as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from seqrec.data.interactions import Interactions


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def dataset_summary(data: Interactions) -> dict[str, Any]:
    """Users, items, interactions, sequence-length quantiles and how concentrated item popularity is."""
    lengths = data.lengths
    counts = np.sort(data.item_counts()[1:])[::-1].astype(float)
    total = max(counts.sum(), 1.0)
    n = counts.size
    # Gini of item popularity: 0 when every item is equally popular, near 1 when a few items take all.
    ascending = counts[::-1]
    gini = float((2 * np.arange(1, n + 1) - n - 1).dot(ascending) / (n * total)) if n else 0.0
    q = np.percentile(lengths, [10, 90, 99]) if lengths.size else np.zeros(3)
    base = data.stats()
    return {
        "users": base["users"],
        "items": base["items"],
        "interactions": base["interactions"],
        "density": base["density"],
        "length_min": int(lengths.min()) if lengths.size else 0,
        "length_p10": float(q[0]),
        "length_median": base["median_length"],
        "length_p90": float(q[1]),
        "length_p99": float(q[2]),
        "length_max": base["max_length"],
        "top1pct_items_share": base["top1pct_item_share"],
        "top10pct_items_share": float(counts[: max(1, n // 10)].sum() / total),
        "items_never_seen": int((counts == 0).sum()),
        "popularity_gini": gini,
    }


def plot_dataset(data: Interactions, name: str, out_dir: Path) -> list[Path]:
    """Sequence-length histogram and item popularity by rank (log-log); returns the PNG paths."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    lengths = data.lengths
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.unique(np.logspace(0, np.log10(max(lengths.max(), 2)), 40).astype(int))
    ax.hist(lengths, bins=bins, color="#3b75af")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("interactions per user (sequence length)")
    ax.set_ylabel("users")
    ax.set_title(f"{name}: sequence lengths (median {np.median(lengths):.0f})")
    fig.tight_layout()
    hist_path = out_dir / "sequence_lengths.png"
    fig.savefig(hist_path, dpi=120)
    plt.close(fig)

    counts = np.sort(data.item_counts()[1:])[::-1]
    counts = counts[counts > 0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(np.arange(1, counts.size + 1), counts, color="#c44e52")
    ax.set_xlabel("item rank by popularity")
    ax.set_ylabel("interactions")
    ax.set_title(f"{name}: item popularity ({counts.size:,} items with interactions)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    pop_path = out_dir / "item_popularity.png"
    fig.savefig(pop_path, dpi=120)
    plt.close(fig)
    return [hist_path, pop_path]


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """Rows of logged metrics from a run folder: a Lightning CSV log (metrics.csv anywhere below it) or an
    offline W&B run (a folder holding run-*.wandb)."""
    csvs = sorted(run_dir.rglob("metrics.csv"))
    if csvs:
        rows = []
        with open(csvs[-1]) as f:
            for row in csv.DictReader(f):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
        return rows
    wandb_runs = sorted(run_dir.glob("run-*.wandb")) or sorted(run_dir.rglob("offline-run-*/run-*.wandb"))
    if wandb_runs:
        from seqrec.train.tracking import read_offline_run

        history = read_offline_run(wandb_runs[-1].parent)["history"]
        return [{k: float(v) for k, v in row.items() if isinstance(v, (int, float))} for row in history]
    raise FileNotFoundError(f"{run_dir}: no metrics.csv and no offline W&B run below it")


def plot_run(run_dir: Path, out_dir: Path) -> list[Path]:
    """Training loss by step and validation metrics by epoch, as PNGs in ``out_dir``."""
    plt = _pyplot()
    rows = read_metrics(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    loss = [(r["step"] if "step" in r else r.get("trainer/global_step", i), r["train/loss"])
            for i, r in enumerate(rows) if "train/loss" in r]
    if loss:
        fig, ax = plt.subplots(figsize=(6, 4))
        steps, values = zip(*loss)
        ax.plot(steps, values, color="#3b75af", lw=1)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title("training loss")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        paths.append(out_dir / "train_loss.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    panels = [("full ranking", "val/"), ("sampled protocol", "val/sampled/")]
    panels = [(t, p) for t, p in panels if any(_metric_of(k, p) for r in rows for k in r)]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
        for ax, (title, prefix) in zip(axes[0], panels):
            names = sorted({k for r in rows for k in r if _metric_of(k, prefix)})
            for i, name in enumerate(names):
                color = f"C{i}"
                points = [(r["epoch"], r[name]) for r in rows if name in r and "epoch" in r]
                if points:
                    epochs, values = zip(*points)
                    ax.plot(np.array(epochs) + 1, values, marker="o", ms=3, color=color, label=name[len(prefix):])
                baseline = "val/popularity/" + name[len("val/"):]
                pop = [r[baseline] for r in rows if baseline in r]
                if pop:
                    ax.axhline(pop[-1], ls="--", lw=1, color=color, label=f"{name[len(prefix):]}, popularity")
            ax.set_xlabel("epoch")
            ax.set_title(f"validation, {title}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out_dir / "validation.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    if not paths:
        raise ValueError(f"{run_dir}: the run logged no train/loss and no val/ metrics to plot")
    return paths


def _metric_of(key: str, prefix: str) -> bool:
    """Whether ``key`` is a model metric directly under ``prefix`` (val/hr@10 for val/, not val/sampled/...)."""
    if not key.startswith(prefix) or "popularity" in key:
        return False
    return "/" not in key[len(prefix):]
