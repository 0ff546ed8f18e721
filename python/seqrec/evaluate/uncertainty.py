"""How sure a reported number is: bootstrap confidence intervals over users, paired comparisons of two runs.

Both resample in whole arrays, not a Python loop per resample. Per-user ranking metrics take few distinct
values (HR@10 two, NDCG@10 and MRR@10 eleven), and a resample's mean depends only on how often each distinct
value is drawn: the bootstrap then draws those counts (a multinomial over the distinct values) and the
sign-flip test how many of each value keep their sign (a binomial per value), costing the number of distinct
values per resample instead of the number of users. Values with many distinct entries fall back to resampling
users with index arrays of a bounded number of cells at a time. A seed fixes every result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GROUPED_MAX_VALUES = 4096  # more distinct values than this: resample users directly
CHUNK_CELLS = 1 << 20  # cells of one chunk of index or sign arrays (8 MiB of int64: larger ones only miss the cache)


@dataclass(frozen=True)
class Interval:
    """A mean with its (1 - alpha) bootstrap percentile interval."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}]"


def resampled_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples,) means of ``values`` resampled with replacement (each resample as many draws as values)."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    distinct, counts = np.unique(x, return_counts=True)
    if distinct.size <= GROUPED_MAX_VALUES:
        # Drawing n users with replacement draws each distinct value Multinomial(n, counts / n) times.
        draws = rng.multinomial(n, counts / n, size=resamples)  # (R, V)
        return draws @ distinct / n
    means = np.empty(resamples)
    rows = max(1, CHUNK_CELLS // n)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        means[start:stop] = x[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)  # (C, n) -> (C,)
    return means


def bootstrap_ci(values: np.ndarray, resamples: int = 1000, alpha: float = 0.05, seed: int = 0) -> Interval:
    """Percentile bootstrap over users of the mean of per-user ``values``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to bootstrap")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    means = resampled_means(x, resamples, np.random.default_rng(seed))
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(x.mean()), float(low), float(high))


def sign_flip_sums(d: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples,) sums of ``d`` with every entry's sign flipped with probability 1/2, independently."""
    magnitudes, counts = np.unique(np.abs(d[d != 0]), return_counts=True)  # zeros never change a sum
    if magnitudes.size <= GROUPED_MAX_VALUES:
        kept = rng.binomial(counts, 0.5, size=(resamples, magnitudes.size))  # (R, V) entries of each value kept +
        return (2 * kept - counts) @ magnitudes
    sums = np.empty(resamples)
    rows = max(1, CHUNK_CELLS // d.size)
    for start in range(0, resamples, rows):
        stop = min(start + rows, resamples)
        signs = rng.integers(0, 2, size=(stop - start, d.size), dtype=np.int8) * 2 - 1  # (C, n)
        sums[start:stop] = signs @ d
    return sums


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
    needs no distributional assumption about metrics that are mostly 0 for one user. With ``resamples``
    flips the smallest possible p-value is ``1 / (resamples + 1)``.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"need two aligned 1-D arrays of per-user values, got {x.shape} and {y.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    d = y - x
    observed = abs(d.sum())
    flipped = np.abs(sign_flip_sums(d, resamples, np.random.default_rng(seed)))
    # As extreme as observed, up to rounding: the unflipped sum, added in another order, must count.
    extreme = int((flipped >= observed * (1 - 1e-9) - 1e-12).sum())
    p = (extreme + 1) / (resamples + 1)
    return PairedComparison(float(x.mean()), float(y.mean()), bootstrap_ci(d, resamples, alpha, seed), float(p), d.size)
