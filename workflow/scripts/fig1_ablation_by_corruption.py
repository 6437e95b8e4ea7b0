"""Fig. 1 (a: MNIST, b: CIFAR-10, c: ImageNet): cumulative ablation curves per fraction
of corrupted labels (mean +/- std over networks x orderings). Axis labels and title may
come from ``params`` (the ImageNet rule names its layers and top-5).

Statistics (networks are the unit, singledir.stats.inference): each network's normalized AUC
(and raw area) averaged over its orderings, Spearman's r of the network AUCs with the
corrupted fraction (bootstrap over networks, permutation p with the smallest p the
design allows), the mean AUC per fraction, and each fraction's lowest final training
accuracy (the memorization gate of the claims: the paper's corrupted nets fit their
labels). The CSV carries every network's final train and test accuracy. A net that
diverged in training (NaN or inf loss: its curve means nothing) is left out of the curves
and statistics, named under the figure and counted (networks_failed_excluded); a corrupted
net near chance stays (the claims' memorization gate reports it)."""
import matplotlib.pyplot as plt
import pandas as pd

from singledir.analysis.auc import curve_aucs
from singledir.io import save_csv
from singledir.stats.net_tables import (data_class_count, excluded_note, failed_stat_rows, final_accuracies,
                                       memorization_rows, with_corrupted_fraction)
from singledir.figures import plotting
from singledir.stats.inference import by_fraction_stats
from singledir.pipeline.logs import io_summary, log_to, table_summary

sm = snakemake
with log_to(sm.log[0]):
    curves = with_corrupted_fraction(sm.input.curves, sm.params.specs)
    all_nets = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    note = excluded_note(all_nets, "diverged")
    print(note or "no net diverged")
    nets = all_nets[~all_nets["diverged"]]
    curves = curves[curves["model"].isin(nets["model"])].merge(nets, on="model", how="left")
    save_csv(curves, sm.output.csv)

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    plotting.bands_by_fraction(ax, curves, "n_ablated", ["model", "ordering"])
    ax.set_xlabel(sm.params.figure.get("xlabel", "Number of units ablated"))
    ax.set_ylabel(sm.params.figure.get("ylabel", "Training accuracy"))
    default_title = f"{sm.params.label if sm.params.scale == 'paper' else ''} Cumulative ablation vs label corruption"
    plotting.finish(fig, sm.params.figure.get("title", default_title.strip()), sm.params.scale, sm.params.label, sm.output.pdf,
                    note=note)

    aucs = curve_aucs(curves[["model", "corrupted_fraction", "ordering", "n_ablated", "fraction", "accuracy"]])
    nets = nets.assign(corrupted_fraction=nets["model"].map(lambda m: sm.params.specs[m]["labels"]["fraction"]))
    rows = (by_fraction_stats(aucs, "auc", "auc", sm.params.bootstrap, sm.params.seed)
            + by_fraction_stats(aucs, "raw_auc", "raw_auc", sm.params.bootstrap, sm.params.seed)[1:]
            + memorization_rows(nets) + failed_stat_rows(all_nets, "diverged"))
    save_csv(pd.DataFrame(rows), sm.output.stats)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
