"""The plain definitions the engine is tested (and benchmarked) against.

Slow by design: a forward hook clamps the ablated units and the whole network runs on
every example, once per point. :mod:`singledir.engine.perturb` must agree with these to float
rounding; ``tests/engine/test_engine.py`` checks it at every point of every curve and
``python -m singledir.bench`` times them as the naive method.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from singledir.engine.batch import topk_correct


@torch.no_grad()
def reference_ablation_eval(model: nn.Module, x: torch.Tensor, y: torch.Tensor, units: dict[str, Sequence[int]],
                            fill: dict[str, torch.Tensor] | None = None, batch_size: int = 256,
                            topk: int = 1) -> tuple[float, float]:
    """The plain definition of an ablation: (mean loss, accuracy) with ``units`` clamped.

    A forward hook on each layer sets the listed channels to zero (or to ``fill[layer]``,
    the per-element mean) and the full network runs on every example. Slow by design:
    this is what the engine is tested against.
    """
    was = model.training
    model.eval()
    modules = dict(model.named_modules())

    def hook(name, idx):
        def fn(mod, inp, out):
            out = out.clone()
            if fill is None or fill.get(name) is None:
                out[:, idx] = 0
            else:
                out[:, idx] = fill[name][idx].to(out.dtype)
            return out
        return fn

    handles = [modules[n].register_forward_hook(hook(n, torch.as_tensor(list(u), dtype=torch.long)))
               for n, u in units.items() if len(u)]
    loss, correct = 0.0, 0
    try:
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size])
            loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
            correct += topk_correct(logits, y[i:i + batch_size], topk).sum().item()
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return loss / len(x), correct / len(x)


def split_units(units: np.ndarray, sizes: dict[str, int]) -> dict[str, list[int]]:
    """Global unit indices (over the layers in the order of ``sizes``) -> per-layer lists."""
    out, start = {}, 0
    units = np.asarray(units, dtype=int)
    for name, c in sizes.items():
        out[name] = [int(u) - start for u in units if start <= u < start + c]
        start += c
    return out


def reference_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sizes: dict[str, int],
                    orders: np.ndarray, points: Sequence[int], fill: dict[str, torch.Tensor] | None = None,
                    batch_size: int = 256, topk: int = 1) -> list[tuple[int, int, float, float]]:
    """Cumulative ablation the naive way: (ordering, n_ablated, loss, accuracy) per point,
    one full forward pass over ``x`` per point."""
    rows = []
    for o, order in enumerate(orders):
        for k in points:
            loss, acc = reference_ablation_eval(model, x, y, split_units(order[:k], sizes), fill, batch_size, topk)
            rows.append((o, int(k), loss, acc))
    return rows
