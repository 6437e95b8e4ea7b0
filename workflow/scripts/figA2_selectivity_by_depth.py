"""Fig. A2: distribution of class selectivity per layer, by depth (any family's units.csv).

One violin per analysed layer (its feature maps' selectivity indices), with the median
marked. Statistics: Spearman correlation of selectivity with depth over all units
(bootstrap over units); the same r per network, averaged over networks with a CI over
networks (network_mean_spearman_selectivity_vs_depth, the CIFAR-10 claim's statistic: units of
one net are not independent); and the mean selectivity of each layer.
Nets that failed to train (singledir.stats.net_tables.training_failed: training accuracy
within 5 points of chance, or a non-finite loss) are left out, counted
(networks_failed_excluded) and named under the figure; with none left the figure says so."""
import sys

import matplotlib.pyplot as plt
import pandas as pd

from singledir.figures import plotting
from singledir.io import save_csv
from singledir.stats.net_tables import data_class_count, failed_stat_rows, final_accuracies, keep_trained
from singledir.stats.inference import mean_ci, per_network, pooled_spearman, spearman, stat_row
from singledir.pipeline.logs import io_summary, log_to, table_summary

sm = snakemake
with log_to(sm.log[0]):
    units = pd.concat([pd.read_csv(f) for f in sm.input.units])
    nets = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    units, note = keep_trained(units, nets)
    if units.empty:
        plotting.no_net_left(sm.output, "Class selectivity by depth", sm.params.scale, sm.params.label, note,
                             failed_stat_rows(nets), units)
        sys.exit(0)  # nothing else to draw or test
    save_csv(units, sm.output.csv)
    depths = sorted(units["depth"].unique())
    data = [units.loc[units["depth"] == d, "selectivity"].to_numpy() for d in depths]

    fig, ax = plt.subplots(figsize=(max(4.6, 0.16 * len(depths) + 2.5), 3.4))
    parts = ax.violinplot(data, positions=depths, widths=0.8, showextrema=False, showmedians=True)
    cmap = plt.get_cmap("viridis")
    for i, body in enumerate(parts["bodies"]):
        body.set_facecolor(cmap(i / max(1, len(depths) - 1)))
        body.set_alpha(0.7)
    parts["cmedians"].set_color("black")
    parts["cmedians"].set_linewidth(0.8)
    step = 1 if len(depths) <= 12 else 4
    ax.set_xticks(depths[::step])
    ax.set_xlabel("Layer (depth)")
    ax.set_ylabel("Class selectivity index")
    ax.set_ylim(0, 1)
    plotting.finish(fig, "Class selectivity by depth", sm.params.scale, sm.params.label, sm.output.pdf, note=note)

    rows = [stat_row("spearman_selectivity_vs_depth",
                     spearman(units["depth"], units["selectivity"], sm.params.bootstrap, sm.params.seed))]
    # the claim's statistic: r over each network's units, averaged, CI over networks
    rows.append(stat_row("network_mean_spearman_selectivity_vs_depth",
                         per_network(units, pooled_spearman("depth", "selectivity"), sm.params.bootstrap,
                                     sm.params.seed)))
    for d, v in zip(depths, data):
        rows.append(stat_row(f"mean_selectivity_layer{d}", mean_ci(v, sm.params.bootstrap, sm.params.seed)))
    save_csv(pd.DataFrame(rows + failed_stat_rows(nets)), sm.output.stats)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
