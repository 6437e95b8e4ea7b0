"""What a batch of perturbations is and how it acts on one layer's activation.

The base of the engine: :mod:`singledir.engine.perturb`, :mod:`singledir.engine.clamp_plan`
and :mod:`singledir.engine.reference` import it and it imports none of them (only
:mod:`singledir.engine.noise_source`, where noise draws come from).

For a batch of M perturbations of named unit layers (post-ReLU activations):

- ``keep[layer]``: float tensor (M, C) of 1 (keep) and 0 (ablate) per unit;
- ``fill[layer]``: what an ablated unit is clamped to: ``None`` for zero, or a tensor
  with the shape of one example's activation (the per-element training-set mean,
  appendix A.1);
- ``noise_std[layer]``: float tensor (M, C), the standard deviation of Gaussian noise
  added to every element of each unit;
- ``ids``: each row's index in the batch it was taken from (``None``: 0..M-1), so that a
  slice or a subset sees the noise of its rows
  (:class:`singledir.engine.noise_source.NoiseSource` draws per perturbation index and
  example index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from singledir.engine.noise_source import NoiseSource


@dataclass
class PerturbationBatch:
    n: int
    keep: dict[str, torch.Tensor] = field(default_factory=dict)
    fill: dict[str, torch.Tensor | None] = field(default_factory=dict)
    noise_std: dict[str, torch.Tensor] = field(default_factory=dict)
    ids: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.ids is not None and len(self.ids) != self.n:
            raise ValueError(f"ids: {len(self.ids)} perturbation indices for a batch of {self.n}")

    def layers(self) -> set[str]:
        return set(self.keep) | set(self.noise_std)

    def row_ids(self) -> tuple[int, ...]:
        """The index of each row in the original batch (what its noise is drawn for)."""
        return tuple(range(self.n)) if self.ids is None else self.ids

    def slice(self, start: int, stop: int) -> "PerturbationBatch":
        return PerturbationBatch(stop - start, {k: v[start:stop] for k, v in self.keep.items()}, dict(self.fill),
                                 {k: v[start:stop] for k, v in self.noise_std.items()},
                                 self.row_ids()[start:stop])

    def select(self, idx) -> "PerturbationBatch":
        """The perturbations ``idx`` (in that order; fill is shared)."""
        idx = [int(i) for i in idx]

        def take(t):
            return t.index_select(0, torch.as_tensor(idx, dtype=torch.long, device=t.device))
        ids = self.row_ids()
        return PerturbationBatch(len(idx), {k: take(v) for k, v in self.keep.items()}, dict(self.fill),
                                 {k: take(v) for k, v in self.noise_std.items()}, tuple(ids[i] for i in idx))


def _unit_view(t: torch.Tensor, m: int, ndim: int) -> torch.Tensor:
    """(M, C) -> (M, 1, C, 1, ...) broadcastable against (M, B, C, *spatial)."""
    return t.view(m, 1, t.shape[1], *([1] * (ndim - 3)))


def apply_perturbation(out: torch.Tensor, layer: str, pert: PerturbationBatch,
                       noise: NoiseSource | None = None, start: int = 0) -> torch.Tensor:
    """Apply the perturbations of ``layer`` to an activation of M*B rows: M perturbations
    of the B examples ``start, ..., start + B - 1`` (their indices in the evaluated data,
    which with ``pert.ids`` select the noise drawn from ``noise``)."""
    m = pert.n
    o = out.reshape(m, -1, *out.shape[1:])
    keep = pert.keep.get(layer)
    if keep is not None:
        k = _unit_view(keep.to(o.dtype), m, o.dim())
        fill = pert.fill.get(layer)
        o = o * k if fill is None else o * k + fill.to(o.dtype) * (1 - k)
    std = pert.noise_std.get(layer)
    if std is not None:
        if noise is None:
            raise ValueError(f"noise: the perturbations add noise to {layer!r} but no noise source was given; "
                             "pass noise=NoiseSource(seed)")
        # Drawn in float32 whatever the compute precision, so every precision sees the same noise.
        draws = noise.draw(layer, pert.row_ids(), start, o.shape, o.device).to(o.dtype)
        o = o + draws * _unit_view(std.to(o.dtype), m, o.dim())
    return o.reshape(out.shape)


class PerturbationHooks:
    """Forward hooks that apply the current perturbation batch to each unit layer; the
    current input holds the examples ``start, ...`` of the evaluated data."""

    def __init__(self, model: nn.Module, layers: Sequence[str], noise: NoiseSource | None = None):
        self.pert: PerturbationBatch | None = None
        self.noise = noise
        self.start = 0
        modules = dict(model.named_modules())
        self.handles = [modules[name].register_forward_hook(self._make(name)) for name in layers]

    def _make(self, name):
        def hook(module, inputs, output):
            if self.pert is not None and name in self.pert.layers():
                return apply_perturbation(output, name, self.pert, self.noise, self.start)
            return output
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    if k == 1:
        return logits.argmax(-1) == y
    return (logits.topk(k, dim=-1).indices == y.unsqueeze(-1)).any(-1)


def class_major_scores(logits: torch.Tensor, y: torch.Tensor, topk: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and top-k hit of (G, B, K) logits against labels (B,): two (G, B) tensors.

    The same numbers as ``F.cross_entropy(reduction="none")`` and
    :func:`topk_correct` (up to float rounding of the log-sum-exp),
    computed on the class-major (K, G*B) layout: PyTorch's CPU log-softmax over a last
    dimension of 10 classes is slow (0.57 ms for 5,000 rows against 0.03 ms over the first
    dimension of the transposed tensor, measured on a 2-core Xeon), and the unit-major
    read-out of :func:`singledir.engine.clamp_chains.per_mask` yields class-major
    logits already.
    """
    g, b, k = logits.shape
    lt = logits.permute(2, 0, 1).reshape(k, g * b).float()
    yr = y.repeat(g).view(1, -1)
    loss = -torch.log_softmax(lt, 0).gather(0, yr).view(g, b)
    if topk == 1:
        # max(0).indices is argmax(0) (the first maximal class, ties and NaN included;
        # tested) at a tenth of its time on a class-major tensor
        hit = lt.max(0).indices == yr[0]
    else:
        hit = (lt.topk(topk, dim=0).indices == yr).any(0)
    return loss, hit.view(g, b)
