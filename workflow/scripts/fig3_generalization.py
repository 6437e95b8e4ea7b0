"""Fig. 3: networks with identical topology and clean labels, differing only in seed
(initialization and data order) and learning rate.

(a) Cumulative ablation curves of the k best and k worst networks by generalization
error (mean +/- std over k networks x orderings). (b) Normalized AUC (mean over
orderings) against generalization error, one point per network, coloured by learning
rate, with Spearman's r. Generalization error = 1 - test accuracy at the end of
training (the nets fit the clean training set, so this is also the train-test gap;
the gap is kept in the CSV).

Statistics: spearman_auc_vs_generalization_error (bootstrap over networks); the mean
AUC of the best and worst groups and their difference (bootstrap over network x
ordering AUCs)."""
import matplotlib.pyplot as plt
import matplotlib.colors as mcolors
import numpy as np
import pandas as pd

from singledir import plotting
from singledir.group_compare import difference_ci
from singledir.io import save_csv
from singledir.net_tables import curve_matrix, extremes, final_performance, mean_auc, model_aucs, spec_value
from singledir.stats import mean_ci, spearman, stat_row

sm = snakemake
specs = sm.params.specs
boot, seed = sm.params.bootstrap, sm.params.seed
curves = pd.concat([pd.read_csv(f) for f in sm.input.curves], ignore_index=True)
nets = final_performance(sm.input.histories).merge(mean_auc(curves), on="model")
nets["lr"] = spec_value(nets["model"], specs, "train", "lr")
nets["seed"] = spec_value(nets["model"], specs, "train", "seed")
best, worst = extremes(nets, "generalization_error", sm.params.figure.get("extremes", 5))
nets["group"] = np.where(nets["model"].isin(best), "best", np.where(nets["model"].isin(worst), "worst", ""))

table = curves.merge(nets.drop(columns=["epoch"]), on="model")
save_csv(table, sm.output.csv)

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.8, 3.5))
for group, ids, color in (("best", best, "tab:blue"), ("worst", worst, "tab:red")):
    x, v = curve_matrix(curves[curves["model"].isin(ids)])
    plotting.band(ax, x, v, color=color, label=f"{len(ids)} {group} (gen. error "
                  f"{nets.loc[nets['model'].isin(ids), 'generalization_error'].mean():.3f})")
ax.set_xlabel("Number of feature maps ablated")
ax.set_ylabel("Training accuracy")
ax.set_ylim(0, 1.02)
ax.legend(fontsize=7, loc="upper right")
ax.set_title("a", loc="left", fontweight="bold")

lrs = np.asarray(nets["lr"], dtype=float)
norm = mcolors.LogNorm(lrs.min(), lrs.max()) if lrs.min() < lrs.max() else None
sc = ax2.scatter(nets["generalization_error"], nets["auc"], c=lrs, cmap="viridis", norm=norm, s=14,
                 edgecolor="k", linewidth=0.3)
fig.colorbar(sc, ax=ax2, pad=0.01).set_label("Learning rate")
r = spearman(nets["auc"], nets["generalization_error"], boot, seed)
ax2.text(0.98, 0.97, f"Spearman r = {r['value']:.3f}, p = {r['p']:.3g}\n95% CI [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
         f", n = {r['n']} nets", transform=ax2.transAxes, ha="right", va="top", fontsize=7)
ax2.set_xlabel("Generalization error (1 - test accuracy)")
ax2.set_ylabel("Area under ablation curve (normalized)")
ax2.set_title("b", loc="left", fontweight="bold")
plotting.suptitle(fig, "Reliance on single directions vs generalization (same topology, clean labels)",
                  sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

aucs = model_aucs(curves)
a_best = aucs.loc[aucs["model"].isin(best), "auc"]
a_worst = aucs.loc[aucs["model"].isin(worst), "auc"]
rows = [
    stat_row("spearman_auc_vs_generalization_error", r),
    stat_row("auc_best", mean_ci(a_best, boot, seed)),
    stat_row("auc_worst", mean_ci(a_worst, boot, seed)),
    stat_row("auc_difference_best_minus_worst", difference_ci(a_best, a_worst, np.mean, boot, seed)),
    stat_row("mean_generalization_error", mean_ci(nets["generalization_error"], boot, seed)),
]
save_csv(pd.DataFrame(rows), sm.output.stats)
