"""Figs. 7d-e and A4d-e: a unit statistic (class selectivity or mutual information) vs the
impact of ablating each feature map alone on the test loss. (d) every analysed layer in one
scatter, coloured by depth, with Spearman's r and p; (e) Spearman's r per layer against
depth, with bootstrap 95 % CIs. Statistics: the pooled and per-layer correlations."""
import functools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir.figures import plotting
from singledir.io import save_csv
from singledir.stats.inference import spearman, stat_row

sm = snakemake
x = sm.params.predictor
units = pd.concat([pd.read_csv(f) for f in sm.input.units])
save_csv(units, sm.output.csv)
corr = functools.partial(spearman, n_boot=sm.params.bootstrap, seed=sm.params.seed)

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.6, 3.5))
depth = units["depth"].to_numpy()
sc = ax.scatter(units[x], units["impact"], c=depth, cmap="viridis", s=5, alpha=0.6, lw=0)
cb = fig.colorbar(sc, ax=ax, pad=0.01)
cb.set_label("Layer")
r = corr(units[x], units["impact"])
ax.text(0.98, 0.97, f"r = {r['value']:.3f}, p = {r['p']:.3g}\n95% CI [{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
        transform=ax.transAxes, ha="right", va="top", fontsize=8)
ax.set_xlabel(sm.params.xlabel)
ax.set_ylabel("Impact of ablation on test loss")
ax.set_title("All layers", fontsize=9)

rows = [stat_row(f"spearman_{x}_vs_impact", r)]
per_layer = []
for d, g in units.groupby("depth"):
    res = corr(g[x], g["impact"])
    rows.append(stat_row(f"spearman_{x}_vs_impact_layer{d}", res))
    per_layer.append((d, res["value"], res["ci_low"], res["ci_high"]))
pl = np.array(per_layer, dtype=float)
ok = np.isfinite(pl[:, 1])
ax2.axhline(0, color="0.6", lw=0.8)
ax2.errorbar(pl[ok, 0], pl[ok, 1], yerr=np.clip([pl[ok, 1] - pl[ok, 2], pl[ok, 3] - pl[ok, 1]], 0, None), fmt="o", ms=3,
             color="tab:blue", ecolor="0.7", elinewidth=0.8)
ax2.set_xlabel("Layer")
ax2.set_ylabel(f"Spearman r ({sm.params.short} vs impact)")
ax2.set_title("Per layer", fontsize=9)
plotting.suptitle(fig, sm.params.title, sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)
save_csv(pd.DataFrame(rows), sm.output.stats)
