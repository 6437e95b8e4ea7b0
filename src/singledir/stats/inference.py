"""The project's one statistics module: bootstrap CIs, Spearman, permutation tests and
group differences, used by the figure scripts and by :mod:`singledir.stats.claims`.

*Unit of replication.* Every function resamples the rows it is given, so the caller
decides the unit: units (one row per unit) for within-network claims such as
selectivity vs impact, **networks** for between-network claims (Figs. 1, 2, 3, 5b, 6,
A1): there the caller first averages ablation orderings or noise draws within each
network (:func:`network_means`) and passes one row per network. Every result dict
names its unit and its n in that unit.

*Permutation tests.* Between-network statistics also carry a permutation p value and
``p_min``, the smallest p the test can reach with this design (e.g. 2 + 2 networks:
2 / C(4, 2) = 1/3 two-sided). When ``p_min`` > 0.05 no outcome could be significant at
95 %, and the claims say so (at most *inconclusive*). Permutations are enumerated
exactly when there are at most :data:`EXACT_LIMIT` of them, otherwise drawn at random
(seeded).

Bootstrap resamples are drawn with a seeded generator; resamples whose statistic is
not finite are dropped.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sstats

EXACT_LIMIT = 50_000
NAN = float("nan")


# ---------------------------------------------------------------------------- bootstrap

def percentile_interval(replicates, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (non-finite ones dropped); (nan, nan) if none."""
    v = np.asarray(replicates, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return NAN, NAN
    alpha = (1 - level) / 2
    return float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))


def bootstrap_ci(statistic: Callable[..., float], *arrays, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, strata=None) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(*arrays)``, resampling rows jointly.

    ``strata`` (optional, one label per row) resamples rows within each stratum so every
    stratum keeps its size: two groups compared (each group resampled independently), or
    the units of each layer.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if n == 0:
        raise ValueError("bootstrap_ci: no rows to resample")
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = [np.arange(n)]
    else:
        labels = np.asarray(strata)
        if len(labels) != n:
            raise ValueError(f"bootstrap_ci: {len(labels)} stratum labels for {n} rows")
        groups = [np.flatnonzero(labels == s) for s in pd.unique(labels)]
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        reps[b] = statistic(*[a[idx] for a in arrays])
    return percentile_interval(reps, level)


def cluster_bootstrap_ci(statistic: Callable[..., float], *arrays, clusters, n_boot: int = 1000, seed: int = 0,
                         level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(*arrays)`` resampling whole clusters: each
    resample draws as many clusters as there are, with replacement, and keeps all rows of
    each drawn cluster (e.g. the repeats of one hyperparameter setting, which share it and are
    not independent draws of settings). One cluster per row is :func:`bootstrap_ci`."""
    arrays = [np.asarray(a) for a in arrays]
    labels = np.asarray(clusters)
    if len(labels) != len(arrays[0]):
        raise ValueError(f"cluster_bootstrap_ci: {len(labels)} cluster labels for {len(arrays[0])} rows")
    if len(labels) == 0:
        raise ValueError("cluster_bootstrap_ci: no rows to resample")
    groups = [np.flatnonzero(labels == c) for c in pd.unique(labels)]
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        reps[b] = statistic(*[a[idx] for a in arrays])
    return percentile_interval(reps, level)


def block_bootstrap_ci(statistic: Callable[..., float], *arrays, block: int | None = None, n_boot: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Moving-block bootstrap CI of ``statistic(*arrays)`` for rows in time order (snapshots
    of one training run), whose neighbours are correlated: each resample joins random runs
    of ``block`` consecutive rows (default ceil(n^(1/3)), the usual rate) up to n rows, so
    the dependence within a block is kept (Kuensch 1989). ``block = 1`` is the plain bootstrap."""
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if n == 0:
        raise ValueError("block_bootstrap_ci: no rows to resample")
    block = int(block or math.ceil(n ** (1 / 3)))
    if not 1 <= block <= n:
        raise ValueError(f"block_bootstrap_ci: block length {block} must be between 1 and the {n} rows")
    rng = np.random.default_rng(seed)
    n_blocks = math.ceil(n / block)
    offsets = np.arange(block)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        starts = rng.integers(0, n - block + 1, n_blocks)
        idx = (starts[:, None] + offsets[None, :]).ravel()[:n]
        reps[b] = statistic(*[a[idx] for a in arrays])
    return percentile_interval(reps, level)


def spearman_over_time(x, y, n_boot: int = 1000, seed: int = 0, unit: str = "snapshots") -> dict:
    """Spearman's r of two series over one training run (rows in time order), with a 95 %
    moving-block bootstrap CI (:func:`block_bootstrap_ci`): snapshots are autocorrelated, so
    resampling them as independent rows gives too narrow a CI. p: scipy's (not used by claims)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return result(NAN, n=len(x), unit=unit)
    r = spearman_r(x, y)
    ci = block_bootstrap_ci(spearman_r, x, y, n_boot=n_boot, seed=seed)
    p = float(sstats.spearmanr(x, y).pvalue) if np.isfinite(r) else NAN
    block = math.ceil(len(x) ** (1 / 3))
    return result(r, ci, len(x), p, unit=f"{unit} (blocks of {block})")


def result(value: float, ci: tuple[float, float] = (NAN, NAN), n: int = 0, p: float = NAN, p_min: float = NAN,
           unit: str = "") -> dict:
    """A statistic as the dict every function here returns (one stats-table row, see :func:`stat_row`)."""
    return {"value": float(value), "ci_low": float(ci[0]), "ci_high": float(ci[1]), "n": int(n), "p": float(p),
            "p_min": float(p_min), "unit": unit}


def mean_ci(values, n_boot: int = 1000, seed: int = 0, unit: str = "") -> dict:
    """Mean with a 95 % bootstrap CI over the values."""
    return summary_ci(values, np.mean, n_boot, seed, unit)


def summary_ci(values, statistic: Callable = np.median, n_boot: int = 1000, seed: int = 0, unit: str = "") -> dict:
    """``statistic(values)`` with a 95 % bootstrap CI over the values."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return result(NAN, unit=unit)
    ci = bootstrap_ci(statistic, v, n_boot=n_boot, seed=seed) if len(v) > 1 else (NAN, NAN)
    return result(statistic(v), ci, len(v), unit=unit)


# ---------------------------------------------------------------------------- Spearman

def spearman_r(x, y) -> float:
    """Spearman rank correlation (average ranks for ties); nan with < 3 rows or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return NAN
    return float(sstats.spearmanr(x, y).statistic)


def _rank_r_many(rx: np.ndarray, ry_perm: np.ndarray) -> np.ndarray:
    """Pearson r of ranks rx with each row of ry_perm (= Spearman r with average ranks)."""
    a = rx - rx.mean()
    b = ry_perm - ry_perm.mean(axis=1, keepdims=True)
    return (b @ a) / np.sqrt((a @ a) * (b * b).sum(axis=1))


def permutation_spearman(x, y, n_perm: int = 10000, seed: int = 0) -> tuple[float, float]:
    """Two-sided permutation p of Spearman's r (y permuted against x), and ``p_min``.

    Exact (all n! orders) when n! <= :data:`EXACT_LIMIT`, else ``n_perm`` random orders with
    p = (1 + #{|r*| >= |r|}) / (1 + n_perm). ``p_min`` is the p of the most extreme
    arrangement the data allow (exact designs), or 1 / (1 + n_perm).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    r = spearman_r(x, y)
    if not np.isfinite(r):
        return NAN, NAN
    rx, ry = sstats.rankdata(x), sstats.rankdata(y)
    eps = 1e-12
    if math.factorial(n) <= EXACT_LIMIT:
        perms = np.array(list(itertools.permutations(range(n))))
        rs = np.abs(_rank_r_many(rx, ry[perms]))
        return float(np.mean(rs >= abs(r) - eps)), float(np.mean(rs >= rs.max() - eps))
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, n)), axis=1)
    rs = np.abs(_rank_r_many(rx, ry[perms]))
    return float((1 + np.sum(rs >= abs(r) - eps)) / (1 + n_perm)), 1.0 / (1 + n_perm)


def spearman(x, y, n_boot: int = 1000, seed: int = 0, unit: str = "", permutation: bool = False) -> dict:
    """Spearman's r with a 95 % bootstrap CI over rows (the unit) and a p value.

    ``permutation``: p from :func:`permutation_spearman` (with ``p_min``), as used for
    between-network correlations with few networks; otherwise scipy's asymptotic p.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return result(NAN, n=len(x), unit=unit)
    r = spearman_r(x, y)
    ci = bootstrap_ci(spearman_r, x, y, n_boot=n_boot, seed=seed)
    if permutation:
        p, p_min = permutation_spearman(x, y, seed=seed)
    else:
        p, p_min = (float(sstats.spearmanr(x, y).pvalue) if np.isfinite(r) else NAN), NAN
    return result(r, ci, len(x), p, p_min, unit)


# ---------------------------------------------------------------------------- group differences

@functools.lru_cache(maxsize=32)
def _all_label_sets(n: int, k: int) -> np.ndarray:
    """Every choice of k of n rows as boolean masks (cached: the same design is tested many times)."""
    masks = np.zeros((math.comb(n, k), n), bool)
    for i, c in enumerate(itertools.combinations(range(n), k)):
        masks[i, list(c)] = True
    masks.flags.writeable = False
    return masks


@functools.lru_cache(maxsize=32)
def _all_subsets(n: int) -> np.ndarray:
    """The 2^n - 1 non-empty subsets of n rows as 0/1 rows (cached)."""
    subsets = np.array(list(itertools.product([0.0, 1.0], repeat=n)))[1:]
    subsets.flags.writeable = False
    return subsets


def _label_sets(n: int, k: int, n_perm: int, rng) -> tuple[np.ndarray, bool]:
    """(rows = relabellings, True if exact): boolean masks of which k of n rows form group a."""
    if math.comb(n, k) <= EXACT_LIMIT:
        return _all_label_sets(n, k), True
    order = np.argsort(rng.random((n_perm, n)), axis=1)
    masks = np.zeros((n_perm, n), bool)
    np.put_along_axis(masks, order[:, :k], True, axis=1)
    return masks, False


def difference_ci(a, b, statistic: Callable = np.mean, n_boot: int = 1000, seed: int = 0, unit: str = "",
                  n_perm: int = 10000, level: float = 0.95, interval: str = "percentile") -> dict:
    """statistic(a) - statistic(b): CI resampling a and b independently; permutation p.

    ``p`` is the two-sided permutation p (group labels shuffled; exact when C(n, |a|) <=
    :data:`EXACT_LIMIT`) and ``p_min`` the smallest p the design can reach
    (2 / C(n, |a|) exact, e.g. 1/3 for 2 + 2 networks and 2/70 for 4 + 4).

    ``interval="permutation"`` (difference of means only): the CI is instead the
    inverted permutation test of a shift (:func:`shift_interval_two_sample`), which holds
    its level at 4-8 networks where the percentile bootstrap under-covers; it is unbounded
    (+/- inf) when the design cannot reach a one-sided (1 - level) / 2.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a) + len(b)
    if len(a) == 0 or len(b) == 0:
        return result(NAN, n=n, unit=unit)
    value = float(statistic(a) - statistic(b))
    both = np.concatenate([a, b])
    labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
    if interval == "permutation":
        if statistic is not np.mean:
            raise ValueError("difference_ci: interval='permutation' inverts a test of a shift in the mean; "
                             "use statistic=np.mean")
        ci = shift_interval_two_sample(a, b, level, n_perm, seed)
    else:
        ci = bootstrap_ci(lambda v, g: statistic(v[g == 0]) - statistic(v[g == 1]), both, labels,
                          n_boot=n_boot, seed=seed, level=level, strata=labels)
    masks, exact = _label_sets(n, len(a), n_perm, np.random.default_rng(seed))
    null = np.array([statistic(both[m]) - statistic(both[~m]) for m in masks])
    extreme = np.abs(null) >= abs(value) - 1e-12
    if exact:
        p = float(np.mean(extreme))
        p_min = float(np.mean(np.abs(null) >= np.abs(null).max() - 1e-12))
    else:
        p, p_min = float((1 + extreme.sum()) / (1 + len(null))), 1.0 / (1 + len(null))
    return result(value, ci, n, p, p_min, unit)


def paired_difference(diffs, n_boot: int = 1000, seed: int = 0, unit: str = "", n_perm: int = 10000,
                      interval: str = "percentile") -> dict:
    """Mean of paired differences (one per network): bootstrap CI and a sign-flip permutation p.

    Exact over all 2^n sign patterns when 2^n <= :data:`EXACT_LIMIT`; ``p_min`` =
    2 / 2^n there (e.g. 0.125 for 4 networks). ``interval="permutation"``: the CI is the
    inverted sign-flip test (:func:`shift_interval_paired`) instead of the percentile
    bootstrap (which under-covers at 4-8 networks).
    """
    d = np.asarray(diffs, float)
    n = len(d)
    if n == 0:
        return result(NAN, unit=unit)
    value = float(d.mean())
    if interval == "permutation":
        ci = shift_interval_paired(d, 0.95, n_perm, seed)
    else:
        ci = bootstrap_ci(np.mean, d, n_boot=n_boot, seed=seed) if n > 1 else (NAN, NAN)
    if 2 ** n <= EXACT_LIMIT:
        signs = np.array(list(itertools.product([1.0, -1.0], repeat=n)))
        null = np.abs(signs @ d) / n
        p = float(np.mean(null >= abs(value) - 1e-12))
        p_min = float(np.mean(null >= null.max() - 1e-12))
    else:
        signs = np.random.default_rng(seed).choice([1.0, -1.0], size=(n_perm, n))
        null = np.abs(signs @ d) / n
        p, p_min = float((1 + np.sum(null >= abs(value) - 1e-12)) / (1 + n_perm)), 1.0 / (1 + n_perm)
    return result(value, ci, n, p, p_min, unit)


# ---------------------------------------------------------------------------- shift intervals

def _order_bounds(thresholds: np.ndarray, n_patterns: int, level: float) -> tuple[float, float]:
    """(k-th smallest, k-th largest) threshold, k = floor(alpha * n_patterns), alpha = (1 - level) / 2:
    the exact confidence bounds of a permutation test inverted over a shift; (-inf, inf) when
    k < 1 (the design's smallest one-sided p, 1 / n_patterns, exceeds alpha)."""
    k = int(math.floor((1 - level) / 2 * n_patterns + 1e-9))
    if k < 1:
        return -math.inf, math.inf
    t = np.sort(thresholds)
    return float(t[k - 1]), float(t[-k])


def shift_interval_paired(diffs, level: float = 0.95, n_perm: int = 10000, seed: int = 0) -> tuple[float, float]:
    """Confidence interval of the mean paired difference by inverting the one-sided sign-flip test.

    Testing H0: centre = mu with the statistic sum(d - mu), a sign pattern that flips the
    subset S lies at or above the observed sum exactly when mean(d_S) <= mu. The one-sided
    p at mu is therefore (1 + #{S: mean(d_S) <= mu}) / 2^n, and the set of mu a one-sided
    test at alpha = (1 - level) / 2 keeps is bounded by the k-th smallest and k-th largest
    subset means, k = floor(alpha 2^n). So ``lower > margin`` is the exact one-sided test
    at the margin (d shifted by the margin) rejecting at alpha. Exact over all 2^n - 1
    subsets when 2^n <= :data:`EXACT_LIMIT`, else ``n_perm`` random ones. Valid when the
    differences are symmetric about their centre; (-inf, inf) when the design cannot reach
    alpha (n = 4: smallest one-sided p 1/16 > 0.025).
    """
    d = np.asarray(diffs, float)
    n = len(d)
    if n == 0:
        return NAN, NAN
    if 2 ** n <= EXACT_LIMIT:
        subsets = _all_subsets(n)
        n_patterns = 2 ** n
    else:
        subsets = np.random.default_rng(seed).integers(0, 2, size=(n_perm, n)).astype(float)
        subsets = subsets[subsets.sum(1) > 0]
        n_patterns = len(subsets) + 1
    return _order_bounds(subsets @ d / subsets.sum(1), n_patterns, level)


def shift_interval_two_sample(a, b, level: float = 0.95, n_perm: int = 10000, seed: int = 0) -> tuple[float, float]:
    """Confidence interval of mean(a) - mean(b) by inverting the one-sided permutation test of a shift.

    For a shift delta, a - delta and b are pooled and relabelled; a relabelling that puts j
    of a's m values (and m - j of b's) into the first group has statistic T* with
    T* - T = C + delta c, c = 1 - j/m + (m - j)/|b| > 0 for every relabelling but the
    observed one. It reaches T exactly when delta >= -C / c, so (as for
    :func:`shift_interval_paired`) the exact bounds are order statistics of those
    thresholds. Exact when C(n, m) <= :data:`EXACT_LIMIT`; valid under a location shift
    (the arms' distributions differ by delta only); (-inf, inf) when 1 / C(n, m) exceeds
    (1 - level) / 2 (e.g. 3 + 3 networks: 1/20).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    m, k = len(a), len(b)
    if m == 0 or k == 0:
        return NAN, NAN
    masks, exact = _label_sets(m + k, m, n_perm, np.random.default_rng(seed))
    both = np.concatenate([a, b])
    j = masks[:, :m].sum(1)
    first = masks.astype(float) @ both / m
    second = (~masks).astype(float) @ both / k
    C = first - second - (a.mean() - b.mean())
    c = 1 - j / m + (m - j) / k
    moved = c > 1e-12
    n_patterns = len(masks) if exact else len(masks) + 1
    return _order_bounds(-C[moved] / c[moved], n_patterns, level)


# ---------------------------------------------------------------------------- tables

def network_means(table: pd.DataFrame, value: str, by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """One row per network: ``value`` averaged over its orderings or noise draws (the
    within-network replicates), so that between-network statistics resample networks."""
    return table.groupby(list(by), sort=False)[value].mean().reset_index()


def per_network(table: pd.DataFrame, statistic: Callable[[pd.DataFrame], float], n_boot: int = 1000,
                seed: int = 0, network: str = "model", what: str = "units") -> dict:
    """A unit-level statistic replicated over networks (a cluster bootstrap).

    ``statistic`` is computed on each network's rows alone (e.g. Spearman r over its units,
    or the mean of its per-layer r), the value is the mean over networks, and the 95 % CI
    resamples networks (the clusters), not the units, which are not independent: units of
    one net share its training run. ``n`` counts the networks with a finite statistic;
    ``unit`` says "networks (N <what>)", N the rows behind them. One network gives no CI.
    """
    if network not in table:
        raise ValueError(f"per_network: the table has no {network!r} column naming each row's network "
                         f"(columns {list(table.columns)})")
    names, values, rows = [], [], 0
    for name, g in table.groupby(network, sort=False):
        v = float(statistic(g))
        if np.isfinite(v):
            names.append(name)
            values.append(v)
            rows += len(g)
    res = mean_ci(values, n_boot, seed)
    res["unit"] = f"networks ({rows} {what})"
    return res


def within_layers(x: str, y: str, layer: str = "depth") -> Callable[[pd.DataFrame], float]:
    """Statistic for :func:`per_network`: the mean over layers of Spearman r(x, y) within each layer."""
    def statistic(g: pd.DataFrame) -> float:
        r = [spearman_r(h[x], h[y]) for _, h in g.groupby(layer)]
        r = [v for v in r if np.isfinite(v)]
        return float(np.mean(r)) if r else NAN
    return statistic


def pooled_spearman(x: str, y: str) -> Callable[[pd.DataFrame], float]:
    """Statistic for :func:`per_network`: Spearman r(x, y) over all of a network's rows."""
    return lambda g: spearman_r(g[x], g[y])


def stat_row(statistic: str, res: dict) -> dict:
    """One row of a ``results/stats/<family>.csv`` table (columns statistic, value, ci_low,
    ci_high, n, unit, p, p_min, and ``chance`` where the statistic has a chance level)."""
    row = {"statistic": statistic, "value": res["value"], "ci_low": res.get("ci_low", NAN),
           "ci_high": res.get("ci_high", NAN), "n": res["n"], "unit": res.get("unit", ""), "p": res.get("p", NAN),
           "p_min": res.get("p_min", NAN)}
    for extra in ("chance", "null_mean"):
        if extra in res:
            row[extra] = res[extra]
    return row


def by_fraction_stats(table: pd.DataFrame, value: str, name: str, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Stats rows for a value observed per corrupted-label fraction (Figs. 1 and 2).

    ``table`` has one row per (model, replicate) with ``model``, ``corrupted_fraction``
    and ``value``. Replicates (orderings, noise draws) are averaged within each network
    first; Spearman's r of the network means with the fraction is then bootstrapped over
    networks, with an exact/Monte-Carlo permutation p over networks. Then the mean per
    fraction (over networks).
    """
    nets = network_means(table, value, ["model", "corrupted_fraction"])
    rows = [stat_row(f"spearman_{name}_vs_corrupted_fraction",
                     spearman(nets["corrupted_fraction"], nets[value], n_boot, seed, "networks", permutation=True))]
    for f, g in nets.groupby("corrupted_fraction"):
        rows.append(stat_row(f"{name}_fraction_{f:g}", mean_ci(g[value], n_boot, seed, "networks")))
    return rows
