"""Shared figure styling: titles that name the scale, mean +/- std bands, saving."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from singledir.io import save_csv, save_figure  # noqa: E402
from singledir.stats.inference import spearman_r  # noqa: E402

plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                     "legend.frameon": False, "figure.dpi": 100})


def scale_note(scale: str, label: str) -> str:
    """'' at paper scale; otherwise a note that names the scale and the data used."""
    return "" if scale == "paper" else f"\n[{scale} scale: {label}]"


def suptitle(fig, text: str, scale: str, label: str) -> None:
    fig.suptitle(text + scale_note(scale, label), fontsize=10)


def band(ax, x, values: pd.DataFrame | np.ndarray, label=None, color=None, ls="-", marker=None):
    """Plot the mean of ``values`` (rows = repeats, columns = x) with a +/- 1 std band."""
    v = np.asarray(values, dtype=float)
    mean, std = v.mean(0), v.std(0)
    line, = ax.plot(x, mean, label=label, color=color, ls=ls, marker=marker, ms=3)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    return line


def count(n: int, noun: str = "net") -> str:
    """'1 net', '3 nets' (legends and annotations)."""
    return f"{int(n)} {noun}{'' if int(n) == 1 else 's'}"


def mean_std_by(df: pd.DataFrame, x: str, y: str, rep: str):
    """Pivot a tidy table to (repeats x x-values) for :func:`band`."""
    table = df.pivot_table(index=rep, columns=x, values=y)
    return table.columns.values, table.values


def bands_by_fraction(ax, table: pd.DataFrame, x: str, rep: str, marker=None) -> None:
    """Mean +/- std of accuracy over ``rep`` against ``x``, one band per corrupted
    fraction (plasma colours), with the legend (Figs. 1 and 2)."""
    cmap = plt.get_cmap("plasma")
    fracs = sorted(table["corrupted_fraction"].unique())
    for i, f in enumerate(fracs):
        xs, v = mean_std_by(table[table["corrupted_fraction"] == f], x, "accuracy", rep)
        band(ax, xs, v, label=f"{f:g}", color=cmap(i / max(1, len(fracs) - 1) * 0.85), marker=marker)
    ax.set_ylim(0, 1.02)
    ax.legend(title="Fraction corrupted\nlabels", fontsize=7, title_fontsize=7)


def save(fig, path) -> None:
    save_figure(fig, path)
    plt.close(fig)


def no_net_left(outputs, title: str, scale: str, label: str, note: str, rows: list[dict], table: pd.DataFrame) -> None:
    """A figure rule's outputs (``pdf``, ``csv``, ``stats``) when every net it would draw failed
    to train (``note``, e.g. "the only net failed to train: <model> diverged at epoch 3
    (training loss nan)"): the PDF with its title and that sentence, the (empty) tidy
    ``table`` and the statistics ``rows`` (:func:`singledir.stats.net_tables.failed_stat_rows`:
    the claims read there that no net is left, and say so)."""
    fig, ax = plt.subplots(figsize=(4.8, 2.4))
    ax.axis("off")
    ax.text(0.5, 0.5, textwrap.fill(f"Nothing to draw: {note}", 60), ha="center", va="center", fontsize=8,
            transform=ax.transAxes)
    finish(fig, title, scale, label, outputs.pdf)
    save_csv(table, outputs.csv)
    save_csv(pd.DataFrame(rows), outputs.stats)


def finish(fig, title: str, scale: str, label: str, path, note: str = "") -> None:
    """The end of every figure: its title (with the scale note), a tight layout, and the
    atomic save (the figure is closed). ``note`` (e.g. the nets a figure left out because
    they failed to train, :func:`singledir.stats.net_tables.excluded_note`) is printed in
    small type under the panels, so an exclusion is never silent."""
    suptitle(fig, title, scale, label)
    layout_with_note(fig, note)
    save(fig, path)


def layout_with_note(fig, note: str = "") -> None:
    """A tight layout, with ``note`` (if any) in small type under the panels (:func:`finish`;
    figures titled elsewhere, e.g. :mod:`singledir.figures.unit_importance`, call it before saving)."""
    if note:
        text = textwrap.fill(note, int(fig.get_figwidth() * 24))  # ~24 characters per inch at 5.5 pt
        fig.text(0.5, 0.005, text, ha="center", va="bottom", fontsize=5.5, color="0.3")
        fig.tight_layout(rect=(0, 0.01 + 0.03 * (text.count("\n") + 1), 1, 1))
    else:
        fig.tight_layout()


LAYER_COLORS = plt.get_cmap("viridis")


def unit_scatter(units: pd.DataFrame, predictor: str, xlabel: str, title: str, scale: str, label: str,
                 stats_fn, per_layer: bool = False):
    """Scatter of ``predictor`` vs single-unit ablation impact, coloured by layer.

    Panel 1 pools all layers with the Spearman r and p in the panel; with
    ``per_layer`` a second panel draws a least-squares regression line and r per layer.
    """
    layers = list(dict.fromkeys(units.sort_values("depth")["layer"]))
    colors = {l: LAYER_COLORS(i / max(1, len(layers) - 1)) for i, l in enumerate(layers)}
    ncols = 2 if per_layer else 1
    # With per_layer, the second panel's legend (outside, right) names the layers for both.
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols + (1.3 if per_layer else 0), 3.4), squeeze=False)
    ax = axes[0, 0]
    for l in layers:
        u = units[units["layer"] == l]
        ax.scatter(u[predictor], u["impact"], s=6, alpha=0.6, color=colors[l], label=f"Layer {u['depth'].iloc[0]}")
    r = stats_fn(units[predictor], units["impact"])
    ax.text(0.98, 0.97, f"r = {r['value']:.3f}, p = {r['p']:.3g}\n95% CI [{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
            transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Impact of ablation on loss")
    if len(layers) <= 12 and not per_layer:
        ax.legend(fontsize=7, markerscale=2, loc="upper left")
    if per_layer:
        ax2 = axes[0, 1]
        for l in layers:
            u = units[units["layer"] == l]
            if len(u) > 2 and u[predictor].std() > 0:
                k, b = np.polyfit(u[predictor], u["impact"], 1)
                xs = np.linspace(u[predictor].min(), u[predictor].max(), 10)
                r_l = spearman_r(u[predictor], u["impact"])
                ax2.plot(xs, k * xs + b, color=colors[l], lw=1.2, label=f"Layer {u['depth'].iloc[0]}: r = {r_l:.2f}")
        ax2.set_xlabel(xlabel)
        ax2.set_ylabel("Impact of ablation on loss (per-layer fit)")
        if len(layers) <= 12:
            ax2.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    suptitle(fig, title, scale, label)
    fig.tight_layout()
    return fig
