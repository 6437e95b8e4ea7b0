"""Fig. 1: cumulative ablation curves per fraction of corrupted labels (mean +/- std
over orderings), and the Spearman correlation of normalized AUC with the fraction."""
import matplotlib.pyplot as plt
import pandas as pd

from singledir.ablation import curve_aucs
from singledir.io import save_csv
from singledir import plotting
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
    c = curves[curves["corrupted_fraction"] == f]
    x, v = plotting.mean_std_by(c, "n_ablated", "accuracy", "ordering")
    plotting.band(ax, x, v, label=f"{f:g}", color=cmap(i / max(1, len(fracs) - 1) * 0.85))
ax.set_xlabel("Number of units ablated")
ax.set_ylabel("Training accuracy")
ax.set_ylim(0, 1.02)
ax.legend(title="Fraction corrupted\nlabels", fontsize=7, title_fontsize=7)
plotting.suptitle(fig, f"{sm.params.label if sm.params.scale == 'paper' else ''} Cumulative ablation "
                  "vs label corruption".strip(), sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

aucs = curve_aucs(curves.drop(columns=["mode"]))
rows = [stat_row("spearman_auc_vs_corrupted_fraction",
                 spearman(aucs["corrupted_fraction"], aucs["auc"], sm.params.bootstrap, sm.params.seed))]
for f, g in aucs.groupby("corrupted_fraction"):
    rows.append(stat_row(f"auc_fraction_{f:g}", mean_ci(g["auc"], sm.params.bootstrap, sm.params.seed)))
save_csv(pd.DataFrame(rows), sm.output.stats)
