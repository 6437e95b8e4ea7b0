"""Cumulative ablation curves and single-unit ablation impact.

Definitions (paper sections 2.2 and 3.1, appendix A.1):

*Unit.* One output of a unit layer: a hidden unit of the MLP, or a whole feature map
(channel) of a convolutional layer; ablating a feature map clamps every spatial
position of that channel.

*Ablation.* Clamping a unit's activation to a fixed value: zero (``mode="zero"``, the
paper's default) or the training-set mean, taken per element of the feature map
(``mode="mean"``).

*Cumulative ablation curve.* All units of the chosen layers are put in one random
order; for n = 0 .. N (``n_points`` evenly spaced values including 0 and N) the first
n units of the order are ablated together and accuracy and loss are measured on the
evaluation set (the training set, with the labels the network was trained on).
Repeated for ``n_orderings`` seeded random orders.

A curve's normalized AUC, its one-number summary, is computed from the tidy table
without torch by :mod:`singledir.analysis.auc`.

:func:`singledir.engine.reference.reference_ablation_eval` (re-exported here) is the plain
definition (a forward hook that zeroes the units and one full forward pass per point);
the engine must agree with it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from singledir.engine.options import EngineOptions
from singledir.engine.batch import PerturbationBatch
from singledir.engine.perturb import evaluate_perturbations
from singledir.engine.reference import reference_ablation_eval  # noqa: F401  (the plain definition lives there)
from singledir.models.probe import probe_forward


def layer_sizes(model: nn.Module, layers: Sequence[str], example: torch.Tensor) -> dict[str, int]:
    """Number of units (channels) of each layer, from one forward pass of ``example``."""
    sizes = {}
    modules = dict(model.named_modules())
    probe_forward(model, example, {n: modules[n] for n in layers}, lambda n, out: sizes.__setitem__(n, out.shape[1]))
    return {n: int(sizes[n]) for n in layers}


def random_orderings(n_units: int, n_orderings: int, seed: int) -> np.ndarray:
    """(n_orderings, n_units) array; row i is a seeded random permutation of the units."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n_units) for _ in range(n_orderings)]) if n_orderings else np.zeros((0, n_units), int)


def curve_points(n_units: int, n_points: int) -> np.ndarray:
    """Evenly spaced numbers of ablated units from 0 to ``n_units`` (both included)."""
    if n_points < 2:
        raise ValueError("curve_points must be at least 2 (nothing ablated and everything ablated)")
    return np.unique(np.rint(np.linspace(0, n_units, n_points)).astype(int))


def masks_from_sets(ablated: Sequence[np.ndarray], sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """Keep-masks (M, C) per layer from M arrays of global unit indices to ablate.

    Global unit indices run over the layers in the order of ``sizes``.
    """
    total = sum(sizes.values())
    keep = np.ones((len(ablated), total), dtype=np.float32)
    for i, units in enumerate(ablated):
        keep[i, np.asarray(units, dtype=int)] = 0.0
    out, start = {}, 0
    for name, c in sizes.items():
        out[name] = torch.from_numpy(keep[:, start:start + c].copy())
        start += c
    return out


def ablation_fill(mode: str, moments: dict | None, layers: Sequence[str]) -> dict[str, torch.Tensor | None]:
    if mode == "zero":
        return {n: None for n in layers}
    if mode == "mean":
        if moments is None:
            raise ValueError("mean ablation needs the training-set activation means")
        return {n: moments[n]["mean"] for n in layers}
    raise ValueError(f"ablation mode: unknown mode {mode!r}; choose 'zero' or 'mean'")


def evaluate_ablations(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sizes: dict[str, int],
                       ablated: Sequence[np.ndarray], *, mode: str = "zero", moments: dict | None = None,
                       options: EngineOptions = EngineOptions()):
    """(loss, accuracy) arrays for each set of ablated global unit indices.

    ``options`` is :func:`singledir.engine.perturb.evaluate_perturbations`'s
    (``method="reference"`` runs the plain definition, one full forward pass per set)."""
    keep = masks_from_sets(ablated, sizes)
    fill = ablation_fill(mode, moments, list(sizes))
    dev = x.device
    pert = PerturbationBatch(len(ablated), {k: v.to(dev) for k, v in keep.items()},
                             {k: (None if v is None else v.to(dev)) for k, v in fill.items()})
    loss, acc = evaluate_perturbations(model, x, y, pert, options=options)
    return loss.numpy(), acc.numpy()


def cumulative_ablation_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layers: Sequence[str], *,
                              n_orderings: int = 10, n_points: int = 21, seed: int = 0, mode: str = "zero",
                              moments: dict | None = None, extra_fractions: Sequence[float] = (),
                              options: EngineOptions = EngineOptions()) -> pd.DataFrame:
    """Tidy cumulative ablation curves: one row per (ordering, number of units ablated).

    Columns: ordering, n_ablated, fraction, accuracy, loss. ``extra_fractions`` adds the
    points round(f * total) to the evenly spaced ones (Fig. 5a reads every dropout net's
    curve exactly at its dropout fraction p).
    """
    sizes = layer_sizes(model, layers, x)
    total = sum(sizes.values())
    orders = random_orderings(total, n_orderings, seed)
    points = curve_points(total, n_points)
    if len(extra_fractions):
        points = np.unique(np.concatenate([np.asarray(points, int),
                                           [int(round(f * total)) for f in extra_fractions]]))
    sets, rows = [], []
    for o in range(n_orderings):
        for k in points:
            sets.append(orders[o, :k])
            rows.append((o, int(k), k / total))
    loss, acc = evaluate_ablations(model, x, y, sizes, sets, mode=mode, moments=moments, options=options)
    df = pd.DataFrame(rows, columns=["ordering", "n_ablated", "fraction"])
    df["accuracy"] = acc
    df["loss"] = loss
    return df


def single_unit_impact(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layers: Sequence[str], *,
                       mode: str = "zero", moments: dict | None = None,
                       options: EngineOptions = EngineOptions()) -> pd.DataFrame:
    """Loss and accuracy with each unit ablated alone, and the impact on the loss.

    Columns: layer, unit, loss, accuracy, base_loss, base_accuracy, impact
    (impact = ablated loss - unablated loss; section 3.4 measures it on the test set).
    """
    sizes = layer_sizes(model, layers, x)
    total = sum(sizes.values())
    sets = [np.array([], dtype=int)] + [np.array([u]) for u in range(total)]
    loss, acc = evaluate_ablations(model, x, y, sizes, sets, mode=mode, moments=moments, options=options)
    names = [n for n, c in sizes.items() for _ in range(c)]
    units = [u for n, c in sizes.items() for u in range(c)]
    df = pd.DataFrame({"layer": names, "unit": units, "loss": loss[1:], "accuracy": acc[1:]})
    df["base_loss"], df["base_accuracy"] = loss[0], acc[0]
    df["impact"] = df["loss"] - df["base_loss"]
    return df


__all__ = ["cumulative_ablation_curve",
           "single_unit_impact", "reference_ablation_eval", "random_orderings", "curve_points",
           "layer_sizes", "evaluate_ablations"]
