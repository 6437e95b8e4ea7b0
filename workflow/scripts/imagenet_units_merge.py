"""Merge the shards of the per-feature-map analysis into units.csv (singledir.analysis.unit_shards)."""
import pandas as pd

from singledir.io import save_csv
from singledir.pipeline.runtime import log_to
from singledir.analysis.unit_shards import merge_unit_tables

with log_to(snakemake.log[0]):
    units = merge_unit_tables([pd.read_csv(p) for p in snakemake.input.shards])
    print(f"{len(snakemake.input.shards)} shards -> {len(units)} feature maps in {units['depth'].nunique()} layers")
    save_csv(units, snakemake.output.units)
