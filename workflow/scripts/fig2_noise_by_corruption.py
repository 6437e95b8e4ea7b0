"""Fig. 2: training accuracy under Gaussian noise (variance scaled per unit) per
fraction of corrupted labels (mean +/- std over networks x noise draws); x axis
log-scaled.

Statistics (networks are the unit, singledir.stats.inference): each network's noise robustness
(mean accuracy over the positive noise scales divided by its unperturbed accuracy,
averaged over noise draws), Spearman's r of it with the corrupted fraction (bootstrap
over networks, permutation p), the mean per fraction, and each fraction's lowest final
training accuracy (memorization gate). The CSV carries every network's final train and
test accuracy."""
import matplotlib.pyplot as plt
import pandas as pd

from singledir.io import save_csv
from singledir.stats.net_tables import (data_class_count, excluded_note, failed_stat_rows, final_accuracies,
                                       memorization_rows, with_corrupted_fraction)
from singledir.figures import plotting
from singledir.stats.inference import by_fraction_stats
from singledir.pipeline.logs import io_summary, log_to, table_summary

sm = snakemake
with log_to(sm.log[0]):
    curves = with_corrupted_fraction(sm.input.curves, sm.params.specs)
    # A diverged net (NaN or inf loss) is left out, named under the figure and counted, as in Fig. 1.
    all_nets = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    note = excluded_note(all_nets, "diverged")
    print(note or "no net diverged")
    nets = all_nets[~all_nets["diverged"]]
    curves = curves[curves["model"].isin(nets["model"])].merge(nets, on="model", how="left")
    save_csv(curves, sm.output.csv)

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    noisy = curves[curves["scale"] > 0]
    plotting.bands_by_fraction(ax, noisy, "scale", ["model", "repeat"], marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("Noise variance / unit variance")
    ax.set_ylabel("Training accuracy")
    plotting.finish(fig, "Noise robustness vs label corruption", sm.params.scale, sm.params.label, sm.output.pdf,
                    note=note)

    # Robustness per (model, repeat): mean accuracy over positive scales / clean accuracy.
    base = curves[curves["scale"] == 0].groupby("model")["accuracy"].mean()
    rob = noisy.groupby(["model", "corrupted_fraction", "repeat"])["accuracy"].mean().reset_index()
    rob["robustness"] = rob["accuracy"] / rob["model"].map(base).clip(lower=1e-12) if len(base) else rob["accuracy"]
    nets = nets.assign(corrupted_fraction=nets["model"].map(lambda m: sm.params.specs[m]["labels"]["fraction"]))
    rows = (by_fraction_stats(rob, "robustness", "noise_robustness", sm.params.bootstrap, sm.params.seed)
            + memorization_rows(nets) + failed_stat_rows(all_nets, "diverged"))
    save_csv(pd.DataFrame(rows), sm.output.stats)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
