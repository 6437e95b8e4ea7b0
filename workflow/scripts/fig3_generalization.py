"""Fig. 3: networks with identical topology and clean labels, differing only in seed
(initialization and data order) and learning rate.

(a) Cumulative ablation curves of the k best and k worst networks by generalization
error (mean +/- std over k networks x orderings). (b) Normalized AUC (mean over
orderings) against generalization error, one point per network, coloured by learning
rate, with Spearman's r. Generalization error = 1 - test accuracy at the end of
training (the nets fit the clean training set, so this is also the train-test gap;
the gap is kept in the CSV).

Networks are the unit (orderings averaged within each net first). Nets that failed to
train (singledir.stats.net_tables.training_failed: training accuracy within 5 points of
chance, or a non-finite loss) score a normalized AUC of 1.0 for a flat curve; they are
drawn as crosses, excluded from the statistics, counted (networks_failed_excluded) and
named under the figure. Chance is 1 / the data's class count.

Statistics: spearman_auc_vs_generalization_error (bootstrap over networks, permutation
p); the mean AUC of the best and worst groups and their difference (bootstrap and
permutation over networks); the raw (unnormalized) area likewise."""
import matplotlib.pyplot as plt
import matplotlib.colors as mcolors
import numpy as np
import pandas as pd

from singledir.figures import plotting
from singledir.io import save_csv
from singledir.stats.net_tables import (curve_matrix, data_class_count, excluded_note, extremes, failed_stat_rows,
                                       final_performance, mean_auc, spec_value)
from singledir.stats.inference import difference_ci, mean_ci, spearman, stat_row
from singledir.pipeline.logs import io_summary, log_to, table_summary

sm = snakemake
with log_to(sm.log[0]):
    specs = sm.params.specs
    boot, seed = sm.params.bootstrap, sm.params.seed
    curves = pd.concat([pd.read_csv(f) for f in sm.input.curves], ignore_index=True)
    nets = final_performance(sm.input.histories, data_class_count(sm.input.data)).merge(mean_auc(curves), on="model")
    note = excluded_note(nets)
    print(note or "no net failed to train")
    nets["lr"] = spec_value(nets["model"], specs, "train", "lr")
    nets["seed"] = spec_value(nets["model"], specs, "train", "seed")
    ok = nets[~nets["failed"]]
    best, worst = extremes(ok, "generalization_error", sm.params.figure.get("extremes", 5))
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
    sc = ax2.scatter(ok["generalization_error"], ok["auc"], c=np.asarray(ok["lr"], float), cmap="viridis", norm=norm,
                     s=14, edgecolor="k", linewidth=0.3)
    bad = nets[nets["failed"]]
    if len(bad):
        ax2.scatter(bad["generalization_error"], bad["auc"], marker="x", color="0.5", s=14,
                    label=f"failed to train ({plotting.count(len(bad))}, excluded)")
        ax2.legend(fontsize=6, loc="lower left")
    fig.colorbar(sc, ax=ax2, pad=0.01).set_label("Learning rate")
    r = spearman(ok["auc"], ok["generalization_error"], boot, seed, "networks", permutation=True)
    # The statistic goes in the panel title, out of the data.
    ax2.set_title(f"Spearman r = {r['value']:.3f}, p = {r['p']:.3g}, {plotting.count(r['n'])}\n"
                  f"95% CI [{r['ci_low']:.3f}, {r['ci_high']:.3f}]", fontsize=7, loc="right")
    ax2.set_xlabel("Generalization error (1 - test accuracy)")
    ax2.set_ylabel("Area under ablation curve (normalized)")
    ax2.set_title("b", loc="left", fontweight="bold")
    plotting.finish(fig, "Reliance on single directions vs generalization (same topology, clean labels)",
                    sm.params.scale, sm.params.label, sm.output.pdf, note=note)

    a_best = ok.loc[ok["model"].isin(best), "auc"]
    a_worst = ok.loc[ok["model"].isin(worst), "auc"]
    rows = [
        stat_row("spearman_auc_vs_generalization_error", r),
        stat_row("spearman_raw_auc_vs_generalization_error",
                 spearman(ok["raw_auc"], ok["generalization_error"], boot, seed, "networks", permutation=True)),
        stat_row("auc_best", mean_ci(a_best, boot, seed, "networks")),
        stat_row("auc_worst", mean_ci(a_worst, boot, seed, "networks")),
        stat_row("auc_difference_best_minus_worst", difference_ci(a_best, a_worst, np.mean, boot, seed, "networks")),
        stat_row("mean_generalization_error", mean_ci(ok["generalization_error"], boot, seed, "networks")),
        *failed_stat_rows(nets),
    ]
    save_csv(pd.DataFrame(rows), sm.output.stats)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
