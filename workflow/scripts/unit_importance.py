"""Figs. 7 and A4 (MNIST, CIFAR-10): a unit statistic (``params.predictor``: class
selectivity for Fig. 7, mutual information for Fig. A4) vs the impact of ablating each
unit alone on the test loss, coloured by layer, with Spearman r and p (bootstrap CI over
units); per-layer correlations too."""
import functools

import pandas as pd

from singledir.io import save_csv
from singledir.figures import plotting
from singledir.stats.inference import spearman, stat_row

sm = snakemake
units = pd.concat([pd.read_csv(f) for f in sm.input.units])
save_csv(units, sm.output.csv)
corr = functools.partial(spearman, n_boot=sm.params.bootstrap, seed=sm.params.seed)
x = sm.params.predictor
fig = plotting.unit_scatter(units, x, sm.params.xlabel, sm.params.title, sm.params.scale, sm.params.label, corr,
                            per_layer=units["layer"].nunique() > 2)
plotting.save(fig, sm.output.pdf)
rows = [stat_row(f"spearman_{x}_vs_impact", corr(units[x], units["impact"]))]
for layer, g in units.groupby("depth"):
    rows.append(stat_row(f"spearman_{x}_vs_impact_layer{layer}", corr(g[x], g["impact"])))
save_csv(pd.DataFrame(rows), sm.output.stats)
