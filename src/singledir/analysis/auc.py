"""Normalized area under a cumulative ablation curve (paper section 2.2), without torch,
so figure and table jobs that only summarize curves start fast.

*Normalized AUC.* The area under accuracy as a function of the fraction of units
ablated (x from 0 to 1, trapezoid rule) divided by the accuracy with nothing ablated.
A curve that never drops has AUC 1.0; faster drops give smaller values.

*Raw AUC.* The same area without the division. A net that never learned (a flat
curve at chance) or diverged scores a normalized 1.0 but a raw area at chance level,
so tables report both (``raw_auc`` next to ``auc``), and nets that failed to train are
flagged by :func:`singledir.stats.net_tables.training_failed`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def normalized_auc(fraction: np.ndarray, accuracy: np.ndarray) -> float:
    """Area under accuracy vs fraction ablated, divided by the unablated accuracy.

    ``fraction`` must start at 0 and end at 1. A flat curve gives exactly 1.0.
    """
    fraction, accuracy = np.asarray(fraction, float), np.asarray(accuracy, float)
    order = np.argsort(fraction)
    fraction, accuracy = fraction[order], accuracy[order]
    if fraction[0] != 0 or not np.isclose(fraction[-1], 1.0):
        raise ValueError("normalized_auc needs a curve from fraction 0 to fraction 1")
    if accuracy[0] <= 0:
        return 0.0
    area = float(np.sum((fraction[1:] - fraction[:-1]) * (accuracy[1:] + accuracy[:-1]) / 2))
    return area / accuracy[0]


def raw_auc(fraction: np.ndarray, accuracy: np.ndarray) -> float:
    """Area under accuracy vs fraction ablated (0 to 1, trapezoid rule), not normalized."""
    fraction, accuracy = np.asarray(fraction, float), np.asarray(accuracy, float)
    order = np.argsort(fraction)
    fraction, accuracy = fraction[order], accuracy[order]
    return float(np.sum((fraction[1:] - fraction[:-1]) * (accuracy[1:] + accuracy[:-1]) / 2))


def curve_aucs(curve: pd.DataFrame) -> pd.DataFrame:
    """Normalized AUC (``auc``) and raw area (``raw_auc``) per ordering of a tidy curve
    (extra id columns are kept)."""
    ids = [c for c in curve.columns if c not in ("ordering", "n_ablated", "fraction", "accuracy", "loss")]
    rows = []
    for key, g in curve.groupby(ids + ["ordering"], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        rows.append(dict(zip(ids + ["ordering"], key), auc=normalized_auc(g["fraction"].values, g["accuracy"].values),
                         raw_auc=raw_auc(g["fraction"].values, g["accuracy"].values)))
    return pd.DataFrame(rows)
