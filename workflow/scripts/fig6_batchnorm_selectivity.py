"""Fig. 6: distributions of (a) class selectivity and (b) mutual information of every
feature map (all layers, test set), for ConvNets trained with and without batch norm
(all instances of each pooled, clean labels).

Dead feature maps (no activity on the test set) have selectivity 0 by definition
(paper footnote 4), so a difference in the number of dead maps would masquerade as a
difference in selectivity: the distributions and statistics use live maps, and the
dead fraction is reported per arm.

Networks are the unit of the comparisons (paper: 4 + 4 instances): per network, the
median selectivity and median MI of its live maps and the fraction of its live maps
with selectivity above ``figures.fig6.high_selectivity`` (the paper's "large fraction
of feature maps with high class selectivity"); then BN - no-BN differences of the
network means (bootstrap over nets, each arm resampled independently; permutation p
over nets with the smallest p the design allows). Both ways: the same for all maps as the
paper's footnote 4 counts them (dead maps at selectivity 0, and "highly selective or dead"):
selectivity_all_maps_difference_bn_minus_nobn, high_selectivity_or_dead_fraction_difference_bn_minus_nobn.
Nets that failed to train (singledir.stats.net_tables.training_failed: training accuracy
within 5 points of chance, or a non-finite loss) are left out, counted
(networks_failed_excluded) and named under the figure; with none left the figure says so.
Whether each arm's nets converged (singledir.stats.net_tables.convergence_table, from each
net's history) is counted per arm (networks_unconverged_bn, networks_unconverged_nobn): the
claims are inconclusive unless both arms converged."""
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting
from singledir.io import save_csv
from singledir.stats.net_tables import (convergence_stat_rows, convergence_table, data_class_count, failed_stat_rows,
                                        final_accuracies, keep_trained, live_map_summary, spec_value, unconverged_note)
from singledir.stats.inference import difference_ci, mean_ci, stat_row
from singledir.pipeline.logs import io_summary, log_to, table_summary

sm = snakemake
with log_to(sm.log[0]):
    specs = sm.params.specs
    boot, seed = sm.params.bootstrap, sm.params.seed
    units = pd.concat([pd.read_csv(f) for f in sm.input.units], ignore_index=True)
    nets = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    units, note = keep_trained(units, nets)
    title = "Class selectivity and mutual information with and without batch norm"
    if units.empty:
        plotting.no_net_left(sm.output, title, sm.params.scale, sm.params.label, note, failed_stat_rows(nets), units)
        sys.exit(0)  # nothing else to draw or test
    units.insert(1, "batch_norm", [bool(v) for v in spec_value(units["model"], specs, "model", "batch_norm", True)])
    units["dead"] = units["mean_activity"] <= 0
    save_csv(units, sm.output.csv)
    high = float(sm.params.figure.get("high_selectivity", 0.5))
    live = units[~units["dead"]]
    # both arms must have converged (the claims' gate): judged per net from its own history
    arm_of = units.drop_duplicates("model")
    convergence = convergence_stat_rows(convergence_table(sm.input.histories),
                                        {"bn": arm_of.loc[arm_of["batch_norm"], "model"],
                                         "nobn": arm_of.loc[~arm_of["batch_norm"], "model"]})
    print(unconverged_note(convergence) or "every net converged")

    groups = ((True, "tab:blue", "Batch norm"), (False, "tab:purple", "No batch norm"))
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.3))
    for ax, col, xlabel, panel in ((axes[0], "selectivity", "Class selectivity index", "a"),
                                   (axes[1], "mutual_information", "Mutual information (bits)", "b")):
        hi = max(1e-6, float(units[col].max()))
        bins = np.linspace(0, 1 if col == "selectivity" else hi, 31)
        for bn, color, name in groups:
            arm = units[units["batch_norm"] == bn]
            v = live.loc[live["batch_norm"] == bn, col]
            if len(v):
                ax.hist(v, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=color,
                        label=f"{name} ({plotting.count(arm['model'].nunique())}, median {v.median():.3f}, "
                              f"{arm['dead'].mean():.0%} dead)")
                ax.hist(v, bins=bins, density=True, histtype="step", color=color, lw=1.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Density (live feature maps)")
        ax.legend(fontsize=7)
        ax.set_title(panel, loc="left", fontweight="bold")
    plotting.finish(fig, title, sm.params.scale, sm.params.label, sm.output.pdf,
                    note="; ".join(filter(None, [note, unconverged_note(convergence)])))

    per_net = live_map_summary(units, high)
    bn, no = per_net[per_net["batch_norm"]], per_net[~per_net["batch_norm"]]
    rows = []
    for col, name in (("median_selectivity", "selectivity"), ("median_mi", "mi"),
                      ("high_selectivity_fraction", "high_selectivity_fraction"), ("dead_fraction", "dead_fraction"),
                      # both ways (the paper's footnote 4 counts dead maps): all maps, dead ones included
                      ("median_selectivity_all_maps", "selectivity_all_maps"),
                      ("high_selectivity_or_dead_fraction", "high_selectivity_or_dead_fraction")):
        rows.append(stat_row(f"{col}_bn", mean_ci(bn[col], boot, seed, "networks")))
        rows.append(stat_row(f"{col}_nobn", mean_ci(no[col], boot, seed, "networks")))
        rows.append(stat_row(f"{name}_difference_bn_minus_nobn",
                             difference_ci(bn[col], no[col], np.mean, boot, seed, "networks")))
    save_csv(pd.DataFrame(rows + failed_stat_rows(nets) + convergence), sm.output.stats)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
