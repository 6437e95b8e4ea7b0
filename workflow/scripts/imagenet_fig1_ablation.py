"""Fig. 1c: top-5 training accuracy as feature maps of the last three layers are ablated
cumulatively, per fraction of corrupted labels (mean +/- std over random orderings), and the
Spearman correlation of the normalized AUC with the corrupted fraction."""
import matplotlib.pyplot as plt
import pandas as pd

from singledir import plotting
from singledir.ablation import curve_aucs
from singledir.io import save_csv
from singledir.stats import mean_ci, spearman, stat_row

sm = snakemake
specs = sm.params.specs
curves = pd.concat([pd.read_csv(f) for f in sm.input.curves])
curves.insert(1, "corrupted_fraction", curves["model"].map(lambda m: specs[m]["labels"]["fraction"]))
save_csv(curves, sm.output.csv)

fig, ax = plt.subplots(figsize=(4.6, 3.4))
cmap = plt.get_cmap("plasma")
fracs = sorted(curves["corrupted_fraction"].unique())
for i, f in enumerate(fracs):
    x, v = plotting.mean_std_by(curves[curves["corrupted_fraction"] == f], "n_ablated", "accuracy", "ordering")
    plotting.band(ax, x, v, label=f"{f:g}", color=cmap(i / max(1, len(fracs) - 1) * 0.85))
ax.set_xlabel(f"Number of feature maps ablated ({sm.params.layers_note})")
ax.set_ylabel("Training accuracy (top-5)")
ax.set_ylim(0, 1.02)
ax.legend(title="Fraction corrupted\nlabels", fontsize=7, title_fontsize=7)
plotting.suptitle(fig, "ResNet: cumulative ablation vs label corruption", sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

aucs = curve_aucs(curves.drop(columns=["mode"]))
rows = [stat_row("spearman_auc_vs_corrupted_fraction",
                 spearman(aucs["corrupted_fraction"], aucs["auc"], sm.params.bootstrap, sm.params.seed))]
for f, g in aucs.groupby("corrupted_fraction"):
    rows.append(stat_row(f"auc_fraction_{f:g}", mean_ci(g["auc"], sm.params.bootstrap, sm.params.seed)))
save_csv(pd.DataFrame(rows), sm.output.stats)
