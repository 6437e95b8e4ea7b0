"""Fig. 5b: cumulative ablation curves of ConvNets trained with and without batch norm
on clean labels (mean +/- std over model instances x orderings).

Statistics: auc_batchnorm, auc_no_batchnorm (mean normalized AUC over network x
ordering rows, bootstrap CI) and auc_difference_bn_minus_nobn (the two groups resampled
independently)."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir import plotting
from singledir.group_compare import difference_ci
from singledir.io import save_csv
from singledir.net_tables import curve_matrix, model_aucs, spec_value
from singledir.stats import mean_ci, stat_row

sm = snakemake
specs = sm.params.specs
boot, seed = sm.params.bootstrap, sm.params.seed
curves = pd.concat([pd.read_csv(f) for f in sm.input.curves], ignore_index=True)
curves.insert(1, "batch_norm", [bool(v) for v in spec_value(curves["model"], specs, "model", "batch_norm", True)])
save_csv(curves, sm.output.csv)

fig, ax = plt.subplots(figsize=(4.8, 3.4))
for bn, color, name in ((True, "tab:blue", "Batch norm"), (False, "tab:purple", "No batch norm")):
    c = curves[curves["batch_norm"] == bn]
    if len(c):
        x, v = curve_matrix(c)
        plotting.band(ax, x, v, color=color, label=f"{name} ({c['model'].nunique()} nets)")
ax.set_xlabel("Number of feature maps ablated")
ax.set_ylabel("Training accuracy")
ax.set_ylim(0, 1.02)
ax.legend(fontsize=7)
plotting.suptitle(fig, "Cumulative ablation with and without batch norm", sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

aucs = model_aucs(curves)
aucs["batch_norm"] = [bool(v) for v in spec_value(aucs["model"], specs, "model", "batch_norm", True)]
a_bn, a_no = aucs.loc[aucs["batch_norm"], "auc"], aucs.loc[~aucs["batch_norm"], "auc"]
rows = [stat_row("auc_batchnorm", mean_ci(a_bn, boot, seed)),
        stat_row("auc_no_batchnorm", mean_ci(a_no, boot, seed)),
        stat_row("auc_difference_bn_minus_nobn", difference_ci(a_bn, a_no, np.mean, boot, seed))]
save_csv(pd.DataFrame(rows), sm.output.stats)
