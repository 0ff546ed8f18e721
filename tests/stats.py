"""Statistical helpers shared by the sampler tests."""

import numpy as np


def chi2_critical(df: int, z: float = 3.09) -> float:
    """Upper critical value of chi-square(df) at one-sided normal quantile z (3.09: p = 0.001), by the
    Wilson-Hilferty approximation, accurate to about 1% for df >= 10."""
    a = 2.0 / (9.0 * df)
    return df * (1 - a + z * np.sqrt(a)) ** 3


def chi2(observed: np.ndarray, expected_p: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic of ``observed`` counts against probabilities ``expected_p`` (any scale), and its
    degrees of freedom; fails if anything was observed where the expectation is zero."""
    expected = expected_p / expected_p.sum() * observed.sum()
    keep = expected > 0
    assert observed[~keep].sum() == 0, "draws where the reference gives probability 0"
    return float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()), int(keep.sum() - 1)
