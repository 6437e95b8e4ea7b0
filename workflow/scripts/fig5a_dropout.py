"""Fig. 5a: cumulative ablation curves of MLPs trained with dropout on clean and fully
corrupted labels; dashed vertical lines at the number of units equal to the dropout
fraction. Statistics: per model, the accuracy kept at the dropout fraction and the
normalized AUC past it, and their clean - corrupted differences."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.auc import curve_aucs
from singledir.io import save_csv
from singledir.net_tables import with_corrupted_fraction
from singledir import plotting
from singledir.stats import mean_ci, stat_row

sm = snakemake
specs = sm.params.specs
c = with_corrupted_fraction(sm.input.curves, specs)
c.insert(1, "dropout", c["model"].map(lambda m: specs[m]["model"]["dropout"]))
save_csv(c, sm.output.csv)

fig, ax = plt.subplots(figsize=(6.4, 3.4))
colors = plt.get_cmap("tab10")
ps = sorted(c["dropout"].unique())
total = c["n_ablated"].max()
for i, p in enumerate(ps):
    for f, ls in ((0.0, "-"), (1.0, ":")):
        g = c[(c["dropout"] == p) & (c["corrupted_fraction"] == f)]
        if len(g):
            x, v = plotting.mean_std_by(g, "n_ablated", "accuracy", "ordering")
            plotting.band(ax, x, v, color=colors(i), ls=ls,
                          label=f"p={p:g}, {'corrupted' if f > 0 else 'clean'} labels")
    ax.axvline(p * total, color=colors(i), ls="--", lw=0.8)
ax.set_xlabel("Number of units ablated")
ax.set_ylabel("Training accuracy")
ax.set_ylim(0, 1.02)
ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
plotting.suptitle(fig, "Dropout: robust only up to the dropout fraction", sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

rows = []
for (p, f), g in c.groupby(["dropout", "corrupted_fraction"]):
    tag = f"p{p:g}_{'corrupted' if f > 0 else 'clean'}"
    at_p = g[g["fraction"] <= p + 1e-9].groupby("ordering").apply(
        lambda o: o.sort_values("fraction")["accuracy"].iloc[-1] / o.sort_values("fraction")["accuracy"].iloc[0])
    rows.append(stat_row(f"relative_accuracy_at_dropout_{tag}", mean_ci(at_p, sm.params.bootstrap, sm.params.seed)))
    past = g[g["fraction"] >= p - 1e-9]
    auc_past = past.groupby("ordering").apply(
        lambda o: np.trapezoid(o.sort_values("fraction")["accuracy"], o.sort_values("fraction")["fraction"]) / (1 - p))
    rows.append(stat_row(f"mean_accuracy_past_dropout_{tag}", mean_ci(auc_past, sm.params.bootstrap, sm.params.seed)))
save_csv(pd.DataFrame(rows), sm.output.stats)
