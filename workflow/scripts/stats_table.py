"""Gather a family's per-figure statistics into results/stats/<family>.csv."""
import os

import pandas as pd

from singledir.io import save_csv
from singledir.pipeline.logs import log_to

sm = snakemake
with log_to(sm.log[0]):
    parts = []
    for path in sm.input:
        df = pd.read_csv(path)
        df.insert(0, "figure", os.path.basename(path)[: -len(".csv")])
        parts.append(df)
        print(f"{path}: {len(df)} statistics")
    table = pd.concat(parts, ignore_index=True)
    save_csv(table, sm.output.table)
    print(f"wrote {sm.output.table}: {len(table)} statistics of {len(parts)} figures")
