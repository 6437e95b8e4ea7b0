"""Fig. A3: class selectivity vs the L1 norm of each feature map's filter weights (any
family's units.csv; the filter is the convolution producing the unit, see the family's
model module). Left: all units, coloured by depth, with Spearman's r over all units;
right: Spearman's r within each layer.

The pooled correlation is confounded by fan-in: at He initialization a filter's L1
norm grows with its fan-in, hence with depth, and so does selectivity (Fig. A2), so a
pooled r mixes the depth trend into the relation. The claim is judged on the
within-layer correlations: mean_within_layer_spearman_selectivity_vs_l1_norm, the mean
of the per-layer r with a bootstrap CI over layers (n = layers; one network, ImageNet), and
network_mean_within_layer_spearman_selectivity_vs_l1_norm: r per (network, layer), averaged
within each network, CI resampling networks (CIFAR-10's claim; its layers are grouped within
a network, never by depth across nets). Also written: the pooled r and each layer's r
(bootstrap over units).
Nets that failed to train (singledir.stats.net_tables.training_failed: training accuracy
within 5 points of chance, or a non-finite loss) are left out, counted
(networks_failed_excluded) and named under the figure; with none left the figure says so."""
import functools
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting
from singledir.io import save_csv
from singledir.stats.net_tables import data_class_count, failed_stat_rows, final_accuracies, keep_trained
from singledir.stats.inference import mean_ci, per_network, spearman, stat_row, within_layers
from singledir.pipeline.logs import io_summary, log_to, table_summary

sm = snakemake
with log_to(sm.log[0]):
    units = pd.concat([pd.read_csv(f) for f in sm.input.units])
    nets = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    units, note = keep_trained(units, nets)
    if units.empty:
        plotting.no_net_left(sm.output, "Class selectivity vs filter L1 norm", sm.params.scale, sm.params.label, note,
                             failed_stat_rows(nets), units)
        sys.exit(0)  # nothing else to draw or test
    save_csv(units, sm.output.csv)
    corr = functools.partial(spearman, n_boot=sm.params.bootstrap, seed=sm.params.seed)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.6, 3.5))
    sc = ax.scatter(units["l1_norm"], units["selectivity"], c=units["depth"], cmap="viridis", s=5, alpha=0.6, lw=0)
    fig.colorbar(sc, ax=ax, pad=0.01).set_label("Layer")
    ax.set_xscale("log")
    r = corr(units["l1_norm"], units["selectivity"], unit="units")
    ax.set_title(f"All layers: pooled r = {r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]\n"
                 "(confounded by depth: L1 norm and selectivity both grow with it)", fontsize=7)
    ax.set_xlabel("L1 norm of filter weights")
    ax.set_ylabel("Class selectivity index")

    rows = [stat_row("spearman_selectivity_vs_l1_norm", r)]
    per_layer = []
    for d, g in units.groupby("depth"):
        res = corr(g["l1_norm"], g["selectivity"], unit="units")
        rows.append(stat_row(f"spearman_selectivity_vs_l1_norm_layer{d}", res))
        per_layer.append((d, res["value"], res["ci_low"], res["ci_high"]))
    pl = np.array(per_layer, dtype=float)
    ok = np.isfinite(pl[:, 1])
    ax2.axhline(0, color="0.6", lw=0.8)
    ax2.errorbar(pl[ok, 0], pl[ok, 1], yerr=np.clip([pl[ok, 1] - pl[ok, 2], pl[ok, 3] - pl[ok, 1]], 0, None), fmt="o", ms=3,
                 color="tab:blue", ecolor="0.7", elinewidth=0.8)
    within = mean_ci(pl[ok, 1], sm.params.bootstrap, sm.params.seed, "layers")
    rows.insert(0, stat_row("mean_within_layer_spearman_selectivity_vs_l1_norm", within))
    # per (network, layer), averaged within each network, CI over networks (several nets: CIFAR-10's claim)
    rows.insert(1, stat_row("network_mean_within_layer_spearman_selectivity_vs_l1_norm",
                            per_network(units, within_layers("l1_norm", "selectivity"), sm.params.bootstrap,
                                        sm.params.seed)))
    ax2.axhline(within["value"], color="tab:blue", lw=0.8, ls="--")
    ax2.set_xlabel("Layer")
    ax2.set_ylabel("Spearman r (selectivity vs L1 norm)")
    ax2.set_title(f"Within each layer: mean r = {within['value']:.3f} [{within['ci_low']:.3f}, {within['ci_high']:.3f}], "
                  f"{within['n']} layers", fontsize=7)
    plotting.finish(fig, "Class selectivity vs filter L1 norm", sm.params.scale, sm.params.label, sm.output.pdf, note=note)
    save_csv(pd.DataFrame(rows + failed_stat_rows(nets)), sm.output.stats)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
