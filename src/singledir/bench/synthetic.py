"""Random networks and synthetic data for the benchmark: timing does not depend on the
data, so inputs are seeded normal images and labels are the network's own predictions
with 10 % flipped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from singledir.engine.ablation import curve_points, layer_sizes, random_orderings


@dataclass
class BenchNet:
    """A named network with its synthetic examples and the layers an analysis ablates."""

    name: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    layers: list[str]


def variance_preserving(model: nn.Module, seed: int) -> nn.Module:
    """He-initialized weights, so a random deep network's output depends on its input."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
    return model.eval()


def labelled_data(model: nn.Module, n: int, shape, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n seeded normal inputs of ``shape``, labelled by the model's predictions, 10 % of
    them replaced by random labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=g)
    with torch.no_grad():
        y = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, n, 1000)])
    flip = torch.rand(n, generator=g) < 0.1
    y[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=g)
    return x, y


def cumulative_sets(net: BenchNet, n_orderings: int, n_points: int) -> tuple[dict[str, int], list[np.ndarray]]:
    """The layers' sizes and the ablated units of a full cumulative-ablation analysis:
    ``n_points`` points of each of ``n_orderings`` random orderings (seed 0) of all units."""
    sizes = layer_sizes(net.model, net.layers, net.x)
    total = sum(sizes.values())
    orders = random_orderings(total, n_orderings, 0)
    return sizes, [orders[o, :k] for o in range(n_orderings) for k in curve_points(total, n_points)]
