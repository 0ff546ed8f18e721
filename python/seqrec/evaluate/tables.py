"""Plain-text tables of evaluation results, model beside the popularity baseline."""

from __future__ import annotations

from typing import Any

from seqrec.evaluate.metrics import METRICS


def format_results(results: dict[str, float], ks: list[int], info: dict[str, Any]) -> str:
    """A table with one row per metric and columns model, popularity and their ratio, per protocol."""
    seen = "seen items excluded" if info.get("exclude_seen", True) else "seen items kept"
    protocols = [("", f"full ranking over {info.get('items', '?')} items, {seen}")]
    if any(name.startswith("sampled/") for name in results):
        protocols.append(
            ("sampled/", f"sampled: target vs {info.get('num_sampled')} {info.get('sampled')} negatives")
        )
    split = info.get("split", "leave_one_out").replace("_", "-")
    lines = [f"Test results on {info.get('dataset', '?')} ({info.get('users', '?')} users, {split} split)"]
    for prefix, title in protocols:
        lines.append(f"  {title}")
        lines.append(f"    {'metric':<10}{'model':>10}{'popularity':>12}{'ratio':>8}")
        for k in ks:
            for m in METRICS:
                name = f"{m}@{k}"
                model = results.get(prefix + name, float("nan"))
                pop = results.get("popularity/" + prefix + name, float("nan"))
                ratio = model / pop if pop > 0 else float("inf")
                lines.append(f"    {name:<10}{model:>10.4f}{pop:>12.4f}{ratio:>7.1f}x")
    if any(name.startswith("cold/") for name in results):
        share = results.get("cold/users", float("nan"))
        lines.append(f"  cold start: targets never in training ({share:.1%} of users) and the rest, full ranking")
        lines.append(f"    {'metric':<16}{'model':>10}{'popularity':>12}{'attr. pop.':>12}{'feature kNN':>13}")
        for part in ("warm", "cold"):
            for k in ks:
                name = f"ndcg@{k}"
                cells = [results.get(f"{p}{part}/{name}", float("nan"))
                         for p in ("", "popularity/", "feature_popularity/", "feature_knn/")]
                lines.append(f"    {part + '/' + name:<16}{cells[0]:>10.4f}{cells[1]:>12.4f}{cells[2]:>12.4f}"
                             f"{cells[3]:>13.4f}")
    return "\n".join(lines)
