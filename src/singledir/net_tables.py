"""Per-network tables for figures that compare many networks (Figs. 3, 4c, 5b).

Built from the per-model workflow outputs: ``history.csv`` (loss and accuracy per epoch)
and the tidy ablation curves (:func:`singledir.ablation.cumulative_ablation_curve`).
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .auc import curve_aucs


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
    out["generalization_error"] = 1.0 - out["test_accuracy"]
    out["generalization_gap"] = out["train_accuracy"] - out["test_accuracy"]
    return out


def model_aucs(curves: pd.DataFrame) -> pd.DataFrame:
    """Normalized AUC per (model, ordering) of tidy curves (columns model, ordering, auc)."""
    keep = [c for c in ("model", "ordering", "n_ablated", "fraction", "accuracy", "loss") if c in curves]
    return curve_aucs(curves[keep])


def mean_auc(curves: pd.DataFrame) -> pd.DataFrame:
    """Per model: mean and std of the normalized AUC over its orderings (columns model, auc, auc_std)."""
    a = model_aucs(curves)
    return a.groupby("model", sort=False)["auc"].agg(auc="mean", auc_std="std").reset_index()


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
    """(x values, rows = (model, ordering) x columns = x) for :func:`singledir.plotting.band`."""
    t = curves.pivot_table(index=["model", "ordering"], columns=x, values=y)
    return t.columns.values, t.values
