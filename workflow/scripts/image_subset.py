"""The recorded, seeded, class-balanced analysis subset of each split."""
from singledir.data.imagenet import analysis_subset, read_index
from singledir.io import save_csv
from singledir.pipeline.logs import log_to

a = snakemake.params.analysis
with log_to(snakemake.log[0]):
    subset = analysis_subset(read_index(snakemake.input.index), a["train_per_class"], a["test_per_class"],
                             a["subset_seed"])
    print(subset.groupby("split").agg(images=("index", "size"), classes=("target", "nunique")).to_string())
    save_csv(subset, snakemake.output.subset)
    print(f"read {snakemake.input.index} ({a}); wrote {snakemake.output.subset}")
