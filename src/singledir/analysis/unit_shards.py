"""Per-unit analysis of a model (section 3.4, appendices A.3-A.5), for every family,
optionally split into shards of layers that run as separate jobs and merge into the one table.

At paper scale the ImageNet single-map analysis ablates 22,720 feature maps one at a time
(about 10 GPU-hours for one model): one job would exceed a typical 4-hour cluster limit
and could use one GPU only. ``analysis.unit_shards: N`` splits the analysed layers into N
contiguous groups of about equal numbers of feature maps (:func:`shard_layers`); each
shard is one job (rule ``unit_shard``) computing :func:`unit_table` for its layers,
and rule ``unit_analysis`` concatenates them (:func:`merge_unit_tables`). Every number of a row
depends on its own feature map only (its spatial means over the test images, and the
loss with it alone ablated against the unablated loss), so the merged table is the
unsharded one; ``depth`` is the layer's position among all analysed layers.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from singledir.analysis.selectivity import class_selectivity_index, mutual_information
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


def unit_statistics(test_activations: Mapping, y_test: np.ndarray, layers: Sequence[str], n_classes: int,
                    mi_bins: int) -> dict[str, pd.DataFrame]:
    """Per layer, a table of its units (``unit``, ``selectivity``, ``mutual_information``,
    ``mean_activity``) from the test examples' activations held in memory
    (``test_activations[layer]``: full maps or spatial means, labels ``y_test``). This is the
    plain definition; the workflow streams the test set instead
    (:func:`singledir.analysis.unit_stream.stream_unit_statistics`, equal to this one)."""
    out = {}
    for name in layers:
        act = test_activations[name]
        out[name] = pd.DataFrame({
            "unit": range(act.shape[1]),
            "selectivity": class_selectivity_index(act, y_test, n_classes),
            "mutual_information": mutual_information(act, y_test, n_classes, mi_bins),
            "mean_activity": act.reshape(act.shape[0], act.shape[1], -1).mean((0, 2)),
        })
    return out


def unit_table(model, test_activations: dict, y_test: np.ndarray, x_impact, y_impact, layers: Sequence[str],
               only: Sequence[str] | None, n_classes: int, mi_bins: int,
               options: EngineOptions = EngineOptions()) -> pd.DataFrame:
    """Per unit of ``only`` (default: all ``layers``): class selectivity, mutual information
    and mean activity of ``test_activations[layer]`` (the test examples' activations: full
    maps or spatial means, :meth:`singledir.data.access.AnalysisData.test_activations`; labels
    ``y_test``; :func:`unit_statistics`), the single-unit ablation impact on the loss of
    ``x_impact`` (engine ``options``), and the L1 norm of its filter
    (:func:`singledir.models.api.unit_weights`). ``depth`` counts ``layers``. Holds every
    test activation in memory: the plain definition that
    :func:`singledir.analysis.unit_stream.streamed_unit_table` equals."""
    only = list(layers) if only is None else list(only)
    stats = unit_statistics(test_activations, y_test, only, n_classes, mi_bins)
    return assemble_unit_table(model, stats, x_impact, y_impact, layers, only, options)


def assemble_unit_table(model, stats: Mapping[str, pd.DataFrame], x_impact, y_impact, layers: Sequence[str],
                        only: Sequence[str], options: EngineOptions = EngineOptions()) -> pd.DataFrame:
    """The units table of the layers ``only`` from their test statistics ``stats``
    (:func:`unit_statistics`), with each unit's single-unit ablation impact on the loss of
    ``x_impact`` (the engine, chunk by chunk: ``options.chunk_size`` examples and
    ``options.max_rows`` rows per forward pass, whatever the number of examples) and the L1
    norm of its filter."""
    # both load torch: the table half of this module (shard_layers, merge_unit_tables) needs none
    from singledir.engine.ablation import single_unit_impact
    from singledir.models.api import unit_weights

    only = list(only)
    if not only:
        return pd.DataFrame({c: [] for c in UNIT_COLUMNS})
    depth_of = {name: i for i, name in enumerate(layers, start=1)}
    impact = single_unit_impact(model, x_impact, y_impact, only, options=options)
    parts = []
    for name in only:
        w = unit_weights(model, name).float().cpu()
        part = stats[name].copy()
        part.insert(0, "layer", name)
        part.insert(1, "depth", depth_of[name])
        part["l1_norm"] = w.abs().reshape(w.shape[0], -1).sum(1).numpy()
        parts.append(part)
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
