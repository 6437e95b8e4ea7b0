"""Fig. 1 (a: MNIST, b: CIFAR-10, c: ImageNet): cumulative ablation curves per fraction
of corrupted labels (mean +/- std over orderings), and the Spearman correlation of the
normalized AUC with the fraction (resampling orderings). Axis labels and title may come
from ``params`` (the ImageNet rule names its layers and top-5)."""
import matplotlib.pyplot as plt
import pandas as pd

from singledir.auc import curve_aucs
from singledir.io import save_csv
from singledir.net_tables import with_corrupted_fraction
from singledir import plotting
from singledir.stats import by_fraction_stats

sm = snakemake
curves = with_corrupted_fraction(sm.input.curves, sm.params.specs)
save_csv(curves, sm.output.csv)

fig, ax = plt.subplots(figsize=(4.6, 3.4))
plotting.bands_by_fraction(ax, curves, "n_ablated", "ordering")
ax.set_xlabel(sm.params.get("xlabel", "Number of units ablated"))
ax.set_ylabel(sm.params.get("ylabel", "Training accuracy"))
default_title = f"{sm.params.label if sm.params.scale == 'paper' else ''} Cumulative ablation vs label corruption"
plotting.suptitle(fig, sm.params.get("title", default_title.strip()), sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)

aucs = curve_aucs(curves.drop(columns=["mode"]))
save_csv(pd.DataFrame(by_fraction_stats(aucs, "auc", "auc", sm.params.bootstrap, sm.params.seed)), sm.output.stats)
