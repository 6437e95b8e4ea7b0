"""Fig. X1 (beyond the paper, E1): cheap reliance probes as a validation-free model-selection
signal. One point per probe: its cost (forward passes over the training set, log scale)
against its Spearman r with test accuracy over networks (95 % bootstrap CI over networks;
permutation p). Networks: the final weights of the figure's experiments (singledir.pipeline.plan.FIGURES)
trained without a regularizer of single-direction reliance: plain, dropout and batch-norm nets
(MNIST: the plain and dropout arms of the regularizer grid; CIFAR-10: the Fig. 4c sweep and the
Fig. 3 nets). The ablation-noise, reliance-penalty and class-selectivity arms were trained to
move what the probes measure, so they are left out (singledir.stats.model_selection.x1_networks),
counted (networks_regularized_excluded, by condition) and said under the figure.

Statistics (singledir.stats.model_selection.probe_selection_table): spearman_<probe>_vs_test_accuracy,
r_ratio_<probe>_to_full (CI: networks resampled, both r on the same resample),
cost_fraction_<probe>_of_full, selection_top<k>_percent_<probe> (the probe's pick of random
subsets is in the subset's top k by test accuracy; chance and a permutation null with the
probe shuffled across networks), headline_fraction (the one-point probe the claims judge),
networks_failed_excluded and networks_used (nets that never learned or diverged are left out,
as in Fig. 4c; counted among the unregularized nets)."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting

from singledir.analysis import probes
from singledir.io import save_csv
from singledir.stats.net_tables import data_class_count, excluded_note, failed_stat_rows, failure_reason
from singledir.stats.inference import result, stat_row
from singledir.stats.model_selection import probe_selection_table, regularized_note, regularized_stat_row, x1_networks
from singledir.pipeline.logs import io_summary, log_to, table_summary

sm = snakemake
with log_to(sm.log[0]):
    b = sm.params.figure["beyond"]
    t = pd.concat([pd.read_csv(f) for f in sm.input.probes], ignore_index=True)
    last = t[t["epoch"] == t.groupby("model")["epoch"].transform("max")]
    # only the unregularized nets are ranked: a regularizer of reliance trained the probe's own quantity
    n_all = last["model"].nunique()
    last, regularized = x1_networks(last)
    note_reg = regularized_note(regularized, n_all)
    print(note_reg or "no regularized net among the inputs")
    # Nets that never learned or diverged are left out and counted, as in Fig. 4c: an untrained
    # net's flat ablation curve scores a high AUC, which says nothing about reliance.
    per_net = last.drop_duplicates("model").set_index("model")
    n_classes = data_class_count(sm.input.data)
    per_net = per_net.assign(failure=[failure_reason(loss, acc, n_classes) for loss, acc in
                                      zip(per_net["train_loss"], per_net["train_accuracy"])])
    failed = per_net["failure"] != ""
    note = excluded_note(per_net.assign(failed=failed))
    print(note or "no net failed to train")
    last = last[~last["model"].isin(per_net.index[failed])]
    names = probes.probe_names(b["probe_fractions"])
    table, stats = probe_selection_table(last, names, sm.params.bootstrap, sm.params.seed, b["subset_size"],
                                         b["subsets"], b["top"])
    stats += failed_stat_rows(per_net.assign(failed=failed))
    stats.append(regularized_stat_row(regularized, n_all))
    stats.append(stat_row("headline_fraction", result(b["headline_fraction"], n=len(last["model"].unique()),
                                                      unit="networks")))
    table.insert(0, "n_networks", last["model"].nunique())
    save_csv(table, sm.output.csv)
    save_csv(pd.DataFrame(stats), sm.output.stats)

    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    # a probe whose r is undefined (too few networks left, e.g. after leaving out the
    # regularized arms) has no point; with none, the panel says so (a log axis needs data)
    plotted = table[np.isfinite(table["spearman_r"]) & (table["cost_passes"] > 0)]
    for i, r in plotted.iterrows():
        err = np.array([[r.spearman_r - r.ci_low], [r.ci_high - r.spearman_r]])
        ax.errorbar(r.cost_passes, r.spearman_r, yerr=np.nan_to_num(err), fmt="o", capsize=3, label=r.probe)
    ax.axhline(0, color="grey", lw=0.6)
    if len(plotted):
        ax.set_xscale("log")
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "too few networks to rank", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("Probe cost (forward passes over the training set)")
    ax.set_ylabel("Spearman r with test accuracy")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(f"{plotting.count(int(table['n_networks'].iloc[0]))}, 95 % CI over networks", fontsize=8)
    plotting.finish(fig, "Cheap reliance probes for model selection", sm.params.scale, sm.params.label,
                    sm.output.pdf, note="; ".join(filter(None, [note, note_reg])))
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
