"""Gather a family's per-figure statistics into results/stats/<family>.csv."""
import os

import pandas as pd

from singledir.io import save_csv

parts = []
for path in snakemake.input:
    df = pd.read_csv(path)
    df.insert(0, "figure", os.path.basename(path)[: -len(".csv")])
    parts.append(df)
save_csv(pd.concat(parts, ignore_index=True), snakemake.output.table)
