"""Shuffle the labels of a seeded random fraction of the training images (section 2.1)."""
import numpy as np

from singledir.data.corruption import corrupt_labels
from singledir.data.imagenet import read_index, train_labels
from singledir.io import atomic_path
from singledir.pipeline.runtime import log_to

with log_to(snakemake.log[0]):
    true = train_labels(read_index(snakemake.input.index), None)
    labels, chosen = corrupt_labels(true, snakemake.params.fraction, snakemake.params.seed)
    print(f"fraction={snakemake.params.fraction} chosen={len(chosen)} labels changed={int((labels != true).sum())}")
    with atomic_path(snakemake.output.labels) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, labels=labels, chosen=chosen, fraction=snakemake.params.fraction)
