"""Fig. 5: regularizers and reliance on single directions: dropout (a, MNIST) and batch
norm (b, CIFAR-10); each family draws its panel.

Fig. 5a: cumulative ablation curves of MLPs trained with dropout on clean and fully
corrupted labels; dashed vertical lines at the number of units equal to the dropout
fraction.

Statistics per dropout fraction p, every curve read at exactly round(p * N) units:
relative_accuracy_at_dropout_p<p>_<clean|corrupted> (accuracy there / unablated; the
orderings within each net resampled), mean_accuracy_past_dropout_... (mean accuracy
past that point / accuracy there, per net) and
past_dropout_difference_clean_minus_corrupted_p<p> (between networks: bootstrap and
permutation over nets).

Nets that failed to train (chance or a non-finite loss, on either labels: a net at chance
keeps an "accuracy ratio" of ~1, issue 30) are left out of the curves and statistics,
counted (networks_failed_excluded) and named under the figure.

Fig. 5b: cumulative ablation curves of ConvNets trained with and without batch norm
on clean labels (mean +/- std over model instances x orderings).

Networks are the unit: each net's normalized AUC is averaged over its orderings first.
Nets that failed to train (singledir.stats.net_tables.training_failed) are excluded and
counted (networks_failed_excluded). Whether each arm's nets converged, from their histories
(singledir.stats.net_tables.convergence_table), is counted per arm (networks_unconverged_bn,
networks_unconverged_nobn; the unconverged nets named with their loss change in the row's
note): the claim is inconclusive unless both arms converged. Statistics: auc_batchnorm, auc_no_batchnorm (mean
over nets, bootstrap over nets), auc_difference_bn_minus_nobn (bootstrap with the two
groups resampled independently; permutation p over nets with the smallest p the design
allows, e.g. 1/3 for 2 + 2 nets), and the raw (unnormalized) area likewise."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting
from singledir.io import save_csv
from singledir.stats.inference import bootstrap_ci, difference_ci, mean_ci, network_means, result, stat_row
from singledir.stats.net_tables import (convergence_stat_rows, convergence_table, curve_matrix, data_class_count,
                                        dropout_readings, excluded_note, failed_stat_rows, final_accuracies,
                                        keep_trained, mean_auc, spec_value, unconverged_note, with_corrupted_fraction)
from singledir.pipeline.logs import io_summary, log_to, table_summary


def dropout_5a(sm):
    specs = sm.params.specs
    c = with_corrupted_fraction(sm.input.curves, specs)
    c.insert(1, "dropout", c["model"].map(lambda m: specs[m]["model"]["dropout"]))
    nets = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    c, note = keep_trained(c, nets)
    title = "Dropout: robust only up to the dropout fraction"
    if c.empty:
        plotting.no_net_left(sm.output, title, sm.params.scale, sm.params.label, note, failed_stat_rows(nets), c)
        return
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
        ax.axvline(round(p * total), color=colors(i), ls="--", lw=0.8)  # where the statistics read it
    ax.set_xlabel("Number of units ablated")
    ax.set_ylabel("Training accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    plotting.finish(fig, title, sm.params.scale, sm.params.label, sm.output.pdf, note=note)

    # Statistics, one set per dropout fraction p. Each curve is read exactly at
    # round(p * N) units (rule ablation_curve puts that point on every dropout net's curve).
    per_curve = dropout_readings(c)
    boot, seed = sm.params.bootstrap, sm.params.seed
    rows = []
    for p, gp in per_curve.groupby("dropout"):
        for corrupted, g in gp.groupby("corrupted"):
            tag = f"p{p:g}_{'corrupted' if corrupted else 'clean'}"
            # Within-network: orderings resampled within each net (strata), nets averaged.
            nets_mean = lambda v, m: float(pd.Series(v).groupby(m).mean().mean())  # noqa: E731
            ci = bootstrap_ci(nets_mean, g["kept"].to_numpy(), g["model"].to_numpy(), n_boot=boot, seed=seed,
                              strata=g["model"].to_numpy())
            rows.append(stat_row(f"relative_accuracy_at_dropout_{tag}",
                                 result(nets_mean(g["kept"], g["model"]), ci, len(g), unit="orderings within networks")))
            rows.append(stat_row(f"mean_accuracy_past_dropout_{tag}",
                                 mean_ci(network_means(g, "past")["past"], boot, seed, "networks")))
        # Between networks: clean vs corrupted nets at this p, orderings averaged per net.
        by_net = network_means(gp, "past", ["model", "corrupted"])
        rows.append(stat_row(f"past_dropout_difference_clean_minus_corrupted_p{p:g}",
                             difference_ci(by_net.loc[~by_net["corrupted"], "past"],
                                           by_net.loc[by_net["corrupted"], "past"], np.mean, boot, seed, "networks")))
    save_csv(pd.DataFrame(rows + failed_stat_rows(nets)), sm.output.stats)


def batchnorm_5b(sm):
    specs = sm.params.specs
    boot, seed = sm.params.bootstrap, sm.params.seed
    curves = pd.concat([pd.read_csv(f) for f in sm.input.curves], ignore_index=True)
    curves.insert(1, "batch_norm", [bool(v) for v in spec_value(curves["model"], specs, "model", "batch_norm", True)])
    nets = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    note = excluded_note(nets)  # failed nets: left out of the curves and statistics, named under the figure
    print(note or "no net failed to train")
    curves = curves.merge(nets, on="model", how="left")
    save_csv(curves, sm.output.csv)
    curves = curves[~curves["failed"]]
    # both arms must have converged (the claim's gate): judged per net from its own history
    used = nets[~nets["failed"]].assign(batch_norm=lambda t: [bool(v) for v in spec_value(t["model"], specs, "model",
                                                                                             "batch_norm", True)])
    convergence = convergence_stat_rows(convergence_table(sm.input.histories),
                                        {"bn": used.loc[used["batch_norm"], "model"],
                                         "nobn": used.loc[~used["batch_norm"], "model"]})
    print(unconverged_note(convergence) or "every net converged")

    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for bn, color, name in ((True, "tab:blue", "Batch norm"), (False, "tab:purple", "No batch norm")):
        c = curves[curves["batch_norm"] == bn]
        if len(c):
            x, v = curve_matrix(c)
            plotting.band(ax, x, v, color=color, label=f"{name} ({plotting.count(c['model'].nunique())})")
    ax.set_xlabel("Number of feature maps ablated")
    ax.set_ylabel("Training accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    plotting.finish(fig, "Cumulative ablation with and without batch norm", sm.params.scale, sm.params.label, sm.output.pdf,
                    note="; ".join(filter(None, [note, unconverged_note(convergence)])))

    nets = nets.merge(mean_auc(curves), on="model")
    nets["batch_norm"] = [bool(v) for v in spec_value(nets["model"], specs, "model", "batch_norm", True)]
    ok = nets[~nets["failed"]]
    bn, no = ok[ok["batch_norm"]], ok[~ok["batch_norm"]]
    rows = [stat_row("auc_batchnorm", mean_ci(bn["auc"], boot, seed, "networks")),
            stat_row("auc_no_batchnorm", mean_ci(no["auc"], boot, seed, "networks")),
            stat_row("auc_difference_bn_minus_nobn", difference_ci(bn["auc"], no["auc"], np.mean, boot, seed, "networks")),
            stat_row("raw_auc_difference_bn_minus_nobn",
                     difference_ci(bn["raw_auc"], no["raw_auc"], np.mean, boot, seed, "networks")),
            *failed_stat_rows(nets), *convergence]
    save_csv(pd.DataFrame(rows), sm.output.stats)


DRAW = {"mnist": dropout_5a, "cifar10": batchnorm_5b}

sm = snakemake
with log_to(sm.log[0]):
    DRAW[sm.wildcards.family](sm)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
