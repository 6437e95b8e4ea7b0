"""Correlations with p values and percentile-bootstrap confidence intervals.

The unit of resampling is whatever is passed: units for selectivity-vs-impact,
networks for AUC-vs-generalization, orderings for curve summaries. Bootstrap
resamples are drawn with a seeded generator, so results are reproducible.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats


def bootstrap_ci(statistic: Callable[..., float], *arrays, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(*arrays)``, resampling rows jointly."""
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = statistic(*[a[idx] for a in arrays])
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(vals, alpha)), float(np.quantile(vals, 1 - alpha))


def _spearman(x, y) -> float:
    if len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def spearman(x, y, n_boot: int = 1000, seed: int = 0) -> dict:
    """Spearman rank correlation with its p value and a 95 % bootstrap CI."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return {"value": float("nan"), "p": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": len(x)}
    res = stats.spearmanr(x, y)
    lo, hi = bootstrap_ci(_spearman, x, y, n_boot=n_boot, seed=seed)
    return {"value": float(res.statistic), "p": float(res.pvalue), "ci_low": lo, "ci_high": hi, "n": len(x)}


def mean_ci(values, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean with a 95 % bootstrap CI."""
    v = np.asarray(values, float)
    lo, hi = bootstrap_ci(np.mean, v, n_boot=n_boot, seed=seed) if len(v) > 1 else (float("nan"), float("nan"))
    return {"value": float(v.mean()) if len(v) else float("nan"), "p": float("nan"), "ci_low": lo, "ci_high": hi, "n": len(v)}


def stat_row(statistic: str, result: dict) -> dict:
    """One row of a ``results/stats/<family>.csv`` table."""
    return {"statistic": statistic, "value": result["value"], "ci_low": result["ci_low"],
            "ci_high": result["ci_high"], "n": result["n"], "p": result.get("p", float("nan"))}


def by_fraction_stats(table, value: str, name: str, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Stats rows for a value observed per corrupted-label fraction (Figs. 1 and 2):
    Spearman's r of ``value`` with ``corrupted_fraction`` over the rows of ``table``
    (orderings or noise repeats, the resampling unit), then the mean per fraction."""
    rows = [stat_row(f"spearman_{name}_vs_corrupted_fraction",
                     spearman(table["corrupted_fraction"], table[value], n_boot, seed))]
    for f, g in table.groupby("corrupted_fraction"):
        rows.append(stat_row(f"{name}_fraction_{f:g}", mean_ci(g[value], n_boot, seed)))
    return rows
