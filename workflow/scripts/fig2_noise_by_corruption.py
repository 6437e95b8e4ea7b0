"""Fig. 2: training accuracy under Gaussian noise (variance scaled per unit) per
fraction of corrupted labels; x axis log-scaled. Statistic: Spearman correlation of
noise robustness (mean accuracy over the noise scales, divided by the unperturbed
accuracy) with the corrupted fraction, resampling repeats."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.io import save_csv
from singledir import plotting
from singledir.stats import mean_ci, spearman, stat_row

sm = snakemake
specs = sm.params.specs
curves = pd.concat([pd.read_csv(f) for f in sm.input.curves])
curves.insert(1, "corrupted_fraction", curves["model"].map(lambda m: specs[m]["labels"]["fraction"]))
save_csv(curves, sm.output.csv)

fig, ax = plt.subplots(figsize=(4.6, 3.4))
cmap = plt.get_cmap("plasma")
fracs = sorted(curves["corrupted_fraction"].unique())
noisy = curves[curves["scale"] > 0]
for i, f in enumerate(fracs):
    x, v = plotting.mean_std_by(noisy[noisy["corrupted_fraction"] == f], "scale", "accuracy", "repeat")
    plotting.band(ax, x, v, label=f"{f:g}", color=cmap(i / max(1, len(fracs) - 1) * 0.85), marker="o")
ax.set_xscale("log")
ax.set_xlabel("Noise variance / unit variance")
ax.set_ylabel("Training accuracy")
ax.set_ylim(0, 1.02)
ax.legend(title="Fraction corrupted\nlabels", fontsize=7, title_fontsize=7)
plotting.suptitle(fig, "Noise robustness vs label corruption", sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

# Robustness per (model, repeat): mean accuracy over positive scales / clean accuracy.
base = curves[curves["scale"] == 0].groupby("model")["accuracy"].mean()
rob = noisy.groupby(["model", "corrupted_fraction", "repeat"])["accuracy"].mean().reset_index()
rob["robustness"] = rob["accuracy"] / rob["model"].map(base).clip(lower=1e-12) if len(base) else rob["accuracy"]
rows = [stat_row("spearman_noise_robustness_vs_corrupted_fraction",
                 spearman(rob["corrupted_fraction"], rob["robustness"], sm.params.bootstrap, sm.params.seed))]
for f, g in rob.groupby("corrupted_fraction"):
    rows.append(stat_row(f"noise_robustness_fraction_{f:g}", mean_ci(g["robustness"], sm.params.bootstrap, sm.params.seed)))
save_csv(pd.DataFrame(rows), sm.output.stats)
