"""How sure a reported number is: bootstrap confidence intervals over users, paired comparisons of two runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean with its (1 - alpha) bootstrap percentile interval."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}]"


def bootstrap_ci(values: np.ndarray, resamples: int = 1000, alpha: float = 0.05, seed: int = 0) -> Interval:
    """Percentile bootstrap over users of the mean of per-user ``values``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for r in range(resamples):  # resample indices in blocks: memory stays at one resample
        means[r] = x[rng.integers(0, x.size, size=x.size)].mean()
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(x.mean()), float(low), float(high))


@dataclass(frozen=True)
class PairedComparison:
    """B minus A on the same users: the mean difference, its bootstrap interval, and a two-sided p-value."""

    a: float
    b: float
    difference: Interval
    p_value: float
    users: int


def paired_comparison(
    a: np.ndarray, b: np.ndarray, resamples: int = 1000, alpha: float = 0.05, seed: int = 0
) -> PairedComparison:
    """Compares per-user values of two runs on the same users (aligned arrays).

    The interval is a bootstrap over users of the mean difference; the p-value comes from a sign-flip
    permutation test (under the null of no difference each user's difference is as likely negated), which
    needs no distributional assumption about metrics that are mostly 0 for one user.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"need two aligned 1-D arrays of per-user values, got {x.shape} and {y.shape}")
    d = y - x
    rng = np.random.default_rng(seed)
    observed = abs(d.mean())
    extreme = 0
    for _ in range(resamples):
        signs = rng.integers(0, 2, size=d.size) * 2 - 1
        extreme += abs((signs * d).mean()) >= observed - 1e-15
    p = (extreme + 1) / (resamples + 1)
    return PairedComparison(float(x.mean()), float(y.mean()), bootstrap_ci(d, resamples, alpha, seed), float(p), d.size)
