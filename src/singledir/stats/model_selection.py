"""Ablation AUC as a hyperparameter-selection signal (paper section 3.2, Fig. 4c).

The paper trains a grid of hyperparameter settings (96 settings of learning rate x
batch size, 2 repeats each), then repeatedly draws a random subset of 48 settings and
picks the setting with the highest ablation AUC, as if no test set were available.
It reports how often the pick is among the top 1 / 5 / 10 settings of the subset by
test accuracy (13 / 83 / 98 %) and the mean +/- std of the test-accuracy gap between
the pick and the subset's best setting (1 +/- 1.1 %).

Definitions used here (the paper gives no more detail):

- a *setting* is one grid point; its AUC and test accuracy are the means over its
  repeats (:func:`setting_means`);
- the pick's *rank* within a subset is 1 + the number of subset settings with a
  strictly higher test accuracy (ties count in the pick's favour); "top k" means
  rank <= k;
- the *gap* is (best test accuracy in the subset - the pick's), in percentage points;
- ties in AUC go to the first setting in the table's order;
- when the number of possible subsets C(n, subset_size) is at most ``n_subsets``,
  every subset is used once (exact); otherwise ``n_subsets`` subsets are drawn
  uniformly without replacement within a subset, with a seeded generator.

Inference (:func:`selection_null`): each rate is compared with chance (k / subset
size) and with a permutation null (AUCs shuffled across settings); its CI (Fig. 4c)
resamples the settings of the grid, rerunning the whole selection on each resample (a
bootstrap of the rate over subsets, not of a maximum over a few settings). The rates are
comparable with the paper's only for the paper's design (subsets of 48 of 96 settings:
the top-k rates depend on the subset size); the claims say "not comparable" otherwise.

*Settings, not nets, are the sample* (:func:`spearman_over_settings`): the repeats of a
setting share its learning rate and batch size, so the CI of Spearman r(AUC, test accuracy)
over the sweep's nets resamples settings, each with all its repeats (a cluster bootstrap),
as the rates' CI does. The sweep's design is counted before failed nets are left out
(``selection_settings_designed``), so a failed net never makes the paper's own 48-of-96
design "not comparable"; the settings the selection used are ``selection_settings``.

The same test judges the cheap reliance probes of :mod:`singledir.analysis.probes` as
selection signals over networks (:func:`probe_selection_table`, Fig. X1, beyond the paper).
Fig. X1 ranks only networks trained without a reliance regularizer (:func:`x1_networks`):
the ablation-noise, reliance-penalty and class-selectivity arms were trained to move the very
quantity the probes measure, so pooled with the others their probe values say how they were
trained, not how well they generalize.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import pandas as pd

from singledir.analysis.probes import FULL
from singledir.stats.inference import (bootstrap_ci, cluster_bootstrap_ci, percentile_interval, permutation_spearman,
                                       result, spearman, spearman_r, stat_row)

# The conditions Fig. X1 ranks: a regularizer of the probe's own quantity (ablation noise, the
# reliance penalty, class selectivity) is never "none"; plain, dropout and batch-norm nets are.
UNREGULARIZED = "none"


def setting_means(nets: pd.DataFrame, setting_cols: Sequence[str], value_cols: Sequence[str] = ("auc", "test_accuracy")
                  ) -> pd.DataFrame:
    """Average the repeats of each setting: one row per setting, in first-seen order."""
    return nets.groupby(list(setting_cols), sort=False)[list(value_cols)].mean().reset_index()


def spearman_over_settings(nets: pd.DataFrame, setting_cols: Sequence[str], x: str = "auc", y: str = "test_accuracy",
                           n_boot: int = 1000, seed: int = 0) -> dict:
    """Spearman r(x, y) over the sweep's nets (every repeat a point, as the paper's Fig. 4c),
    with a 95 % CI resampling *settings* (each drawn with all its repeats:
    :func:`singledir.stats.inference.cluster_bootstrap_ci`) and a permutation p over nets
    (:func:`singledir.stats.inference.permutation_spearman`; the repeats of a setting are
    treated as exchangeable there). ``n`` counts nets, ``unit`` names the settings."""
    cols = list(setting_cols)
    if len(nets) < 3:
        return result(math.nan, n=len(nets), unit="networks")
    keys = nets[cols].astype(str).agg("|".join, axis=1).to_numpy()
    xs, ys = nets[x].to_numpy(float), nets[y].to_numpy(float)
    r = spearman_r(xs, ys)
    ci = cluster_bootstrap_ci(spearman_r, xs, ys, clusters=keys, n_boot=n_boot, seed=seed)
    p, p_min = permutation_spearman(xs, ys, seed=seed)
    n_settings = len(pd.unique(keys))
    return result(r, ci, len(nets), p, p_min, unit=f"networks in {n_settings} settings (CI: settings resampled)")


def _subsets(n: int, size: int, n_subsets: int, rng: np.random.Generator) -> np.ndarray:
    """(S, size) indices: all C(n, size) subsets when there are at most ``n_subsets``, else random ones."""
    if not 1 <= size <= n:
        raise ValueError(f"subset_size must be between 1 and the number of settings ({n}); got {size}")
    if math.comb(n, size) <= n_subsets:
        return np.array(list(itertools.combinations(range(n), size)), dtype=np.int64)
    # Row-wise random permutations: the first ``size`` columns are a uniform subset.
    return np.argsort(rng.random((n_subsets, n)), axis=1)[:, :size]


def _select(auc: np.ndarray, acc: np.ndarray, subsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per subset: the rank (1 = best) of the max-AUC setting by accuracy, and its accuracy gap."""
    a, t = auc[subsets], acc[subsets]
    pick = np.argmax(a, axis=1)  # first maximum: ties go to the earlier setting
    picked_acc = t[np.arange(len(subsets)), pick]
    rank = 1 + (t > picked_acc[:, None]).sum(axis=1)
    gap = t.max(axis=1) - picked_acc
    return rank, gap


def selection_statistic(auc, test_accuracy, subset_size: int, n_subsets: int = 10000,
                        top: Sequence[int] = (1, 5, 10), seed: int = 0) -> dict:
    """How well picking the max-AUC setting of random subsets finds good settings.

    ``auc`` and ``test_accuracy`` hold one value per setting (accuracy as a fraction).
    Returns ``top<k>_percent`` for each k in ``top`` (percent of subsets whose pick is
    in the subset's top k by test accuracy), ``gap_mean_percent`` and
    ``gap_std_percent`` (test accuracy of the subset's best setting minus the pick's,
    in percentage points; population std over subsets), ``n_subsets`` and
    ``exhaustive`` (True when every possible subset was used).
    """
    auc = np.asarray(auc, dtype=float)
    acc = np.asarray(test_accuracy, dtype=float)
    if auc.shape != acc.shape or auc.ndim != 1:
        raise ValueError("auc and test_accuracy must be 1-d arrays of the same length (one value per setting)")
    rng = np.random.default_rng(seed)
    subsets = _subsets(len(auc), int(subset_size), int(n_subsets), rng)
    rank, gap = _select(auc, acc, subsets)
    out = {f"top{k}_percent": 100.0 * float(np.mean(rank <= k)) for k in top}
    out["gap_mean_percent"] = 100.0 * float(gap.mean())
    out["gap_std_percent"] = 100.0 * float(gap.std())
    out["n_subsets"] = int(len(subsets))
    out["exhaustive"] = bool(math.comb(len(auc), int(subset_size)) <= n_subsets)
    return out


def selection_null(auc, test_accuracy, subset_size: int, n_subsets: int = 10000, top: Sequence[int] = (1, 5, 10),
                   n_perm: int = 1000, seed: int = 0, null_subsets: int = 500, n_boot: int = 0,
                   boot_subsets: int = 500) -> dict[str, dict]:
    """:func:`selection_statistic` against chance and a permutation null.

    *Chance*: a pick made at random is in the subset's top k with probability
    k / subset_size (``chance`` of ``top<k>_percent``, in percent).
    *Permutation null*: the AUCs are shuffled across settings ``n_perm`` times (the link
    between AUC and test accuracy broken, everything else kept) and the selection rerun
    with ``null_subsets`` subsets each. ``p`` is one-sided, in the direction "AUC picks
    better than chance": (1 + #{null >= observed}) / (1 + n_perm) for the top-k rates,
    (1 + #{null <= observed}) / (1 + n_perm) for the gap to the best; ``null_mean`` is the
    null's mean. No bootstrap: a percentile bootstrap of a maximum over a few settings is
    not a valid CI.

    *CI* (``n_boot`` > 0): a 95 % percentile interval resampling the settings of the grid
    with replacement (the grid as a sample of settings one might have tried), the selection
    rerun with ``boot_subsets`` subsets each. It answers "how much do the rates depend on
    which settings were in the grid", the uncertainty a comparison with the paper's rates
    needs (without it a value claim can never be decided); a copy of a setting drawn twice
    ties with itself and counts in the pick's favour, as ties do.

    Returns {name: {value, ci_low, ci_high, n (settings), p, p_min, chance, null_mean, unit}}
    for the names of :func:`selection_statistic`, plus "_meta".
    """
    auc = np.asarray(auc, dtype=float)
    acc = np.asarray(test_accuracy, dtype=float)
    point = selection_statistic(auc, acc, subset_size, n_subsets, top, seed)
    names = [f"top{k}_percent" for k in top] + ["gap_mean_percent", "gap_std_percent"]
    rng = np.random.default_rng(seed + 1)
    null = {k: np.empty(n_perm) for k in names}
    for b in range(n_perm):
        r = selection_statistic(rng.permutation(auc), acc, subset_size, null_subsets, top,
                                seed=int(rng.integers(2**31)))
        for k in names:
            null[k][b] = r[k]
    boot = {k: np.empty(n_boot) for k in names}
    brng = np.random.default_rng(seed + 2)
    for b in range(n_boot):
        idx = brng.integers(0, len(auc), len(auc))
        r = selection_statistic(auc[idx], acc[idx], subset_size, boot_subsets, top, seed=int(brng.integers(2**31)))
        for k in names:
            boot[k][b] = r[k]
    out = {}
    for k in names:
        v, obs = null[k], point[k]
        lo, hi = percentile_interval(boot[k]) if n_boot else (math.nan, math.nan)
        extreme = (v <= obs + 1e-9) if k.startswith("gap_mean") else (v >= obs - 1e-9)
        p = float((1 + extreme.sum()) / (1 + n_perm)) if n_perm else math.nan
        chance = 100.0 * min(1.0, int(k[3:-8]) / subset_size) if k.startswith("top") else math.nan
        out[k] = {"value": point[k], "ci_low": lo, "ci_high": hi, "n": len(auc), "p": p,
                  "p_min": 1.0 / (1 + n_perm) if n_perm else math.nan, "chance": chance,
                  "null_mean": float(v.mean()) if n_perm else math.nan, "unit": "settings"}
    out["_meta"] = {"n_subsets": point["n_subsets"], "exhaustive": point["exhaustive"]}
    return out


def _r_ratio(a, b, c) -> float:
    """Spearman r(a, c) / r(b, c): a probe's rank correlation relative to the full AUC's."""
    rb = spearman_r(b, c)
    return spearman_r(a, c) / rb if np.isfinite(rb) and rb != 0 else np.nan


def x1_networks(nets: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows Fig. X1 ranks, the rows it leaves out): the networks trained without a
    regularizer of single-direction reliance (column ``regularizer`` "none" or absent: plain,
    dropout, batch norm, the Fig. 3 and 4c nets) and those trained with one (ablation noise,
    the reliance penalty, class selectivity), which optimized the probe's own quantity."""
    if "regularizer" not in nets:
        return nets, nets.iloc[:0]
    reg = nets["regularizer"].fillna(UNREGULARIZED).astype(str).replace("", UNREGULARIZED)
    keep = (reg == UNREGULARIZED).to_numpy()
    return nets[keep], nets[~keep]


def regularized_note(left_out: pd.DataFrame, total: int) -> str:
    """Under Fig. X1 and in its statistics: how many regularized nets it left out, by condition."""
    nets = left_out.drop_duplicates("model")
    if nets.empty:
        return ""
    by = nets["regularizer"].astype(str)
    if "strength" in nets:
        by = by + " " + nets["strength"].map(lambda v: f"{float(v):g}")
    counts = ", ".join(f"{c}: {k}" for c, k in by.value_counts(sort=False).items())
    return (f"left out {len(nets)} of {total} nets trained with a reliance regularizer ({counts}): they were "
            "trained to move what the probes measure; X1 ranks the unregularized nets only")


def regularized_stat_row(left_out: pd.DataFrame, total: int) -> dict:
    """The statistics row ``networks_regularized_excluded`` (value: nets left out, n: all
    nets of the figure's inputs, note: :func:`regularized_note`)."""
    row = stat_row("networks_regularized_excluded", result(left_out["model"].nunique(), n=total, unit="networks"))
    row["note"] = regularized_note(left_out, total)
    return row


def probe_selection_table(nets: pd.DataFrame, probes: Sequence[str], n_boot: int, seed: int, subset_size: int,
                          n_subsets: int, top: Sequence[int], n_perm: int = 500) -> tuple[pd.DataFrame, list[dict]]:
    """Per probe: Spearman r(probe, test accuracy) over networks (bootstrap CI, permutation
    p), its cost, and top-k selection rates of the probe's pick in random subsets against
    chance and a permutation null (probe shuffled across networks, :func:`selection_null`).

    ``nets``: one row per network and probe (columns model, probe, value, cost_passes,
    test_accuracy, and ``regularizer`` where the nets have one). Only the unregularized nets
    are ranked (:func:`x1_networks`; the caller counts those left out with
    :func:`regularized_stat_row`). Returns (tidy table, stats rows for results/stats)."""
    nets, _ = x1_networks(nets)
    wide = nets.pivot_table(index="model", columns="probe", values="value")
    acc = nets.groupby("model")["test_accuracy"].first().reindex(wide.index).to_numpy(float)
    cost = nets.groupby("probe")["cost_passes"].median()
    n = len(wide)
    size = subset_size or max(2, n // 2)
    rows, stats = [], []
    full = wide[FULL].to_numpy(float)
    for p in probes:
        v = wide[p].to_numpy(float)
        r = spearman(v, acc, n_boot=n_boot, seed=seed, unit="networks", permutation=True)
        sel = selection_null(v, acc, size, n_subsets, top=top, n_perm=n_perm, seed=seed,
                             null_subsets=min(n_subsets, 200))
        # ratio of rank correlations, CI by resampling networks (paired: both probes on the same nets)
        ratio = _r_ratio(v, full, acc)
        lo, hi = bootstrap_ci(_r_ratio, v, full, acc, n_boot=n_boot, seed=seed)
        row = {"probe": p, "cost_passes": float(cost[p]), "cost_fraction_of_full": float(cost[p] / cost[FULL]),
               "spearman_r": r["value"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p": r["p"],
               "p_min": r["p_min"], "n": n, "r_ratio_to_full": ratio, "r_ratio_ci_low": lo,
               "r_ratio_ci_high": hi, "subset_size": size}
        for k in top:
            s = sel[f"top{k}_percent"]
            row[f"top{k}_percent"], row[f"top{k}_chance_percent"], row[f"top{k}_null_p"] = \
                s["value"], s["chance"], s["p"]
            stats.append(stat_row(f"selection_top{k}_percent_{p}", {**s, "unit": "networks"}))
        rows.append(row)
        stats.append(stat_row(f"spearman_{p}_vs_test_accuracy", r))
        stats.append(stat_row(f"r_ratio_{p}_to_full", {"value": ratio, "ci_low": lo, "ci_high": hi, "n": n,
                                                        "unit": "networks"}))
        stats.append(stat_row(f"cost_fraction_{p}_of_full", {"value": row["cost_fraction_of_full"], "n": n,
                                                              "unit": "forward passes"}))
    return pd.DataFrame(rows), stats
