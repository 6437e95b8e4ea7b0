"""Training: one deterministic, resumable entry that writes ``model.pt`` and ``history.csv``.

- :mod:`~singledir.training.api`           :func:`~singledir.training.api.train`, the one entry: one model or a group, tensors or an image folder;
- :mod:`~singledir.training.core`          the config, the run options (speed only), the history schema, schedule and optimizer of every mode;
- :mod:`~singledir.training.loop`          the epoch loop, in single or fused mode;
- :mod:`~singledir.training.fused`         the fused network and optimizer of K same-shaped small models;
- :mod:`~singledir.training.fusion_choice` whether a group trains fused or one model at a time;
- :mod:`~singledir.training.distributed`   step-based data-parallel training of a ResNet on images on disk;
- :mod:`~singledir.training.checkpoint`    the one resume protocol and stop-signal handling of every mode;
- :mod:`~singledir.training.convergence`   the epoch at which the loop records the convergence gate's reference row;
- :mod:`~singledir.training.regularizers`  training options aimed at single-direction reliance.
"""
