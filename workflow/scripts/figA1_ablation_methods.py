"""Fig. A1: cumulative ablation to zero vs to the training-set mean (taken per element of
each feature map, appendix A.1), same networks, same orderings.

Networks are the unit: each net's AUC is averaged over its orderings (identical in both
modes) first. Statistics: auc_zero and auc_mean (mean over nets, bootstrap over nets)
and auc_difference_zero_minus_mean, the mean of the paired per-network differences
(bootstrap over nets, sign-flip permutation p with the smallest p the design allows).
Nets that failed to train (singledir.stats.net_tables.training_failed: training accuracy
within 5 points of chance, or a non-finite loss) are left out, counted
(networks_failed_excluded) and named under the figure; with none left the figure says so.
Whether the nets used converged (singledir.stats.net_tables.convergence_table, from each net's
history) is counted (networks_unconverged): the claim is inconclusive unless all did."""
import sys

import matplotlib.pyplot as plt
import pandas as pd

from singledir.figures import plotting
from singledir.io import save_csv
from singledir.stats.net_tables import (convergence_stat_rows, convergence_table, curve_matrix, data_class_count,
                                        failed_stat_rows, final_accuracies, keep_trained, mean_auc, unconverged_note)
from singledir.stats.inference import mean_ci, paired_difference, stat_row
from singledir.pipeline.logs import io_summary, log_to, table_summary

TITLE = "Ablation to zero vs to the empirical feature-map mean"
sm = snakemake
with log_to(sm.log[0]):
    boot, seed = sm.params.bootstrap, sm.params.seed
    zero = pd.concat([pd.read_csv(f) for f in sm.input.zero], ignore_index=True).assign(mode="zero")
    mean = pd.concat([pd.read_csv(f) for f in sm.input.mean], ignore_index=True).assign(mode="mean")
    curves = pd.concat([zero, mean], ignore_index=True)
    nets = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    curves, note = keep_trained(curves, nets)
    if curves.empty:
        plotting.no_net_left(sm.output, TITLE, sm.params.scale, sm.params.label, note,
                             failed_stat_rows(nets), curves)
        sys.exit(0)  # nothing else to draw or test
    zero, mean = curves[curves["mode"] == "zero"], curves[curves["mode"] == "mean"]
    save_csv(curves, sm.output.csv)
    # the nets used must have converged (the claim's gate): judged per net from its own history
    convergence = convergence_stat_rows(convergence_table(sm.input.histories), {"": curves["model"].unique()})
    print(unconverged_note(convergence) or "every net converged")

    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for c, color, name in ((zero, "tab:blue", "Ablation to zero"), (mean, "tab:orange", "Ablation to mean")):
        x, v = curve_matrix(c)
        plotting.band(ax, x, v, color=color, label=name)
    ax.set_xlabel("Number of feature maps ablated")
    ax.set_ylabel("Training accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, title=f"{plotting.count(zero['model'].nunique())} x "
              f"{plotting.count(zero['ordering'].nunique(), 'ordering')}",
              title_fontsize=7)
    plotting.finish(fig, TITLE, sm.params.scale, sm.params.label, sm.output.pdf,
                    note="; ".join(filter(None, [note, unconverged_note(convergence)])))

    a_zero = mean_auc(zero).set_index("model")["auc"]
    a_mean = mean_auc(mean).set_index("model")["auc"]
    paired = (a_zero - a_mean.reindex(a_zero.index)).dropna()
    rows = [stat_row("auc_zero", mean_ci(a_zero, boot, seed, "networks")),
            stat_row("auc_mean", mean_ci(a_mean, boot, seed, "networks")),
            stat_row("auc_difference_zero_minus_mean", paired_difference(paired, boot, seed, "networks"))]
    save_csv(pd.DataFrame(rows + failed_stat_rows(nets) + convergence), sm.output.stats)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
