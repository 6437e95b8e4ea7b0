"""Partially corrupted labels (paper section 2.1, after Zhang et al. 2017).

A fraction ``f`` of the training examples is chosen at random and their labels are
shuffled among themselves: the label distribution is unchanged, but the true
image-label pairing is broken for those examples. Test labels are never corrupted.
"""

from __future__ import annotations

import numpy as np


def corrupt_labels(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (corrupted labels, indices of the chosen examples).

    Exactly ``round(fraction * N)`` examples are chosen; their labels are permuted among
    them, so the multiset of labels (the marginal) is identical to the input's.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"corruption fraction must be in [0, 1]; got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    n = len(labels)
    chosen = np.sort(rng.choice(n, size=int(round(fraction * n)), replace=False))
    out = labels.copy()
    out[chosen] = labels[chosen][rng.permutation(len(chosen))]
    return out, chosen
