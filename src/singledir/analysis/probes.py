"""Cheap reliance probes for model selection and early stopping (paper section 5; issue
"Beyond the paper", E1).

The paper suggests that "evaluating performance at a single ablation point or sparsely
sampling the ablation curve" could serve as a validation-free signal. Every probe here is
measured on the *training* data (with the labels the net was trained on), through the
same engine and the same seeded unit orderings as the full cumulative ablation curve
(:func:`singledir.engine.ablation.cumulative_ablation_curve`), so a probe is exactly a point or
a subsample of that curve:

``point@f``
    accuracy with round(f N) of the N units ablated, mean over orderings;
``sparse_auc``
    the normalized AUC (trapezoid, divided by the unablated accuracy) through the sparse
    fractions only (default 0, 0.5, 1);
``full_auc``
    the normalized AUC of the full curve (``analysis.curve_points`` points).

*Cost* counts forward passes over the evaluation set: one per (ordering, point) with a
nonzero number of ablated units, plus one for the unablated net (shared by all orderings,
since every ordering ablates nothing there). The cost of a training run itself is not
included: every probe needs the trained net.

Stopping (:func:`stop_epochs`) is a plain function over the per-model tables the
workflow writes, so it is tested without training anything; so is selection, a statistic
over networks (:func:`singledir.stats.model_selection.probe_selection_table`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from singledir.analysis.auc import normalized_auc
from singledir.engine.options import EngineOptions

FULL, SPARSE = "full_auc", "sparse_auc"


def point_name(f: float) -> str:
    return f"point@{f:g}"


def probe_names(fractions: Sequence[float]) -> list[str]:
    return [point_name(f) for f in fractions] + [SPARSE, FULL]


def _n_points(total: int, fractions: Sequence[float]) -> np.ndarray:
    return np.unique(np.rint(np.asarray(fractions, float) * total).astype(int))


def probe_cost(n_orderings: int, n_ablated_points: Sequence[int]) -> int:
    """Forward passes over the evaluation set: one per ordering and nonzero point, one unablated."""
    nonzero = sum(1 for k in n_ablated_points if k > 0)
    return n_orderings * nonzero + 1


def ablation_points(model, x, y, layers, n_ablated: Sequence[int], n_orderings: int, seed: int, *,
                    options: EngineOptions = EngineOptions()):
    """Tidy (ordering, n_ablated, fraction, accuracy, loss) at the given numbers of ablated
    units, with the orderings of :func:`singledir.engine.ablation.cumulative_ablation_curve`
    (same seed: the same units ablated at the same point). The unablated point is
    evaluated once and copied to every ordering."""
    # engine.ablation loads torch; the figure jobs (Figs. X1-X4) import this module for its tables only
    from singledir.engine.ablation import evaluate_ablations, layer_sizes, random_orderings

    sizes = layer_sizes(model, layers, x)
    total = sum(sizes.values())
    orders = random_orderings(total, n_orderings, seed)
    pts = sorted(set(int(k) for k in n_ablated))
    sets, keys = [np.array([], dtype=int)], [None]
    for o in range(n_orderings):
        for k in pts:
            if k > 0:
                sets.append(orders[o, :k])
                keys.append((o, k))
    loss, acc = evaluate_ablations(model, x, y, sizes, sets, options=options)
    rows = []
    for o in range(n_orderings):
        for k in pts:
            i = 0 if k == 0 else keys.index((o, k))
            rows.append((o, k, k / total, float(acc[i]), float(loss[i])))
    return pd.DataFrame(rows, columns=["ordering", "n_ablated", "fraction", "accuracy", "loss"]), total


def _auc_of(curve: pd.DataFrame) -> float:
    """Mean over orderings of the normalized AUC (x = fraction)."""
    vals = []
    for _, c in curve.groupby("ordering"):
        c = c.sort_values("fraction")
        vals.append(normalized_auc(c["fraction"].to_numpy(), c["accuracy"].to_numpy()))
    return float(np.mean(vals))


def measure_probes(model, x, y, layers, fractions: Sequence[float], sparse: Sequence[float], n_orderings: int,
                   n_points: int, seed: int, *, options: EngineOptions = EngineOptions()
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(probes, full curve). ``probes``: one row per probe with columns probe, value,
    cost_passes, cost_examples (passes x evaluation examples), n_orderings. Each probe is
    computed by its own engine call at only the points it needs, so its cost is real."""
    from singledir.engine.ablation import curve_points, layer_sizes  # torch: as in ablation_points

    rows = []
    total = sum(layer_sizes(model, layers, x).values())
    for f in fractions:
        k = int(round(f * total))
        tab, _ = ablation_points(model, x, y, layers, [k], n_orderings, seed, options=options)
        rows.append((point_name(f), float(tab["accuracy"].mean()), probe_cost(n_orderings, [k])))
    sp = _n_points(total, sparse)
    tab, _ = ablation_points(model, x, y, layers, sp, n_orderings, seed, options=options)
    rows.append((SPARSE, _auc_of(tab), probe_cost(n_orderings, sp)))
    pts = curve_points(total, n_points)
    full, _ = ablation_points(model, x, y, layers, pts, n_orderings, seed, options=options)
    rows.append((FULL, _auc_of(full), probe_cost(n_orderings, pts)))
    out = pd.DataFrame(rows, columns=["probe", "value", "cost_passes"])
    out["cost_examples"] = out["cost_passes"] * len(x)
    out["n_orderings"] = n_orderings
    return out, full


# ---------------------------------------------------------------------------- early stopping

def patience_stop(epochs: Sequence[int], values: Sequence[float], patience: int, higher_is_better: bool) -> int:
    """The epoch early stopping picks: walk the snapshots in order, stop after ``patience``
    snapshots without a strict improvement, and return the best epoch seen so far."""
    best_i, waited = 0, 0
    sign = 1.0 if higher_is_better else -1.0
    for i in range(1, len(values)):
        if sign * values[i] > sign * values[best_i]:
            best_i, waited = i, 0
        else:
            waited += 1
            if waited >= patience:
                break
    return int(epochs[best_i])


def stop_epochs(snap: pd.DataFrame, probes: Sequence[str], patience: int) -> pd.DataFrame:
    """Per network (model): the epoch each rule stops at and the report-half test accuracy
    and loss there. ``snap``: one row per (model, epoch, probe) with columns value,
    val_loss (held-out half of the test set), report_loss, report_accuracy.

    Rules: each probe (higher = more robust = better), ``val_loss`` (patience rule on the
    validation half), ``oracle`` (the epoch of the lowest report-half loss; not a usable
    rule, the bound)."""
    rows = []
    for model, g in snap.groupby("model"):
        per_epoch = g.drop_duplicates("epoch").sort_values("epoch")
        ep = per_epoch["epoch"].to_numpy()
        at = per_epoch.set_index("epoch")
        chosen = {}
        for p in probes:
            gp = g[g["probe"] == p].sort_values("epoch")
            chosen[p] = patience_stop(gp["epoch"].to_numpy(), gp["value"].to_numpy(), patience, True)
        chosen["val_loss"] = patience_stop(ep, per_epoch["val_loss"].to_numpy(), patience, False)
        chosen["oracle"] = int(ep[np.argmin(per_epoch["report_loss"].to_numpy())])
        for rule, e in chosen.items():
            rows.append({"model": model, "rule": rule, "epoch": e, "test_loss": float(at.loc[e, "report_loss"]),
                         "test_accuracy": float(at.loc[e, "report_accuracy"]),
                         "final_epoch": int(ep[-1])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- regularizer comparison

def condition(regularizer: str, strength: float, dropout: float, batch_norm: bool = False) -> str:
    """A training condition's label: ``plain``, ``dropout 0.2``, ``batch norm``,
    ``ablation_noise 0.5`` ... (Figs. X3, X4, their statistics and the claims)."""
    if regularizer and regularizer != "none":
        return f"{regularizer} {strength:g}"
    if dropout:
        return f"dropout {dropout:g}"
    return "batch norm" if batch_norm else "plain"


def stat_key(cond: str) -> str:
    """``ablation_noise 0.5`` -> ``ablation_noise_0.5`` (statistic names)."""
    return cond.replace(" ", "_")


def add_condition(t: pd.DataFrame, family_default_bn: bool = False) -> pd.DataFrame:
    t = t.copy()
    t["condition"] = [condition(r, s, p, bn and not family_default_bn) for r, s, p, bn in
                      zip(t["regularizer"], t["strength"], t["dropout"], t["batch_norm"])]
    t["labels"] = np.where(t["corrupted_fraction"] > 0, "corrupted", "clean")
    return t
