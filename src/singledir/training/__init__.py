"""Training: deterministic, resumable loops that write ``model.pt`` and ``history.csv``.

- :mod:`~singledir.training.core`         the config, learning-rate schedule and optimizer all three loops use;
- :mod:`~singledir.training.single`       one model, one readable loop (airbench style);
- :mod:`~singledir.training.fused`        K same-shaped small models trained at once;
- :mod:`~singledir.training.distributed`  step-based data-parallel training of a ResNet;
- :mod:`~singledir.training.checkpoint`   the one resume protocol and stop-signal handling all three loops use;
- :mod:`~singledir.training.regularizers` training options aimed at single-direction reliance.
"""
