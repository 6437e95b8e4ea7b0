"""Per-network tables for figures that compare many networks (Figs. 3, 4c, 5b).

Built from the per-model workflow outputs: ``history.csv`` (loss and accuracy per epoch)
and the tidy ablation curves (:func:`singledir.engine.ablation.cumulative_ablation_curve`).
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from singledir.analysis.auc import curve_aucs


def final_performance(history_paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per model: the last epoch of its ``models/<family>/<model>/history.csv``.

    Columns: model (the history file's folder name), epoch, train/test loss and accuracy,
    generalization_error (1 - test accuracy) and generalization_gap (train - test accuracy).
    """
    rows = []
    for path in history_paths:
        h = pd.read_csv(path)
        if h.empty:
            raise ValueError(f"{path}: empty training history")
        last = h.sort_values("epoch").iloc[-1]
        rows.append({"model": os.path.basename(os.path.dirname(os.fspath(path))), "epoch": int(last["epoch"]),
                     "train_loss": last["train_loss"], "train_accuracy": last["train_accuracy"],
                     "test_loss": last["test_loss"], "test_accuracy": last["test_accuracy"]})
    out = pd.DataFrame(rows)
    out["failed"] = training_failed(out)
    out["generalization_error"] = 1.0 - out["test_accuracy"]
    out["generalization_gap"] = out["train_accuracy"] - out["test_accuracy"]
    return out


def final_accuracies(history_paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per model: final train loss, train and test accuracy, and ``failed``.

    Reads epoch-based histories (MNIST/CIFAR-10: train/test accuracy evaluated after the
    last epoch) and step-based ImageNet histories (``train_top1`` of the last logging
    window; no test accuracy, so nan).
    """
    rows = []
    for path in history_paths:
        h = pd.read_csv(path)
        if h.empty:
            raise ValueError(f"{path}: empty training history")
        last = h.sort_values("epoch" if "epoch" in h else "step").iloc[-1]
        rows.append({"model": os.path.basename(os.path.dirname(os.fspath(path))),
                     "train_loss": last["train_loss"],
                     "train_accuracy": last["train_accuracy"] if "train_accuracy" in h else last["train_top1"],
                     "test_accuracy": last["test_accuracy"] if "test_accuracy" in h else float("nan")})
    out = pd.DataFrame(rows)
    out["failed"] = training_failed(out)
    return out


def memorization_rows(nets: pd.DataFrame) -> list[dict]:
    """Stats rows (Figs. 1, 2): per corrupted fraction, the lowest final training
    accuracy of its nets, and ``final_train_accuracy_min_most_corrupted`` for the nets at
    the largest fraction (the memorization gate of the corruption claims)."""
    nan = float("nan")
    rows = []
    for f, g in nets.groupby("corrupted_fraction"):
        rows.append({"statistic": f"final_train_accuracy_min_fraction_{f:g}", "value": float(g["train_accuracy"].min()),
                     "ci_low": nan, "ci_high": nan, "n": len(g), "unit": "networks", "p": nan, "p_min": nan})
    top = nets[nets["corrupted_fraction"] == nets["corrupted_fraction"].max()]
    rows.append({"statistic": "final_train_accuracy_min_most_corrupted", "value": float(top["train_accuracy"].min()),
                 "ci_low": nan, "ci_high": nan, "n": len(top), "unit": "networks", "p": nan, "p_min": nan})
    return rows


# A net "failed to train" when its final training accuracy is within this margin of chance
# (1 / number of classes) or its final loss is not finite (diverged). Such a net's flat
# ablation curve scores the maximal normalized AUC of 1.0, so it is excluded from
# cross-network statistics (Figs. 3, 4c, 5b) and the count is reported.
FAILED_MARGIN = 0.05


def training_failed(nets: pd.DataFrame, n_classes: int = 10, margin: float = FAILED_MARGIN) -> pd.Series:
    """Per row of a :func:`final_performance` table: True if the net never learned
    (training accuracy < chance + ``margin``) or diverged (non-finite train loss/accuracy)."""
    chance = 1.0 / n_classes
    acc = pd.to_numeric(nets["train_accuracy"], errors="coerce")
    loss = pd.to_numeric(nets["train_loss"], errors="coerce")
    diverged = ~np.isfinite(acc.to_numpy(float)) | ~np.isfinite(loss.to_numpy(float))
    return pd.Series(diverged | (acc.to_numpy(float) < chance + margin), index=nets.index, name="failed")


def failed_stat_rows(nets: pd.DataFrame) -> list[dict]:
    """Stats rows reporting how many nets a figure used and how many it excluded as failed."""
    nan = float("nan")
    failed = nets["failed"].astype(bool)
    return [{"statistic": "networks_failed_excluded", "value": int(failed.sum()), "ci_low": nan, "ci_high": nan,
             "n": len(nets), "unit": "networks", "p": nan, "p_min": nan},
            {"statistic": "networks_used", "value": int((~failed).sum()), "ci_low": nan, "ci_high": nan,
             "n": len(nets), "unit": "networks", "p": nan, "p_min": nan}]


def model_aucs(curves: pd.DataFrame) -> pd.DataFrame:
    """Normalized and raw AUC per (model, ordering) of tidy curves (columns model, ordering, auc, raw_auc)."""
    keep = [c for c in ("model", "ordering", "n_ablated", "fraction", "accuracy", "loss") if c in curves]
    return curve_aucs(curves[keep])


def mean_auc(curves: pd.DataFrame) -> pd.DataFrame:
    """Per model, over its orderings: mean and std of the normalized AUC and the mean raw
    area (columns model, auc, auc_std, raw_auc)."""
    a = model_aucs(curves)
    g = a.groupby("model", sort=False)
    return g["auc"].agg(auc="mean", auc_std="std").join(g["raw_auc"].mean()).reset_index()


def with_corrupted_fraction(paths: Iterable[str | os.PathLike], specs: dict) -> pd.DataFrame:
    """The tidy per-model tables at ``paths`` stacked, with each row's model's
    corrupted-label fraction (from its spec) as column ``corrupted_fraction`` (second)."""
    table = pd.concat([pd.read_csv(p) for p in paths])
    table.insert(1, "corrupted_fraction", table["model"].map(lambda m: specs[m]["labels"]["fraction"]))
    return table


def spec_value(models: Sequence[str], specs: dict, section: str, key: str, default=None) -> list:
    """``specs[m][section][key]`` for each model id (e.g. ('train', 'lr'))."""
    return [specs[m][section].get(key, default) for m in models]


def extremes(nets: pd.DataFrame, by: str, k: int) -> tuple[list[str], list[str]]:
    """Model ids of the k smallest and k largest values of ``by`` (ties: table order).

    With fewer than 2k networks, k shrinks to half of them so the groups never overlap.
    """
    k = max(1, min(int(k), len(nets) // 2))
    order = nets.sort_values(by, kind="stable")["model"].tolist()
    return order[:k], order[-k:]


def curve_matrix(curves: pd.DataFrame, x: str = "n_ablated", y: str = "accuracy") -> tuple[np.ndarray, np.ndarray]:
    """(x values, rows = (model, ordering) x columns = x) for :func:`singledir.figures.plotting.band`."""
    t = curves.pivot_table(index=["model", "ordering"], columns=x, values=y)
    return t.columns.values, t.values


def dropout_readings(curves: pd.DataFrame) -> pd.DataFrame:
    """Fig. 5a, per (model, dropout, corrupted, ordering): ``kept`` = accuracy at exactly
    round(p * N) units ablated / unablated accuracy, and ``past`` = mean accuracy from
    there to all units ablated (trapezoid over the fraction) / the accuracy there.

    ``curves`` has columns model, dropout, corrupted_fraction, ordering, n_ablated,
    fraction, accuracy. A curve without the point round(p * N) is an error (rule
    ablation_curve adds it for dropout nets), never a read at a neighbouring point.
    """
    n_total = int(curves["n_ablated"].max())
    rows = []
    for (model, p, f, o), g in curves.groupby(["model", "dropout", "corrupted_fraction", "ordering"]):
        g = g.sort_values("n_ablated")
        k = int(round(p * n_total))
        at = g.loc[g["n_ablated"] == k, "accuracy"]
        if at.empty:
            raise ValueError(f"{model}: its ablation curve has no point at round({p:g} x {n_total}) = {k} units; "
                             "rerun rule ablation_curve (it adds that point for dropout nets)")
        at_p, base = float(at.iloc[0]), float(g["accuracy"].iloc[0])
        past = g[g["n_ablated"] >= k]
        span = float(past["fraction"].iloc[-1] - past["fraction"].iloc[0])
        mean_past = float(np.trapezoid(past["accuracy"], past["fraction"]) / span) if span > 0 else at_p
        rows.append({"model": model, "dropout": p, "corrupted": f > 0, "ordering": o, "n_at_p": k,
                     "kept": at_p / max(base, 1e-12), "past": mean_past / max(at_p, 1e-12)})
    return pd.DataFrame(rows)


def live_map_summary(units: pd.DataFrame, high_selectivity: float = 0.5) -> pd.DataFrame:
    """Fig. 6, one row per (model, batch_norm): median selectivity and median mutual
    information of the live feature maps, the fraction of live maps with selectivity
    above ``high_selectivity``, and the dead fraction (maps with no activity on the test
    set, selectivity 0 by definition, so left out of the other three); and the same over
    all maps, as the paper's footnote 4 counts them: ``median_selectivity_all_maps`` (dead
    maps at 0) and ``high_selectivity_or_dead_fraction``."""
    rows = []
    for (model, bn), g in units.groupby(["model", "batch_norm"], sort=False):
        dead = g["mean_activity"] <= 0
        live = g[~dead]
        rows.append({"model": model, "batch_norm": bn, "median_selectivity": live["selectivity"].median(),
                     "median_mi": live["mutual_information"].median(),
                     "high_selectivity_fraction": float((live["selectivity"] > high_selectivity).mean())
                     if len(live) else float("nan"),
                     "dead_fraction": float(dead.mean()), "n_maps": len(g),
                     # all maps (paper footnote 4: "a large fraction of feature maps with high class
                     # selectivity -- and dead feature maps"): dead maps at their selectivity of 0
                     "median_selectivity_all_maps": g["selectivity"].where(~dead, 0.0).median(),
                     "high_selectivity_or_dead_fraction": float(((g["selectivity"] > high_selectivity) & ~dead
                                                                 | dead).mean())})
    return pd.DataFrame(rows)
