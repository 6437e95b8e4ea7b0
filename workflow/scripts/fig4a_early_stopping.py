"""Fig. 4a: train and test loss with the normalized ablation AUC over training.

Statistics: the epoch at which the mean AUC peaks, the epoch of minimum test loss
(where train and test loss diverge), and the Spearman correlation of AUC with test
loss across snapshots (bootstrap over snapshots)."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.io import save_csv
from singledir import plotting
from singledir.stats import spearman, stat_row

sm = snakemake
t = pd.concat([pd.read_csv(f) for f in sm.input.tables])
save_csv(t, sm.output.csv)
model = t["model"].iloc[0]
t = t[t["model"] == model]
per_epoch = t.groupby("epoch").agg(auc=("auc", "mean"), auc_std=("auc", "std"), train_loss=("train_loss", "first"),
                                   test_loss=("test_loss", "first")).reset_index()
hist = per_epoch.dropna(subset=["test_loss"])
# At epoch 0 the net is at chance, where a normalized AUC means nothing: plot trained snapshots.
auc = per_epoch[per_epoch["epoch"] > 0]

fig, ax = plt.subplots(figsize=(4.8, 3.4))
ax.plot(hist["epoch"], hist["train_loss"], color="tab:blue", label="Train loss")
ax.plot(hist["epoch"], hist["test_loss"], color="tab:purple", label="Test loss")
top = np.nanpercentile(hist["test_loss"], 90) if len(hist) else 1
ax.set_ylim(0, max(1e-3, top * 1.2))  # crop the loss axis, as the paper does
ax.set_xlabel("Epoch")
ax.set_ylabel("Loss")
ax2 = ax.twinx()
ax2.spines["right"].set_visible(True)
ax2.plot(auc["epoch"], auc["auc"], color="tab:green", label="AUC", marker="o", ms=3)
ax2.fill_between(auc["epoch"], auc["auc"] - auc["auc_std"], auc["auc"] + auc["auc_std"],
                 color="tab:green", alpha=0.2, lw=0)
ax2.set_ylabel("Normalized ablation AUC", color="tab:green")
lines = ax.get_lines() + ax2.get_lines()
ax.legend(lines, [l.get_label() for l in lines], fontsize=7, loc="center right")
plotting.suptitle(fig, "Ablation AUC over training", sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

trained = per_epoch[per_epoch["epoch"] > 0].dropna(subset=["test_loss"])
peak = int(trained.loc[trained["auc"].idxmax(), "epoch"])
min_test = int(trained.loc[trained["test_loss"].idxmin(), "epoch"])
nan = float("nan")
rows = [
    {"statistic": "epoch_auc_peak", "value": peak, "ci_low": nan, "ci_high": nan, "n": len(trained), "p": nan},
    {"statistic": "epoch_min_test_loss", "value": min_test, "ci_low": nan, "ci_high": nan, "n": len(trained), "p": nan},
    stat_row("spearman_auc_vs_test_loss", spearman(trained["auc"], trained["test_loss"], sm.params.bootstrap, sm.params.seed)),
]
save_csv(pd.DataFrame(rows), sm.output.stats)
