"""Fig. A3: class selectivity vs the L1 norm of each feature map's filter weights (any
family's units.csv; the filter is the convolution producing the unit, see the family's
model module). Left: all units, coloured by depth, with Spearman's r over all units;
right: Spearman's r within each layer (filter norms differ in scale between layers).
Statistics: the pooled and per-layer correlations (bootstrap over units)."""
import functools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from singledir import plotting
from singledir.io import save_csv
from singledir.stats import spearman, stat_row

sm = snakemake
units = pd.concat([pd.read_csv(f) for f in sm.input.units])
save_csv(units, sm.output.csv)
corr = functools.partial(spearman, n_boot=sm.params.bootstrap, seed=sm.params.seed)

fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.6, 3.5))
sc = ax.scatter(units["l1_norm"], units["selectivity"], c=units["depth"], cmap="viridis", s=5, alpha=0.6, lw=0)
fig.colorbar(sc, ax=ax, pad=0.01).set_label("Layer")
ax.set_xscale("log")
r = corr(units["l1_norm"], units["selectivity"])
ax.text(0.02, 0.97, f"r = {r['value']:.3f}, p = {r['p']:.3g}\n95% CI [{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
        transform=ax.transAxes, ha="left", va="top", fontsize=8)
ax.set_xlabel("L1 norm of filter weights")
ax.set_ylabel("Class selectivity index")
ax.set_title("All layers", fontsize=9)

rows = [stat_row("spearman_selectivity_vs_l1_norm", r)]
per_layer = []
for d, g in units.groupby("depth"):
    res = corr(g["l1_norm"], g["selectivity"])
    rows.append(stat_row(f"spearman_selectivity_vs_l1_norm_layer{d}", res))
    per_layer.append((d, res["value"], res["ci_low"], res["ci_high"]))
pl = np.array(per_layer, dtype=float)
ok = np.isfinite(pl[:, 1])
ax2.axhline(0, color="0.6", lw=0.8)
ax2.errorbar(pl[ok, 0], pl[ok, 1], yerr=np.clip([pl[ok, 1] - pl[ok, 2], pl[ok, 3] - pl[ok, 1]], 0, None), fmt="o", ms=3,
             color="tab:blue", ecolor="0.7", elinewidth=0.8)
ax2.set_xlabel("Layer")
ax2.set_ylabel("Spearman r (selectivity vs L1 norm)")
ax2.set_title("Per layer", fontsize=9)
plotting.suptitle(fig, "Class selectivity vs filter L1 norm", sm.params.scale, sm.params.label)
fig.tight_layout()
plotting.save(fig, sm.output.pdf)
save_csv(pd.DataFrame(rows), sm.output.stats)
