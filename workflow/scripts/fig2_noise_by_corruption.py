"""Fig. 2: training accuracy under Gaussian noise (variance scaled per unit) per
fraction of corrupted labels; x axis log-scaled. Statistic: Spearman correlation of
noise robustness (mean accuracy over the noise scales, divided by the unperturbed
accuracy) with the corrupted fraction, resampling repeats."""
import matplotlib.pyplot as plt
import pandas as pd

from singledir.io import save_csv
from singledir.net_tables import with_corrupted_fraction
from singledir import plotting
from singledir.stats import by_fraction_stats

sm = snakemake
curves = with_corrupted_fraction(sm.input.curves, sm.params.specs)
save_csv(curves, sm.output.csv)

fig, ax = plt.subplots(figsize=(4.6, 3.4))
noisy = curves[curves["scale"] > 0]
plotting.bands_by_fraction(ax, noisy, "scale", "repeat", marker="o")
ax.set_xscale("log")
ax.set_xlabel("Noise variance / unit variance")
ax.set_ylabel("Training accuracy")
plotting.suptitle(fig, "Noise robustness vs label corruption", sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

# Robustness per (model, repeat): mean accuracy over positive scales / clean accuracy.
base = curves[curves["scale"] == 0].groupby("model")["accuracy"].mean()
rob = noisy.groupby(["model", "corrupted_fraction", "repeat"])["accuracy"].mean().reset_index()
rob["robustness"] = rob["accuracy"] / rob["model"].map(base).clip(lower=1e-12) if len(base) else rob["accuracy"]
save_csv(pd.DataFrame(by_fraction_stats(rob, "robustness", "noise_robustness", sm.params.bootstrap, sm.params.seed)),
         sm.output.stats)
