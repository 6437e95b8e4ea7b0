"""Per-feature-map analysis of a model (section 3.4, appendices A.3-A.5), split into
shards of layers that run as separate jobs and merge into the one table.

At paper scale the ImageNet single-map analysis ablates 22,720 feature maps one at a time
(about 10 GPU-hours for one model): one job would exceed a typical 4-hour cluster limit
and could use one GPU only. ``analysis.unit_shards: N`` splits the analysed layers into N
contiguous groups of about equal numbers of feature maps (:func:`shard_layers`); each
shard is one job (``imagenet_units_shard``) computing :func:`unit_table` for its layers,
and a cheap rule concatenates them (:func:`merge_unit_tables`). Every number of a row
depends on its own feature map only (its spatial means over the test images, and the
loss with it alone ablated against the unablated loss), so the merged table is the
unsharded one; ``depth`` is the layer's position among all analysed layers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from singledir.engine.options import EngineOptions

UNIT_COLUMNS = ["layer", "depth", "unit", "selectivity", "mutual_information", "mean_activity", "l1_norm",
                "loss", "accuracy", "base_loss", "base_accuracy", "impact"]


def shard_layers(sizes: dict[str, int], n_shards: int) -> list[list[str]]:
    """``n_shards`` contiguous groups of the layers (in order) with about equal numbers of
    units each: shard i takes the layers whose middle unit falls in the i-th equal share
    of all units. With more shards than layers (or one layer holding most units) some
    shards are empty."""
    if int(n_shards) < 1:
        raise ValueError(f"analysis.unit_shards must be at least 1; got {n_shards!r}")
    names = list(sizes)
    counts = np.array([sizes[n] for n in names], dtype=float)
    middles = np.cumsum(counts) - counts / 2
    total = counts.sum()
    shard_of = np.minimum((middles / max(total, 1.0) * n_shards).astype(int), n_shards - 1)
    return [[n for n, s in zip(names, shard_of) if s == i] for i in range(n_shards)]


def unit_table(model, loader, x_impact, y_impact, layers: Sequence[str], only: Sequence[str] | None,
               n_classes: int, analysis: dict, device, unit_weights) -> pd.DataFrame:
    """Per feature map of ``only`` (default: all ``layers``): class selectivity, mutual
    information and mean activity of its spatial means over ``loader`` (the test images),
    the single-map ablation impact on the loss of ``x_impact`` (top-``analysis['topk']``),
    and its filter's L1 norm (``unit_weights(model, layer)``). ``depth`` counts ``layers``."""
    from singledir.engine.ablation import single_unit_impact
    from singledir.engine.activations import collect_activations
    from singledir.analysis.selectivity import class_selectivity_index, mutual_information

    only = list(layers) if only is None else list(only)
    if not only:
        return pd.DataFrame({c: [] for c in UNIT_COLUMNS})
    depth_of = {name: i for i, name in enumerate(layers, start=1)}
    means, y = collect_activations(model, loader, only, spatial=True, device=device)
    y = y.numpy()
    impact = single_unit_impact(model, x_impact.to(device), y_impact.to(device), only,
                                options=EngineOptions.from_config(analysis))
    parts = []
    for name in only:
        act = means[name].double().numpy()
        w = unit_weights(model, name).float().cpu()
        parts.append(pd.DataFrame({
            "layer": name, "depth": depth_of[name], "unit": range(act.shape[1]),
            "selectivity": class_selectivity_index(act, y, n_classes),
            "mutual_information": mutual_information(act, y, n_classes, analysis["mi_bins"]),
            "mean_activity": act.mean(0),
            "l1_norm": w.abs().reshape(w.shape[0], -1).sum(1).numpy(),
        }))
    return pd.concat(parts).merge(impact, on=["layer", "unit"])[UNIT_COLUMNS]


def merge_unit_tables(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The shards' tables as one, in depth and unit order; each (layer, unit) exactly once
    and no depth missing between the first and the last."""
    merged = pd.concat([t for t in tables if len(t)], ignore_index=True)
    dup = merged.duplicated(["layer", "unit"])
    if dup.any():
        raise ValueError(f"unit shards overlap: {merged.loc[dup, 'layer'].unique().tolist()[:5]} appear twice; "
                         f"delete the shard files and rerun")
    depths = sorted(merged["depth"].unique())
    if depths != list(range(1, len(depths) + 1)):
        raise ValueError(f"unit shards miss layers: depths present {depths}")
    return merged.sort_values(["depth", "unit"], kind="stable").reset_index(drop=True)
