"""What a batch of perturbations is and how it acts on one layer's activation.

The base of the engine: :mod:`singledir.engine.perturb`, :mod:`singledir.engine.clamp_plan`
and :mod:`singledir.engine.reference` import it and it imports none of them.

For a batch of M perturbations of named unit layers (post-ReLU activations):

- ``keep[layer]``: float tensor (M, C) of 1 (keep) and 0 (ablate) per unit;
- ``fill[layer]``: what an ablated unit is clamped to: ``None`` for zero, or a tensor
  with the shape of one example's activation (the per-element training-set mean,
  appendix A.1);
- ``noise_std[layer]``: float tensor (M, C), the standard deviation of Gaussian noise
  added to every element of each unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn


@dataclass
class PerturbationBatch:
    n: int
    keep: dict[str, torch.Tensor] = field(default_factory=dict)
    fill: dict[str, torch.Tensor | None] = field(default_factory=dict)
    noise_std: dict[str, torch.Tensor] = field(default_factory=dict)

    def layers(self) -> set[str]:
        return set(self.keep) | set(self.noise_std)

    def slice(self, start: int, stop: int) -> "PerturbationBatch":
        return PerturbationBatch(stop - start, {k: v[start:stop] for k, v in self.keep.items()}, dict(self.fill),
                                 {k: v[start:stop] for k, v in self.noise_std.items()})


def _unit_view(t: torch.Tensor, m: int, ndim: int) -> torch.Tensor:
    """(M, C) -> (M, 1, C, 1, ...) broadcastable against (M, B, C, *spatial)."""
    return t.view(m, 1, t.shape[1], *([1] * (ndim - 3)))


def apply_perturbation(out: torch.Tensor, layer: str, pert: PerturbationBatch,
                       generator: torch.Generator | None) -> torch.Tensor:
    """Apply the perturbations of ``layer`` to an activation of M*B rows."""
    m = pert.n
    o = out.reshape(m, -1, *out.shape[1:])
    keep = pert.keep.get(layer)
    if keep is not None:
        k = _unit_view(keep.to(o.dtype), m, o.dim())
        fill = pert.fill.get(layer)
        o = o * k if fill is None else o * k + fill.to(o.dtype) * (1 - k)
    std = pert.noise_std.get(layer)
    if std is not None:
        # Drawn in float32 whatever the compute precision, so every precision sees the same noise.
        noise = torch.randn(o.shape, generator=generator, device=o.device, dtype=torch.float32).to(o.dtype)
        o = o + noise * _unit_view(std.to(o.dtype), m, o.dim())
    return o.reshape(out.shape)


class PerturbationHooks:
    """Forward hooks that apply the current perturbation batch to each unit layer."""

    def __init__(self, model: nn.Module, layers: Sequence[str]):
        self.pert: PerturbationBatch | None = None
        self.generator: torch.Generator | None = None
        modules = dict(model.named_modules())
        self.handles = [modules[name].register_forward_hook(self._make(name)) for name in layers]

    def _make(self, name):
        def hook(module, inputs, output):
            if self.pert is not None and name in self.pert.layers():
                return apply_perturbation(output, name, self.pert, self.generator)
            return output
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    if k == 1:
        return logits.argmax(-1) == y
    return (logits.topk(k, dim=-1).indices == y.unsqueeze(-1)).any(-1)
