"""Fig. X3 (beyond the paper, E2): cumulative ablation curves of nets trained with each
regularizer (and plain, dropout, batch norm), on clean (left) and corrupted (right) labels.
Accuracy on the training set (the labels each net was trained on) against the fraction of
units ablated, out to 100 % (past any dropout fraction); mean over networks and orderings,
band +/- 1 std over networks. Tidy CSV: one row per (network, fraction), orderings averaged.

Statistics: accuracy_at_<fraction>_<condition>_<labels> for the probe fractions (mean, CI over
networks).
Nets left out (singledir.stats.net_tables.excluded_by_labels): on clean labels every net that
failed to train (chance or a non-finite loss: its flat curve scores AUC ~1), on corrupted
labels only diverged ones (not fitting shuffled labels is what the memorization comparison
measures); counted (networks_failed_excluded) and named under the figure."""
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting

from singledir.analysis import probes
from singledir.io import save_csv
from singledir.stats.net_tables import (data_class_count, excluded_by_labels, failed_stat_rows, final_accuracies,
                                       keep_trained)
from singledir.stats.inference import mean_ci, stat_row
from singledir.pipeline.logs import io_summary, log_to, table_summary

TITLE = "Ablation curves by regularizer"
sm = snakemake
with log_to(sm.log[0]):
    b = sm.params.figure["beyond"]
    boot, seed = sm.params.bootstrap, sm.params.seed
    c = probes.add_condition(pd.concat([pd.read_csv(f) for f in sm.input.curves], ignore_index=True))
    judged = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    corrupted = c.drop_duplicates("model").set_index("model")["labels"] == "corrupted"
    judged["excluded"] = excluded_by_labels(judged, corrupted)
    c, note = keep_trained(c, judged, "excluded")
    if c.empty:
        plotting.no_net_left(sm.output, TITLE, sm.params.scale, sm.params.label, note,
                             failed_stat_rows(judged, "excluded"), c)
        sys.exit(0)  # nothing else to draw or test
    nets = c.groupby(["model", "condition", "labels", "fraction"], sort=False)["accuracy"].mean().reset_index()
    save_csv(nets, sm.output.csv)

    arms = [a for a in ("clean", "corrupted") if a in set(nets["labels"])]
    conds = list(dict.fromkeys(nets["condition"]))
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 3.4), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        for cond in conds:
            g = nets[(nets["labels"] == arm) & (nets["condition"] == cond)]
            if g.empty:
                continue
            wide = g.pivot_table(index="model", columns="fraction", values="accuracy")
            plotting.band(ax, wide.columns.to_numpy(float), wide.to_numpy(float),
                          label=f"{cond} ({plotting.count(len(wide))})", ls="--" if cond == "plain" else "-")
            if cond.startswith("dropout "):
                ax.axvline(float(cond.split()[1]), color="grey", lw=0.6, ls=":")
        ax.set_title(f"{arm} labels", fontsize=9)
        ax.set_xlabel("Fraction of units ablated")
    axes[0][0].set_ylabel("Training accuracy")
    axes[0][-1].legend(fontsize=6)
    plotting.finish(fig, TITLE, sm.params.scale, sm.params.label, sm.output.pdf, note=note)

    rows = []
    for (cond, arm), g in nets.groupby(["condition", "labels"], sort=False):
        for f in b["probe_fractions"]:
            near = g.assign(d=(g["fraction"] - f).abs()).sort_values("d").groupby("model").head(1)
            rows.append(stat_row(f"accuracy_at_{f:g}_{probes.stat_key(cond)}_{arm}",
                                 mean_ci(near["accuracy"], boot, seed, "networks")))
    save_csv(pd.DataFrame(rows + failed_stat_rows(judged, "excluded")), sm.output.stats)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
