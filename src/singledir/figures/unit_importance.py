"""Figs. 7 and A4: a unit statistic (class selectivity, mutual information) against the
impact of ablating each unit alone on the test loss, and its statistics.

Two layouts, chosen by the panel's settings (singledir.figures.registry): one scatter
coloured by layer with per-layer regression lines (MNIST, CIFAR-10), or, with
``per_layer_panel``, the pooled scatter coloured by depth beside Spearman's r per layer
with bootstrap 95 % CIs (ImageNet, Figs. 7d-e and A4d-e)."""

from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting
from singledir.stats.inference import per_network, pooled_spearman, spearman, stat_row


def statistics(units: pd.DataFrame, predictor: str, n_boot: int, seed: int) -> list[dict]:
    """Spearman r of ``predictor`` with the impact over all units, then per layer (by depth),
    then ``network_mean_spearman_<predictor>_vs_impact``: r over each network's own units,
    averaged over networks, CI resampling networks (the claims' statistic where several
    nets feed the panel: units of one net are not independent)."""
    corr = functools.partial(spearman, n_boot=n_boot, seed=seed)
    rows = [stat_row(f"spearman_{predictor}_vs_impact", corr(units[predictor], units["impact"]))]
    for depth, g in units.groupby("depth"):
        rows.append(stat_row(f"spearman_{predictor}_vs_impact_layer{depth}", corr(g[predictor], g["impact"])))
    if "model" in units:
        rows.append(stat_row(f"network_mean_spearman_{predictor}_vs_impact",
                             per_network(units, pooled_spearman(predictor, "impact"), n_boot, seed)))
    return rows


def scatter_figure(units: pd.DataFrame, settings: dict, scale: str, label: str, n_boot: int, seed: int):
    """One scatter coloured by layer (per-layer regression lines when there are more than two layers)."""
    corr = functools.partial(spearman, n_boot=n_boot, seed=seed)
    return plotting.unit_scatter(units, settings["predictor"], settings["xlabel"], settings["title"], scale, label,
                                 corr, per_layer=units["layer"].nunique() > 2)


def per_layer_figure(units: pd.DataFrame, settings: dict, scale: str, label: str, rows: list[dict]):
    """(d) every layer in one scatter coloured by depth, with the pooled r; (e) r per layer
    against depth with its CI (``rows``: :func:`statistics`)."""
    x = settings["predictor"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.6, 3.5))
    sc = ax.scatter(units[x], units["impact"], c=units["depth"].to_numpy(), cmap="viridis", s=5, alpha=0.6, lw=0)
    fig.colorbar(sc, ax=ax, pad=0.01).set_label("Layer")
    r = rows[0]
    ax.text(0.98, 0.97, f"r = {r['value']:.3f}, p = {r['p']:.3g}\n95% CI [{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
            transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.set_xlabel(settings["xlabel"])
    ax.set_ylabel("Impact of ablation on test loss")
    ax.set_title("All layers", fontsize=9)

    depths = sorted(units["depth"].unique())
    pl = np.array([(d, row["value"], row["ci_low"], row["ci_high"]) for d, row in zip(depths, rows[1:])], dtype=float)
    ok = np.isfinite(pl[:, 1])
    ax2.axhline(0, color="0.6", lw=0.8)
    ax2.errorbar(pl[ok, 0], pl[ok, 1], yerr=np.clip([pl[ok, 1] - pl[ok, 2], pl[ok, 3] - pl[ok, 1]], 0, None), fmt="o",
                 ms=3, color="tab:blue", ecolor="0.7", elinewidth=0.8)
    ax2.set_xlabel("Layer")
    ax2.set_ylabel(f"Spearman r ({settings['short']} vs impact)")
    ax2.set_title("Per layer", fontsize=9)
    plotting.suptitle(fig, settings["title"], scale, label)
    fig.tight_layout()
    return fig


def draw(units: pd.DataFrame, settings: dict, scale: str, label: str, n_boot: int, seed: int):
    """(figure, statistics rows) of one family's panel."""
    rows = statistics(units, settings["predictor"], n_boot, seed)
    if settings.get("per_layer_panel"):
        return per_layer_figure(units, settings, scale, label, rows), rows
    return scatter_figure(units, settings, scale, label, n_boot, seed), rows
