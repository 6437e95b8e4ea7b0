"""Fig. 4a: train and test loss with the normalized ablation AUC over training.

The AUC line starts at the epoch-0 snapshot when there is one (an untrained net at
chance: its flat curve scores ~1, which is why the statistics use trained snapshots
only). The loss axis shows every point.

Statistics (one network; its ablation orderings are the resampling unit):
epoch_auc_peak (epoch of the highest mean AUC), epoch_min_test_loss,
epoch_auc_peak_minus_min_test_loss (CI: orderings resampled, the peak recomputed on
each resample; the test loss is one deterministic curve), snapshot_interval_at_events
(the largest gap between snapshots next to the peak or the minimum: what the snapshot
schedule can resolve), training_epochs, and spearman_auc_vs_test_loss across trained
snapshots (bootstrap over snapshots)."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.io import save_csv
from singledir.figures import plotting
from singledir.stats.inference import bootstrap_ci, result, spearman, stat_row

sm = snakemake
boot, seed = sm.params.bootstrap, sm.params.seed
t = pd.concat([pd.read_csv(f) for f in sm.input.tables])
save_csv(t, sm.output.csv)
model = t["model"].iloc[0]
t = t[t["model"] == model]
per_epoch = t.groupby("epoch").agg(auc=("auc", "mean"), auc_std=("auc", "std"), train_loss=("train_loss", "first"),
                                   test_loss=("test_loss", "first")).reset_index()
hist = per_epoch.dropna(subset=["test_loss"])

fig, ax = plt.subplots(figsize=(4.8, 3.4))
ax.plot(hist["epoch"], hist["train_loss"], color="tab:blue", label="Train loss")
ax.plot(hist["epoch"], hist["test_loss"], color="tab:purple", label="Test loss")
top = float(np.nanmax(hist[["train_loss", "test_loss"]].to_numpy())) if len(hist) else 1.0
ax.set_ylim(0, max(1e-3, top * 1.05))  # every point visible, the first (highest) ones included
ax.set_xlabel("Epoch")
ax.set_ylabel("Loss")
ax2 = ax.twinx()
ax2.spines["right"].set_visible(True)
ax2.plot(per_epoch["epoch"], per_epoch["auc"], color="tab:green", label="AUC", marker="o", ms=3)
ax2.fill_between(per_epoch["epoch"], per_epoch["auc"] - per_epoch["auc_std"], per_epoch["auc"] + per_epoch["auc_std"],
                 color="tab:green", alpha=0.2, lw=0)
ax2.set_ylabel("Normalized ablation AUC", color="tab:green")
lines = ax.get_lines() + ax2.get_lines()
ax.legend(lines, [l.get_label() for l in lines], fontsize=7, loc="center right")
plotting.suptitle(fig, "Ablation AUC over training", sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

trained = per_epoch[per_epoch["epoch"] > 0].dropna(subset=["test_loss"])
epochs = trained["epoch"].to_numpy(float)
peak = float(epochs[int(np.argmax(trained["auc"].to_numpy()))])
min_test = float(epochs[int(np.argmin(trained["test_loss"].to_numpy()))])
by_ordering = t[t["epoch"].isin(trained["epoch"])].pivot_table(index="ordering", columns="epoch", values="auc")
by_ordering = by_ordering.reindex(columns=trained["epoch"]).to_numpy(float)


def peak_minus_min(rows):
    return float(epochs[int(np.nanargmax(np.nanmean(rows, axis=0)))] - min_test)


diff_ci = bootstrap_ci(peak_minus_min, by_ordering, n_boot=boot, seed=seed)
all_epochs = np.sort(per_epoch["epoch"].to_numpy(float))
gaps = np.diff(all_epochs)


def gap_at(e):
    i = int(np.searchsorted(all_epochs, e))
    near = [gaps[j] for j in (i - 1, i) if 0 <= j < len(gaps)]
    return max(near) if near else float("nan")


n_epochs = float(all_epochs[-1])  # the schedule always snapshots the last epoch (singledir.pipeline.plan)
rows = [
    stat_row("epoch_auc_peak", result(peak, n=len(trained), unit="snapshots")),
    stat_row("epoch_min_test_loss", result(min_test, n=len(trained), unit="snapshots")),
    stat_row("epoch_auc_peak_minus_min_test_loss",
             result(peak - min_test, diff_ci, len(by_ordering), unit="ablation orderings")),
    stat_row("snapshot_interval_at_events", result(max(gap_at(peak), gap_at(min_test)), n=len(all_epochs),
                                                   unit="snapshots")),
    stat_row("training_epochs", result(n_epochs, n=1, unit="networks")),
    stat_row("spearman_auc_vs_test_loss", spearman(trained["auc"], trained["test_loss"], boot, seed, "snapshots")),
]
save_csv(pd.DataFrame(rows), sm.output.stats)
