"""Per-user test results and what is computed from them: intervals, beyond-accuracy metrics, slices, comparisons.

A test run keeps one row per user (``test_per_user.parquet`` beside the checkpoints): the user, their history
length, the target and its training popularity, every per-user metric of the model and of the popularity
baseline, and both top-k lists. Everything here works from those rows, so two runs can be compared on the
same users long after they finished (``seqrec compare RUN_A RUN_B``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from seqrec.evaluate.beyond_accuracy import HEAD_SHARE, beyond_accuracy, head_items, withheld_exposure
from seqrec.evaluate.uncertainty import bootstrap_ci, paired_comparison
from seqrec.files import write_atomically

PER_USER = "test_per_user.parquet"
COLD_ITEMS = "cold_items.npy"  # dense ids withheld from training (cold-start split), beside the per-user rows
NEW_ITEM_BASELINES = ("feature_knn/", "feature_popularity/")  # the cold-start baselines (evaluate.cold_baselines)


def write_per_user(columns: dict[str, np.ndarray], folder: str | os.PathLike[str]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = {}
    for name, values in columns.items():
        if values.ndim == 2:  # top-k lists
            flat = pa.array(values.reshape(-1))
            table[name] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        else:
            table[name] = pa.array(values.tolist() if values.dtype == object else values)
    return write_atomically(Path(folder) / PER_USER, lambda tmp: pq.write_table(pa.table(table), tmp))


def read_per_user(folder: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    path = Path(folder) / PER_USER
    if not path.exists():
        raise FileNotFoundError(f"{path}: no per-user test results (run `seqrec test` or a fit with test_after_fit)")
    table = pq.read_table(path)
    out = {}
    for name in table.column_names:
        col = table.column(name)
        out[name] = np.stack(col.to_numpy(zero_copy_only=False)) if name.startswith("top") else col.to_numpy()
    return out


def slices(values: np.ndarray, groups: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    return [{"group": label, "users": int((groups == g).sum()),
             "mean": float(values[groups == g].mean()) if (groups == g).any() else float("nan")}
            for g, label in enumerate(labels)]


def summarize(rows: dict[str, np.ndarray], counts: np.ndarray, ks: list[int], seed: int = 0,
              cold_items: np.ndarray | None = None) -> dict[str, Any]:
    """Intervals for every per-user metric, beyond-accuracy metrics of both top-k lists, and slices.

    ``counts`` are training interactions per dense item (index 0 padding); the top-k lists hold dense ids.
    With a cold-start split (rows with ``cold_target``) also the warm/cold slice and the model's margin over
    each new-item baseline on the cold targets (``cold_start``); with ``cold_items`` (the withheld dense ids)
    the lists' exposure of those items.
    """
    metric_names = [n for n in rows if "@" in n and not n.startswith("top")]
    intervals = {n: vars(bootstrap_ci(rows[n], seed=seed)) for n in metric_names}
    k = max(ks)
    beyond = {"model": beyond_accuracy(rows["top_model"][:, :k], counts, rows["target"]),
              "popularity": beyond_accuracy(rows["top_popularity"][:, :k], counts, rows["target"])}
    # Slices: history-length quartiles and whether the target is a head (top 20%) or long-tail item.
    lengths = rows["history_length"]
    edges = np.unique(np.quantile(lengths, [0.25, 0.5, 0.75]))
    edges = edges[edges > lengths.min()]  # a quartile at the minimum would make an empty first group
    length_group = np.searchsorted(edges, lengths, side="right")
    # searchsorted(side="right"): group g holds lengths in [edge g-1, edge g), the last one up to the maximum.
    starts = [int(lengths.min()), *[int(e) for e in edges]]
    stops = [int(e) - 1 for e in edges] + [int(lengths.max())]
    length_labels = [f"{lo}-{hi}" for lo, hi in zip(starts, stops)]
    head = head_items(counts)[rows["target"]]
    key = f"ndcg@{k}"
    by = {
        "history_length": {name: slices(rows[name], length_group, length_labels) for name in (key, f"popularity/{key}")},
        "target_popularity": {name: slices(rows[name], (~head).astype(int), [f"head (top {HEAD_SHARE:.0%})", "long tail"])
                              for name in (key, f"popularity/{key}")},
    }
    out: dict[str, Any] = {"intervals": intervals, "beyond_accuracy": beyond, "slices": by}
    if cold_items is not None:
        for name in ("model", "popularity"):
            beyond[name].update(withheld_exposure(rows[f"top_{name}"][:, :k], cold_items))
    if "cold_target" in rows:
        cold = rows["cold_target"].astype(bool)
        names = [key, f"popularity/{key}"] + [f"{p}{key}" for p in NEW_ITEM_BASELINES if f"{p}{key}" in rows]
        by["target_cold"] = {name: slices(rows[name], cold.astype(int), ["warm", "cold (withheld)"]) for name in names}
        out["cold_start"] = cold_margins(rows, cold, k, seed)
    return out


def cold_margins(rows: dict[str, np.ndarray], cold: np.ndarray, k: int, seed: int = 0) -> dict[str, Any]:
    """On the users whose target is a cold item: the model against each new-item baseline, paired by user
    (the model minus the baseline: bootstrap interval and sign-flip p-value), NDCG@k and HR@k."""
    out: dict[str, Any] = {"users": int(cold.sum()), "margins": {}}
    if not cold.any():
        return out
    for prefix in NEW_ITEM_BASELINES:
        for metric in (f"ndcg@{k}", f"hr@{k}"):
            if f"{prefix}{metric}" not in rows:
                continue
            res = paired_comparison(rows[f"{prefix}{metric}"][cold], rows[metric][cold], seed=seed)
            out["margins"][f"{prefix}{metric}"] = {
                "baseline": res.a, "model": res.b, "difference": vars(res.difference), "p_value": res.p_value,
                "ratio": res.b / res.a if res.a > 0 else float("inf")}
    return out


def format_summary(summary: dict[str, Any], k: int) -> str:
    lines = [f"  95% bootstrap intervals over users (ndcg@{k}, hr@{k}):"]
    for name in (f"ndcg@{k}", f"hr@{k}", f"popularity/ndcg@{k}"):
        if name in summary["intervals"]:
            iv = summary["intervals"][name]
            lines.append(f"    {name:<22}{iv['mean']:.4f} [{iv['low']:.4f}, {iv['high']:.4f}]")
    lines.append(f"  beyond accuracy of the top-{k} lists:")
    lines.append(f"    {'':<22}{'model':>10}{'popularity':>12}")
    model, pop = summary["beyond_accuracy"]["model"], summary["beyond_accuracy"]["popularity"]
    for name in ("coverage", "avg_popularity", "consumed_popularity", "popularity_ratio", "novelty", "gini", "long_tail"):
        lines.append(f"    {name:<22}{model[name]:>10.4g}{pop[name]:>12.4g}")
    for name in ("withheld_share", "withheld_coverage"):
        if name in model:
            lines.append(f"    {name:<22}{model[name]:>10.4g}{pop[name]:>12.4g}")
    lines.append(f"  ndcg@{k} by history length (quartiles) and by target popularity:")
    for axis, groups in summary["slices"].items():
        for group in groups[f"ndcg@{k}"]:
            lines.append(f"    {axis:<18}{group['group']:<16}{group['users']:>7} users  {group['mean']:.4f}")
    cold = summary.get("cold_start")
    if cold and cold["margins"]:
        lines.append(f"  cold targets ({cold['users']} users): model minus each new-item baseline, paired by user:")
        for name, m in cold["margins"].items():
            d = m["difference"]
            lines.append(f"    {name:<30}{m['model']:.4f} vs {m['baseline']:.4f}  {d['mean']:+.4f} "
                         f"[{d['low']:+.4f}, {d['high']:+.4f}]  p {format_p(m['p_value'])}")
    return "\n".join(lines)


def _dataset_of(run: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The dataset a run was tested on (from its test_results.json), or None for runs that did not record it."""
    path = Path(run) / "test_results.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("dataset")


def compare(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str], resamples: int = 1000) -> dict[str, Any]:
    """Paired comparison of two test runs on the users both evaluated (B minus A, per metric)."""
    a, b = read_per_user(run_a), read_per_user(run_b)
    da, db = _dataset_of(run_a), _dataset_of(run_b)
    if da is not None and db is not None and da != db:
        raise ValueError(f"{run_a} and {run_b} were tested on different data ({da} vs {db}): their users are "
                         "not the same people, so a paired comparison means nothing")
    common, ia, ib = np.intersect1d(a["user"], b["user"], return_indices=True)
    if common.size == 0:
        raise ValueError(f"{run_a} and {run_b} share no test users")
    names = sorted(n for n in a if "@" in n and not n.startswith("top") and n in b)
    out = {"users": int(common.size), "only_a": int(a["user"].size - common.size),
           "only_b": int(b["user"].size - common.size), "metrics": {}}
    for name in names:
        res = paired_comparison(a[name][ia], b[name][ib], resamples=resamples)
        out["metrics"][name] = {"a": res.a, "b": res.b, "difference": vars(res.difference), "p_value": res.p_value}
    return out


def format_p(p: float) -> str:
    """A p-value as the tables print it: three decimals, or ``< 0.001`` below that (``0.000999`` would read as
    more precise than a permutation test of 1,000 resamples, whose smallest p-value is 1/1001, can be)."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def format_comparison(result: dict[str, Any], run_a: str, run_b: str) -> str:
    lines = [f"B = {run_b} vs A = {run_a}: {result['users']} users in both "
             f"({result['only_a']} only in A, {result['only_b']} only in B); paired bootstrap interval of B - A, "
             "sign-flip permutation p-value", "",
             "| metric | A | B | B - A | 95% interval | p |", "|---|---:|---:|---:|---|---:|"]
    for name, m in result["metrics"].items():
        d = m["difference"]
        lines.append(f"| {name} | {m['a']:.4f} | {m['b']:.4f} | {d['mean']:+.4f} | [{d['low']:+.4f}, {d['high']:+.4f}] | "
                     f"{format_p(m['p_value'])} |")
    return "\n".join(lines)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=float)


def report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> list[Path]:
    """``report.md`` + ``report.json`` + PNGs for a test run: metrics with intervals, beyond-accuracy metrics,
    NDCG by history length and by target popularity, and the popularity of what is recommended vs consumed."""
    from seqrec.evaluate.plots import _pyplot

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows = read_per_user(run_dir)
    counts_path = run_dir / "train_item_counts.npy"
    if not counts_path.exists():
        raise FileNotFoundError(f"{counts_path}: missing (written by seqrec test together with {PER_USER})")
    counts = np.load(counts_path)
    k = rows["top_model"].shape[1]
    cold_path = run_dir / COLD_ITEMS
    summary = summarize(rows, counts, [k], cold_items=np.load(cold_path) if cold_path.exists() else None)
    results_path = run_dir / "test_results.json"
    metrics = json.loads(results_path.read_text())["metrics"] if results_path.exists() else {}
    plt = _pyplot()
    paths = []

    key = f"ndcg@{k}"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, axis in zip(axes, ("history_length", "target_popularity")):
        groups = summary["slices"][axis]
        labels = [g["group"] for g in groups[key]]
        x = np.arange(len(labels))
        ax.bar(x - 0.2, [g["mean"] for g in groups[key]], 0.4, label="model", color="#3b75af")
        ax.bar(x + 0.2, [g["mean"] for g in groups[f"popularity/{key}"]], 0.4, label="popularity", color="#cc7a3b")
        ax.set_xticks(x, [f"{lab}\n({g['users']})" for lab, g in zip(labels, groups[key])], fontsize=8)
        ax.set_title(f"{key} by {axis.replace('_', ' ')}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "ndcg_by_slice.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.logspace(0, np.log10(max(counts.max(), 2)), 30)
    for values, label, color in ((counts[rows["target"]], "consumed (test targets)", "#555555"),
                                 (counts[rows["top_model"].ravel()], f"recommended by the model (top-{k})", "#3b75af"),
                                 (counts[rows["top_popularity"].ravel()], "recommended by popularity", "#cc7a3b")):
        # Shares per bin (not densities, which log-width bins would distort).
        ax.hist(np.maximum(values, 1), bins=bins, histtype="step", weights=np.full(values.size, 1 / values.size),
                label=label, color=color, lw=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("training interactions of the item (popularity)")
    ax.set_ylabel("share of items")
    ax.set_title("popularity of recommended vs consumed items")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "popularity_recommended_vs_consumed.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    record = {"run": str(run_dir), "users": int(rows["user"].size), "metrics": metrics, **summary}
    (out / "report.json").write_text(dumps(record) + "\n")
    lines = [f"# Evaluation report: {run_dir}", "", f"{rows['user'].size} test users; 95% percentile bootstrap "
             "intervals over users (1,000 resamples).", "", "| metric | value | 95% interval |", "|---|---:|---|"]
    for name, iv in summary["intervals"].items():
        lines.append(f"| {name} | {iv['mean']:.4f} | [{iv['low']:.4f}, {iv['high']:.4f}] |")
    model, pop = summary["beyond_accuracy"]["model"], summary["beyond_accuracy"]["popularity"]
    lines += ["", f"## Beyond accuracy (top-{k} lists)", "", "| metric | model | popularity |", "|---|---:|---:|"]
    lines += [f"| {n} | {model[n]:.4g} | {pop[n]:.4g} |" for n in model]
    lines += ["", f"## {key} by slice", "", "| slice | group | users | model | popularity |", "|---|---|---:|---:|---:|"]
    for axis, groups in summary["slices"].items():
        for g, p in zip(groups[key], groups[f"popularity/{key}"]):
            lines.append(f"| {axis} | {g['group']} | {g['users']} | {g['mean']:.4f} | {p['mean']:.4f} |")
    cold = summary.get("cold_start")
    if cold and cold["margins"]:
        lines += ["", f"## Cold targets ({cold['users']} users whose target was withheld from training)", "",
                  "The model minus each new-item baseline on the same users: bootstrap interval of the mean "
                  "difference, sign-flip p-value.", "",
                  "| metric | model | baseline | difference | 95% interval | p |", "|---|---:|---:|---:|---|---:|"]
        for name, m in cold["margins"].items():
            d = m["difference"]
            lines.append(f"| {name} | {m['model']:.4f} | {m['baseline']:.4f} | {d['mean']:+.4f} | "
                         f"[{d['low']:+.4f}, {d['high']:+.4f}] | {format_p(m['p_value'])} |")
    lines += ["", "![ndcg by slice](ndcg_by_slice.png)", "",
              "![popularity of recommended vs consumed](popularity_recommended_vs_consumed.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return [out / "report.md", out / "report.json", *paths]
