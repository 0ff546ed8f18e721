"""Shared helpers of the benchmarks: timing by medians, machine description, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).parent / "results"


def time_it(fn: Callable[[int], Any], repeats: int, inner: int) -> dict[str, float]:
    """Seconds per call of ``fn(i)``: each repeat times ``inner`` calls; returns median, min and max."""
    fn(0)  # warm-up
    per_call = []
    for r in range(repeats):
        start = time.perf_counter()
        for i in range(inner):
            fn(r * inner + i + 1)
        per_call.append((time.perf_counter() - start) / inner)
    return {"median": statistics.median(per_call), "min": min(per_call), "max": max(per_call)}


def machine() -> dict[str, Any]:
    import numpy
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "git_commit": commit,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write(name: str, payload: dict[str, Any], table: str, out_dir: Path = RESULTS) -> Path:
    """Writes ``name.json`` and ``name.md`` (the table, with the machine line) and returns the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), **payload}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    m = payload["machine"]
    header = f"_{m['time']}, commit {m['git_commit']}, {m['cores']} cores, torch {m['torch']}_\n\n"
    (out_dir / f"{name}.md").write_text(header + table + "\n")
    return path


def mean_sd(values: list[float]) -> str:
    """How result tables show several seeds: ``mean ± standard deviation`` (one value as is, none as a dash)."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
