"""Two groups compared by a summary statistic, with percentile-bootstrap CIs.

Used for the batch-norm comparisons (Figs. 5b, 6) and zero- vs mean-ablation (Fig. A1).
The rows passed in are the unit of replication (e.g. (network, ordering) AUCs, or
units); the two groups are resampled independently.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .stats import bootstrap_ci


def summary_ci(values, statistic: Callable = np.median, n_boot: int = 1000, seed: int = 0) -> dict:
    """``statistic(values)`` with a 95 % bootstrap CI over the values (a stats row dict)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0, "p": math.nan}
    lo, hi = bootstrap_ci(statistic, v, n_boot=n_boot, seed=seed) if len(v) > 1 else (math.nan, math.nan)
    return {"value": float(statistic(v)), "ci_low": lo, "ci_high": hi, "n": len(v), "p": math.nan}


def difference_ci(a, b, statistic: Callable = np.mean, n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> dict:
    """statistic(a) - statistic(b), with a CI that resamples a and b independently.

    ``p`` is the two-sided bootstrap p value: twice the smaller fraction of replicates
    on either side of zero (floored at 1 / n_boot).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a) + len(b)
    if len(a) == 0 or len(b) == 0:
        return {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n, "p": math.nan}
    value = float(statistic(a) - statistic(b))
    rng = np.random.default_rng(seed)
    reps = np.array([statistic(a[rng.integers(0, len(a), len(a))]) - statistic(b[rng.integers(0, len(b), len(b))])
                     for _ in range(n_boot)], dtype=float)
    alpha = (1 - level) / 2
    lo, hi = float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))
    p = max(1.0 / n_boot, 2 * min(np.mean(reps <= 0), np.mean(reps >= 0)))
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": n, "p": float(min(1.0, p))}
