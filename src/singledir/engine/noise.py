"""Noise robustness curves (paper section 2.2, Fig. 2).

Gaussian noise with zero mean is added to every unit of the chosen layers at once.
For a noise scale ``s`` the noise added to unit u has variance ``s * var_u``, where
``var_u`` is u's empirical activation variance on the training set (for feature maps:
over examples and spatial positions), i.e. its standard deviation is
``sqrt(s) * std_u``. Scales are log-spaced; each scale is repeated with independent
noise draws and accuracy is measured on the training set with the labels the network
was trained on.

The draws come from :class:`singledir.engine.noise_source.NoiseSource` seeded with ``seed``:
the noise of (scale, repeat) row m on example i of a layer depends on (seed, layer, m, i)
only, so the curve does not change with the engine's ``chunk_size``, ``max_rows``, path or
precision.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from singledir.engine.ablation import layer_sizes
from singledir.engine.options import EngineOptions
from singledir.engine.batch import PerturbationBatch
from singledir.engine.noise_source import NoiseSource
from singledir.engine.perturb import evaluate_perturbations


def noise_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layers: Sequence[str],
                unit_var: dict[str, torch.Tensor], scales: Sequence[float], *, repeats: int = 10,
                seed: int = 0, options: EngineOptions = EngineOptions()) -> pd.DataFrame:
    """Tidy noise curve: one row per (scale, repeat) with accuracy and loss.

    ``scale = 0`` may be included to get the unperturbed performance.
    """
    sizes = layer_sizes(model, layers, x)
    scales = [float(s) for s in scales]
    rows = [(s, r) for s in scales for r in range(repeats)]
    dev = x.device
    std = {n: torch.stack([unit_var[n].to(dev).clamp_min(0).sqrt() * np.sqrt(s) for s, _ in rows])
           for n in sizes}
    pert = PerturbationBatch(len(rows), noise_std=std)
    loss, acc = evaluate_perturbations(model, x, y, pert, noise=NoiseSource(seed), options=options)
    df = pd.DataFrame(rows, columns=["scale", "repeat"])
    df["accuracy"], df["loss"] = acc.numpy(), loss.numpy()
    return df
