"""Class selectivity index (paper eq. 1) and mutual information with the class label.

Both take per-unit activations of shape (N, C); for feature maps the activation is
first averaged over all spatial positions (section 2.3). Both are computed on the
test set.
"""

from __future__ import annotations

import numpy as np


def spatial_average(acts) -> np.ndarray:
    """(N, C, *spatial) -> (N, C): average each feature map over its elements."""
    a = np.asarray(acts, dtype=np.float64)
    return a.reshape(a.shape[0], a.shape[1], -1).mean(-1) if a.ndim > 2 else a


def class_conditional_means(acts: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, C) mean activity per class. A class absent from ``labels`` is an error."""
    acts, labels = spatial_average(acts), np.asarray(labels)
    sums = np.zeros((n_classes, acts.shape[1]))
    np.add.at(sums, labels, acts)
    return class_means_from_sums(sums, np.bincount(labels, minlength=n_classes))


def class_means_from_sums(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n_classes, C) per-class sums of activity and (n_classes,) example counts -> the
    class-conditional means. A class without examples is an error."""
    counts = np.asarray(counts)
    if (counts == 0).any():
        raise ValueError(f"classes {np.flatnonzero(counts == 0).tolist()} have no examples")
    return sums / counts[:, None]


def class_selectivity_index(acts: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Selectivity = (mu_max - mu_-max) / (mu_max + mu_-max) per unit (eq. 1).

    mu_max is the largest class-conditional mean, mu_-max the mean of the other
    classes' class-conditional means. A dead unit (mu_max + mu_-max = 0) gets 0. For
    non-negative (post-ReLU) activity the index lies in [0, 1].
    """
    return selectivity_from_class_means(class_conditional_means(acts, labels, n_classes))


def selectivity_from_class_means(means: np.ndarray) -> np.ndarray:
    """Eq. 1 from the (n_classes, C) class-conditional means (see :func:`class_selectivity_index`)."""
    n_classes = means.shape[0]
    top = means.argmax(0)
    mu_max = means[top, np.arange(means.shape[1])]
    mu_rest = (means.sum(0) - mu_max) / (n_classes - 1)
    denom = mu_max + mu_rest
    with np.errstate(invalid="ignore", divide="ignore"):
        sel = np.where(denom > 0, (mu_max - mu_rest) / np.where(denom > 0, denom, 1.0), 0.0)
    return sel


def discretize_activity(a: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin one unit's activity: exact zeros (and below) get their own bin 0; positive
    values are split into ``n_bins`` equal-count bins (quantiles of the positive values).

    The separate zero bin keeps the mass of ReLU zeros from swamping one quantile bin.
    """
    a = np.asarray(a, dtype=np.float64)
    out = np.zeros(len(a), dtype=np.int64)
    pos = a > 0
    if pos.sum() == 0:
        return out
    edges = np.quantile(a[pos], np.linspace(0, 1, n_bins + 1)[1:-1])
    out[pos] = 1 + np.searchsorted(edges, a[pos], side="right")
    return out


def mutual_information(acts: np.ndarray, labels: np.ndarray, n_classes: int, n_bins: int = 10,
                       bias_correct: bool = True) -> np.ndarray:
    """Mutual information (bits) between each unit's binned activity and the class label.

    Estimator: activity binned by :func:`discretize_activity` (a zero bin plus
    ``n_bins`` equal-count bins of the positive values), plug-in MI of the joint
    histogram, minus the Miller-Madow bias term (B-1)(K-1)/(2 N ln 2) for B occupied
    activity bins and K classes, floored at 0. Equal-count bins adapt to each unit's
    scale, so units of different magnitude are comparable; the correction removes the
    positive bias of the plug-in estimate on finite test sets.
    """
    acts, labels = spatial_average(acts), np.asarray(labels)
    n = len(labels)
    py = np.bincount(labels, minlength=n_classes) / n
    out = np.zeros(acts.shape[1])
    for u in range(acts.shape[1]):
        b = discretize_activity(acts[:, u], n_bins)
        joint = np.zeros((b.max() + 1, n_classes))
        np.add.at(joint, (b, labels), 1.0)
        joint /= n
        pb = joint.sum(1)
        nz = joint > 0
        mi = float(np.sum(joint[nz] * np.log2(joint[nz] / (pb[:, None] * py[None, :])[nz])))
        if bias_correct:
            occupied = int((pb > 0).sum())
            k = int((py > 0).sum())
            mi -= (occupied - 1) * (k - 1) / (2 * n * np.log(2))
        out[u] = max(mi, 0.0)
    return out
