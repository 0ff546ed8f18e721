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
    return "\n".join(lines)
