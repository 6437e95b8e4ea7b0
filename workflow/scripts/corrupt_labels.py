"""Shuffle the labels of a seeded random fraction of the training set (section 2.1), for
any family: the true labels come from dataset.npz or the image index (singledir.data.access)."""
import numpy as np

from singledir.data.access import training_targets
from singledir.data.corruption import corrupt_labels
from singledir.io import atomic_path
from singledir.pipeline.logs import log_to

sm = snakemake
with log_to(sm.log[0]):
    true = training_targets(sm.input.data)
    print(f"read {sm.input.data}: {len(true)} training labels")
    labels, chosen = corrupt_labels(true, sm.params.fraction, sm.params.seed)
    print(f"fraction={sm.params.fraction} seed={sm.params.seed} chosen={len(chosen)} "
          f"labels changed={int((labels != true).sum())}")
    with atomic_path(sm.output.labels) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, labels=labels, chosen=chosen, fraction=sm.params.fraction)
    print(f"wrote {sm.output.labels}")
