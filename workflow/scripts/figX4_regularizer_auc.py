"""Fig. X4 (beyond the paper, E2): does a regularizer lower single-direction reliance, and
at what price? Left: full normalized ablation AUC (training data) against test accuracy, one
point per network, by condition (regularizer and strength; plain, dropout, batch norm), filled
for clean labels, open for corrupted labels. Right: the mean class selectivity of the ablated
layers (test set, true classes) per condition, clean labels.

Tidy CSV: one row per network (final weights): condition, labels, auc, test_accuracy,
train_accuracy (memorization of its own labels), mean_selectivity.

Statistics per condition and labels (networks = seeds; CI over networks): auc_<cond>_<labels>,
test_accuracy_..., train_accuracy_..., selectivity_...; and for every condition but plain the
difference to plain with the same labels (difference_ci: permutation p over networks, and
a CI from the inverted exact permutation test of a shift, which holds its level at 4-8
networks: singledir.stats.inference.shift_interval_two_sample): auc_diff_<cond>_minus_plain_<labels>,
test_accuracy_diff_..., train_accuracy_diff_..., selectivity_diff_...; where a batch-norm arm
ran (CIFAR-10), the same differences of every regularizer to it: ..._diff_<cond>_minus_batch_norm_<labels>.
Nets left out (singledir.stats.net_tables.excluded_by_labels): on clean labels every net that
failed to train (chance or a non-finite loss: its flat curve scores AUC ~1), on corrupted
labels only diverged ones (not fitting shuffled labels is what the memorization comparison
measures); counted (networks_failed_excluded) and named under the figure. Whether each
condition's nets converged (singledir.stats.net_tables.convergence_table, from each net's
history; a corrupted-label net also when it memorized its labels) is counted per condition and
labels (networks_unconverged_<cond>_<labels>): a claim comparing two arms is inconclusive
unless both converged."""
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting

from singledir.analysis import probes
from singledir.io import save_csv
from singledir.stats.net_tables import (convergence_stat_rows, convergence_table, data_class_count,
                                        excluded_by_labels, failed_stat_rows, final_accuracies, keep_trained,
                                        unconverged_note)
from singledir.stats.inference import difference_ci, mean_ci, stat_row
from singledir.pipeline.logs import io_summary, log_to, table_summary

# The arms every condition is compared with (same labels): plain training, then batch norm
# (CIFAR-10's reg_batchnorm; batch norm itself is compared with plain only).
REFERENCES = ["plain", "batch norm"]

TITLE = "Regularizers vs reliance on single directions"
sm = snakemake
with log_to(sm.log[0]):
    boot, seed = sm.params.bootstrap, sm.params.seed
    t = pd.concat([pd.read_csv(f) for f in sm.input.probes], ignore_index=True)
    t = t[t["epoch"] == t.groupby("model")["epoch"].transform("max")]
    t = probes.add_condition(t)
    judged = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    corrupted = t.drop_duplicates("model").set_index("model")["labels"] == "corrupted"
    judged["excluded"] = excluded_by_labels(judged, corrupted)
    t, note = keep_trained(t, judged, "excluded")
    if t.empty:
        plotting.no_net_left(sm.output, TITLE, sm.params.scale, sm.params.label, note,
                             failed_stat_rows(judged, "excluded"), t)
        sys.exit(0)  # nothing else to draw or test
    nets = (t[t["probe"] == probes.FULL]
            .rename(columns={"value": "auc"})
            [["model", "condition", "labels", "regularizer", "strength", "dropout", "batch_norm", "seed", "auc",
              "test_accuracy", "test_loss", "train_accuracy", "mean_selectivity"]]
            .reset_index(drop=True))
    save_csv(nets, sm.output.csv)
    # every arm must have converged (the claims' gate): judged per net from its own history
    convergence = convergence_stat_rows(
        convergence_table(sm.input.histories, corrupted.to_dict()),
        {f"{probes.stat_key(cond)}_{arm}": g["model"] for (cond, arm), g in nets.groupby(["condition", "labels"],
                                                                                         sort=False)})
    print(unconverged_note(convergence) or "every net converged")

    measures = {"auc": "auc", "test_accuracy": "test_accuracy", "train_accuracy": "train_accuracy",
                "selectivity": "mean_selectivity"}
    rows = []
    for (cond, arm), g in nets.groupby(["condition", "labels"], sort=False):
        key = f"{probes.stat_key(cond)}_{arm}"
        for name, col in measures.items():
            rows.append(stat_row(f"{name}_{key}", mean_ci(g[col], boot, seed, "networks")))
        for ref in REFERENCES:
            base = nets[(nets["condition"] == ref) & (nets["labels"] == arm)]
            if cond not in REFERENCES[:REFERENCES.index(ref) + 1] and len(base):
                for name, col in measures.items():
                    rows.append(stat_row(f"{name}_diff_{probes.stat_key(cond)}_minus_{probes.stat_key(ref)}_{arm}",
                                         difference_ci(g[col], base[col], np.mean, boot, seed, "networks",
                                                       interval="permutation")))
    save_csv(pd.DataFrame(rows + failed_stat_rows(judged, "excluded") + convergence), sm.output.stats)

    conds = list(dict.fromkeys(nets["condition"]))
    colors = {c: plt.cm.tab10(i % 10) for i, c in enumerate(conds)}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.0, 3.6), gridspec_kw={"width_ratios": [1.3, 1]})
    for cond in conds:
        for arm, fill in (("clean", True), ("corrupted", False)):
            g = nets[(nets["condition"] == cond) & (nets["labels"] == arm)]
            if len(g):
                ax1.scatter(g["test_accuracy"], g["auc"], s=22, color=colors[cond] if fill else "none",
                            edgecolors=colors[cond], label=cond if fill else None)
    ax1.set_title("Robustness vs test accuracy, per network", fontsize=9)
    ax1.set_xlabel("Test accuracy")
    ax1.set_ylabel("Normalized ablation AUC (training data)")
    ax1.legend(fontsize=6, title="filled: clean, open: corrupted", title_fontsize=6)
    clean = nets[nets["labels"] == "clean"]
    for i, cond in enumerate(conds):
        g = clean[clean["condition"] == cond]
        if len(g) == 0:
            continue
        ci = mean_ci(g["mean_selectivity"], boot, seed)
        lo, hi = (ci["ci_low"], ci["ci_high"]) if np.isfinite(ci["ci_low"]) else (ci["value"],) * 2
        ax2.errorbar(i, ci["value"], yerr=[[ci["value"] - lo], [hi - ci["value"]]], fmt="o", capsize=3, color=colors[cond])
        ax2.scatter(np.full(len(g), i + 0.15), g["mean_selectivity"], s=8, color=colors[cond], alpha=0.6)
    ax2.set_xticks(range(len(conds)), conds, rotation=35, ha="right", fontsize=6)
    ax2.set_title("Class selectivity per condition", fontsize=9)
    ax2.set_ylabel("Mean class selectivity (clean labels)")
    plotting.finish(fig, TITLE, sm.params.scale, sm.params.label, sm.output.pdf,
                    note="; ".join(filter(None, [note, unconverged_note(convergence)])))
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
