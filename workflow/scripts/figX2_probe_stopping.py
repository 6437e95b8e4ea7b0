"""Fig. X2 (beyond the paper, E1): cheap reliance probes as an early-stopping signal.

Per network of the figure's experiment (several seeds, snapshots over training), each rule
picks an epoch (singledir.analysis.probes.stop_epochs, patience from families.<family>.beyond):
every probe (its peak, patience rule on training data only), ``val_loss`` (the same rule on
the validation half of the test set) and ``oracle`` (the lowest test loss on the report
half; a bound, not a usable rule), plus ``final`` (no early stopping). Left: the chosen
epochs (one dot per seed); right: the report-half test loss at them (mean and 95 % CI over
seeds).

Statistics (networks = seeds): stop_epoch_<rule>, test_loss_at_<rule>,
test_accuracy_at_<rule> (mean, CI over seeds) and test_loss_<rule>_minus_val_loss (paired
by network, sign-flip permutation p; its CI is the inverted exact sign-flip test, which holds
its level at 4-8 seeds: singledir.stats.inference.shift_interval_paired), for every probe and
for final.
Nets that failed to train (singledir.stats.net_tables.training_failed: training accuracy
within 5 points of chance, or a non-finite loss) are left out, counted
(networks_failed_excluded) and named under the figure; with none left the figure says so."""
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting

from singledir.analysis import probes
from singledir.io import save_csv
from singledir.stats.net_tables import data_class_count, failed_stat_rows, final_accuracies, keep_trained
from singledir.stats.inference import mean_ci, paired_difference, stat_row
from singledir.pipeline.logs import io_summary, log_to, table_summary

sm = snakemake
with log_to(sm.log[0]):
    b = sm.params.figure["beyond"]
    boot, seed = sm.params.bootstrap, sm.params.seed
    t = pd.concat([pd.read_csv(f) for f in sm.input.probes], ignore_index=True)
    nets = final_accuracies(sm.input.histories, data_class_count(sm.input.data))
    t, note = keep_trained(t, nets)
    title = f"Early stopping by cheap probes (patience {b['patience']})"
    if t.empty:
        plotting.no_net_left(sm.output, title, sm.params.scale, sm.params.label, note, failed_stat_rows(nets), t)
        sys.exit(0)  # nothing else to draw or test
    names = probes.probe_names(b["probe_fractions"])
    trained = t[t["epoch"] > 0]  # an untrained net's flat curve scores ~1 (see Fig. 4a)
    stops = probes.stop_epochs(trained, names, b["patience"])
    final = trained[trained["epoch"] == trained.groupby("model")["epoch"].transform("max")].drop_duplicates("model")
    stops = pd.concat([stops, pd.DataFrame({"model": final["model"], "rule": "final", "epoch": final["epoch"],
                                            "test_loss": final["report_loss"], "test_accuracy": final["report_accuracy"],
                                            "final_epoch": final["epoch"]})], ignore_index=True)
    stops["patience"] = b["patience"]
    save_csv(stops, sm.output.csv)

    rules = names + ["val_loss", "oracle", "final"]
    val = stops[stops["rule"] == "val_loss"].set_index("model")
    rows = []
    for r in rules:
        s = stops[stops["rule"] == r].set_index("model")
        rows.append(stat_row(f"stop_epoch_{r}", mean_ci(s["epoch"], boot, seed, "networks")))
        rows.append(stat_row(f"test_loss_at_{r}", mean_ci(s["test_loss"], boot, seed, "networks")))
        rows.append(stat_row(f"test_accuracy_at_{r}", mean_ci(s["test_accuracy"], boot, seed, "networks")))
        if r not in ("val_loss", "oracle"):
            d = s["test_loss"] - val["test_loss"].reindex(s.index)
            rows.append(stat_row(f"test_loss_{r}_minus_val_loss",
                                 paired_difference(d, boot, seed, "networks", interval="permutation")))
    rows.append(stat_row("patience", {"value": b["patience"], "n": int(stops["model"].nunique()), "unit": "snapshots"}))
    save_csv(pd.DataFrame(rows + failed_stat_rows(nets)), sm.output.stats)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.5, 3.4), sharey=True)
    for i, r in enumerate(rules):
        s = stops[stops["rule"] == r]
        jitter = np.linspace(-0.15, 0.15, len(s)) if len(s) > 1 else [0.0]
        ax1.scatter(s["epoch"], i + np.asarray(jitter), s=12)
        ci = mean_ci(s["test_loss"], boot, seed)
        lo, hi = (ci["ci_low"], ci["ci_high"]) if np.isfinite(ci["ci_low"]) else (ci["value"], ci["value"])
        ax2.errorbar(ci["value"], i, xerr=[[ci["value"] - lo], [hi - ci["value"]]], fmt="o", capsize=3)
    ax1.set_yticks(range(len(rules)), rules, fontsize=7)
    ax1.set_xlabel("Epoch chosen (one dot per seed)")
    ax2.set_xlabel("Test loss at that epoch (report half)\nmean, 95 % CI over seeds")
    ax1.invert_yaxis()
    plotting.suptitle(fig, f"Early stopping by cheap probes ({plotting.count(stops['model'].nunique())}, "
                           f"patience {b['patience']})", sm.params.scale, sm.params.label)
    plotting.layout_with_note(fig, note)
    plotting.save(fig, sm.output.pdf)
    print(io_summary(dict(sm.input.items()), list(sm.output)))
    print(table_summary(sm.output.stats))
