"""Fig. 5b: cumulative ablation curves of ConvNets trained with and without batch norm
on clean labels (mean +/- std over model instances x orderings).

Networks are the unit: each net's normalized AUC is averaged over its orderings first.
Nets that failed to train (singledir.stats.net_tables.training_failed) are excluded and
counted (networks_failed_excluded). Statistics: auc_batchnorm, auc_no_batchnorm (mean
over nets, bootstrap over nets), auc_difference_bn_minus_nobn (bootstrap with the two
groups resampled independently; permutation p over nets with the smallest p the design
allows, e.g. 1/3 for 2 + 2 nets), and the raw (unnormalized) area likewise."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting
from singledir.io import save_csv
from singledir.stats.net_tables import curve_matrix, failed_stat_rows, final_accuracies, mean_auc, spec_value
from singledir.stats.inference import difference_ci, mean_ci, stat_row

sm = snakemake
specs = sm.params.specs
boot, seed = sm.params.bootstrap, sm.params.seed
curves = pd.concat([pd.read_csv(f) for f in sm.input.curves], ignore_index=True)
curves.insert(1, "batch_norm", [bool(v) for v in spec_value(curves["model"], specs, "model", "batch_norm", True)])
nets = final_accuracies(sm.input.histories)
curves = curves.merge(nets, on="model", how="left")
save_csv(curves, sm.output.csv)

fig, ax = plt.subplots(figsize=(4.8, 3.4))
for bn, color, name in ((True, "tab:blue", "Batch norm"), (False, "tab:purple", "No batch norm")):
    c = curves[curves["batch_norm"] == bn]
    if len(c):
        x, v = curve_matrix(c)
        plotting.band(ax, x, v, color=color, label=f"{name} ({plotting.count(c['model'].nunique())})")
ax.set_xlabel("Number of feature maps ablated")
ax.set_ylabel("Training accuracy")
ax.set_ylim(0, 1.02)
ax.legend(fontsize=7)
plotting.suptitle(fig, "Cumulative ablation with and without batch norm", sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

nets = nets.merge(mean_auc(curves), on="model")
nets["batch_norm"] = [bool(v) for v in spec_value(nets["model"], specs, "model", "batch_norm", True)]
ok = nets[~nets["failed"]]
bn, no = ok[ok["batch_norm"]], ok[~ok["batch_norm"]]
rows = [stat_row("auc_batchnorm", mean_ci(bn["auc"], boot, seed, "networks")),
        stat_row("auc_no_batchnorm", mean_ci(no["auc"], boot, seed, "networks")),
        stat_row("auc_difference_bn_minus_nobn", difference_ci(bn["auc"], no["auc"], np.mean, boot, seed, "networks")),
        stat_row("raw_auc_difference_bn_minus_nobn",
                 difference_ci(bn["raw_auc"], no["raw_auc"], np.mean, boot, seed, "networks")),
        *failed_stat_rows(nets)]
save_csv(pd.DataFrame(rows), sm.output.stats)
