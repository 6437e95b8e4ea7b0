"""Fig. 6: distributions of (a) class selectivity and (b) mutual information of every
feature map (all layers, test set), for ConvNets trained with and without batch norm
(all instances of each pooled, clean labels).

Statistics: the median of each distribution and the BN - no-BN differences of the
medians (bootstrap over feature maps, the two groups resampled independently), and
the fraction of dead feature maps (no activity on the test set; selectivity 0 by
definition, paper footnote 4)."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir import plotting
from singledir.group_compare import difference_ci, summary_ci
from singledir.io import save_csv
from singledir.net_tables import spec_value
from singledir.stats import mean_ci, stat_row

sm = snakemake
specs = sm.params.specs
boot, seed = sm.params.bootstrap, sm.params.seed
units = pd.concat([pd.read_csv(f) for f in sm.input.units], ignore_index=True)
units.insert(1, "batch_norm", [bool(v) for v in spec_value(units["model"], specs, "model", "batch_norm", True)])
units["dead"] = units["mean_activity"] <= 0
save_csv(units, sm.output.csv)

groups = ((True, "tab:blue", "Batch norm"), (False, "tab:purple", "No batch norm"))
fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.3))
for ax, col, xlabel, panel in ((axes[0], "selectivity", "Class selectivity index", "a"),
                               (axes[1], "mutual_information", "Mutual information (bits)", "b")):
    hi = max(1e-6, float(units[col].max()))
    bins = np.linspace(0, 1 if col == "selectivity" else hi, 31)
    for bn, color, name in groups:
        v = units.loc[units["batch_norm"] == bn, col]
        if len(v):
            ax.hist(v, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=color,
                    label=f"{name} ({units.loc[units['batch_norm'] == bn, 'model'].nunique()} nets, median {v.median():.3f})")
            ax.hist(v, bins=bins, density=True, histtype="step", color=color, lw=1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Density (feature maps)")
    ax.legend(fontsize=7)
    ax.set_title(panel, loc="left", fontweight="bold")
plotting.suptitle(fig, "Class selectivity and mutual information with and without batch norm",
                  sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

bn, no = units[units["batch_norm"]], units[~units["batch_norm"]]
rows = [
    stat_row("median_selectivity_bn", summary_ci(bn["selectivity"], np.median, boot, seed)),
    stat_row("median_selectivity_nobn", summary_ci(no["selectivity"], np.median, boot, seed)),
    stat_row("selectivity_difference_bn_minus_nobn",
             difference_ci(bn["selectivity"], no["selectivity"], np.median, boot, seed)),
    stat_row("median_mi_bn", summary_ci(bn["mutual_information"], np.median, boot, seed)),
    stat_row("median_mi_nobn", summary_ci(no["mutual_information"], np.median, boot, seed)),
    stat_row("mi_difference_bn_minus_nobn",
             difference_ci(bn["mutual_information"], no["mutual_information"], np.median, boot, seed)),
    stat_row("dead_fraction_bn", mean_ci(bn["dead"].astype(float), boot, seed)),
    stat_row("dead_fraction_nobn", mean_ci(no["dead"].astype(float), boot, seed)),
]
save_csv(pd.DataFrame(rows), sm.output.stats)
