import numpy as np

from singledir.data.corruption import corrupt_labels
from singledir.data.sources import load_prepared
from singledir.io import atomic_path
from singledir.pipeline.runtime import log_to

with log_to(snakemake.log[0]):
    data = load_prepared(snakemake.input.dataset)
    labels, chosen = corrupt_labels(data.y_train, snakemake.params.fraction, snakemake.params.seed)
    changed = int((labels != data.y_train).sum())
    print(f"fraction={snakemake.params.fraction} chosen={len(chosen)} labels changed={changed}")
    with atomic_path(snakemake.output.labels) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, labels=labels, chosen=chosen, fraction=snakemake.params.fraction)
