"""Small statistics shared by every evaluation (patches, camera recordings, photo scoring)."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) for n = 0.
    The bounds always bracket the observed rate, also at 0/n and n/n (no round-off past it)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, min(p, centre - half))
    hi = 1.0 if successes == n else min(1.0, max(p, centre + half))
    return lo, hi


def median_ratio_interval(a, b, confidence: float = 0.90, seed: int = 0) -> tuple[float, float, float]:
    """median(a) / median(b) and its percentile-bootstrap interval (two independent samples, scipy), as
    (ratio, low, high). At the default 90%, `low` is a one-sided 95% lower bound: a ratio whose low end stays
    above 1 means `a` is measurably larger than `b`."""
    import numpy as np
    from scipy.stats import bootstrap

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("median_ratio_interval needs at least two values in each sample")
    res = bootstrap((a, b), lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis),
                    vectorized=True, paired=False, confidence_level=confidence, method="percentile",
                    n_resamples=4000, rng=np.random.default_rng(seed))
    return float(np.median(a) / np.median(b)), float(res.confidence_interval.low), float(res.confidence_interval.high)
