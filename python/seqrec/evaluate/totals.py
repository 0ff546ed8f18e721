"""Sums of per-user metrics over an evaluation pass, reduced across data-parallel ranks."""

from __future__ import annotations

from typing import Any, Callable

import torch


class MetricTotals:
    """Running sums of per-user metric values and the number of users, turned into means at the end.

    Under data parallelism each rank sums its own users; ``means(reduce)`` sums the totals and the counts
    over ranks before dividing, so the metrics equal one process's over all users.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, torch.Tensor], prefix: str = "") -> None:
        for name, v in values.items():
            key = f"{prefix}{name}"
            self.sums[key] = self.sums.get(key, 0.0) + v.sum().double()

    def add_users(self, n: int) -> None:
        self.count += n

    def means(self, reduce_sum: Callable[[torch.Tensor], Any] | None = None,
              device: torch.device | None = None) -> tuple[dict[str, float], int]:
        """(metric means, users counted); ``reduce_sum`` sums a float64 tensor over ranks (None: one process)."""
        names = sorted(self.sums)
        totals = [float(self.sums[n]) for n in names]
        count = self.count
        if reduce_sum is not None:
            local = torch.tensor([*totals, count], dtype=torch.float64, device=device)
            summed = reduce_sum(local).tolist()
            totals, count = summed[:-1], int(round(summed[-1]))
        if count == 0:
            return {}, 0
        return {name: total / count for name, total in zip(names, totals)}, count
