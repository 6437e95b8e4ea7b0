"""The perturbation engine: one code path for every ablation and noise analysis.

A *perturbation* acts on the outputs of named unit layers (post-ReLU activations).
For a batch of M perturbations it is described by

- ``keep[layer]``: float tensor (M, C) of 1 (keep) and 0 (ablate) per unit;
- ``fill[layer]``: what an ablated unit is clamped to: ``None`` for zero, or a tensor
  with the shape of one example's activation (the per-element training-set mean,
  appendix A.1);
- ``noise_std[layer]``: float tensor (M, C), the standard deviation of Gaussian noise
  added to every element of each unit.

Two ideas make it fast while staying exact (tests compare it with the plain hook
implementation in :func:`singledir.ablation.reference_ablation_eval`):

*Prefix caching.* For a :class:`torch.nn.Sequential` model, the stages up to the first
perturbed layer are run once per data chunk; only the remaining stages run once per
perturbation. In eval mode (batch norm uses running statistics) the prefix does not
depend on the perturbation, so this is exact.

*Masks as data.* M perturbations are applied in one forward pass: the cached prefix
activation of B examples is repeated M times into a batch of M*B rows, and each hook
views its input as (M, B, ...) to apply the m-th mask to the m-th block. Rows per
forward pass are bounded by ``max_rows``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F


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
        noise = torch.randn(o.shape, generator=generator, device=o.device, dtype=o.dtype)
        o = o + noise * _unit_view(std.to(o.dtype), m, o.dim())
    return o.reshape(out.shape)


class _Hooks:
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


def split_sequential(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module] | None:
    """(prefix, suffix) of a Sequential model split after top-level stage ``layer``.

    Returns None for models that are not Sequential or whose layer is nested; the
    engine then runs the whole model for every perturbation.
    """
    if not isinstance(model, nn.Sequential):
        return None
    names = [n for n, _ in model.named_children()]
    if layer not in names:
        return None
    i = names.index(layer) + 1
    children = list(model.named_children())
    # Plain Sequential containers share the modules (and so the hooks) of ``model``.
    return nn.Sequential(OrderedDict(children[:i])), nn.Sequential(OrderedDict(children[i:]))


def _first_layer(model: nn.Module, layers: set[str]) -> str:
    order = [n for n, _ in model.named_modules()]
    return min(layers, key=order.index)


def topk_correct(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    if k == 1:
        return logits.argmax(-1) == y
    return (logits.topk(k, dim=-1).indices == y.unsqueeze(-1)).any(-1)


@torch.no_grad()
def evaluate_perturbations(model: nn.Module, x: torch.Tensor, y: torch.Tensor, pert: PerturbationBatch,
                           chunk_size: int = 1024, max_rows: int = 65536, topk: int = 1,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy loss and accuracy under each of the M perturbations.

    Returns two float64 tensors of shape (M,). The model is put in eval mode. Noise
    (if any) is drawn from ``generator``; with fixed ``chunk_size`` and ``max_rows``
    the result is deterministic.
    """
    was_training = model.training
    model.eval()
    device = x.device
    layers = pert.layers()
    loss_sum = torch.zeros(pert.n, dtype=torch.float64, device=device)
    correct = torch.zeros(pert.n, dtype=torch.float64, device=device)
    first = _first_layer(model, layers) if layers else None
    split = split_sequential(model, first) if first else None
    hooks = _Hooks(model, sorted(layers))
    try:
        for i in range(0, len(x), chunk_size):
            xb, yb = x[i:i + chunk_size], y[i:i + chunk_size]
            b = len(xb)
            hooks.pert = None  # the prefix runs unperturbed, once per chunk
            prefix_out = split[0](xb) if split is not None else None
            group = max(1, max_rows // b)
            for m0 in range(0, pert.n, group):
                sub = pert.slice(m0, min(pert.n, m0 + group))
                hooks.generator = generator
                if split is not None:
                    # The prefix ends with the first perturbed layer: apply its
                    # perturbation to the cached output here; the suffix's hooks
                    # handle every later layer.
                    h = prefix_out.repeat(sub.n, *([1] * (prefix_out.dim() - 1)))
                    h = apply_perturbation(h, first, sub, generator)
                    hooks.pert = sub
                    logits = split[1](h)
                    hooks.pert = None
                else:
                    hooks.pert = sub
                    logits = model(xb.repeat(sub.n, *([1] * (xb.dim() - 1))))
                    hooks.pert = None
                logits = logits.view(sub.n, b, -1)
                yr = yb.unsqueeze(0).expand(sub.n, b)
                loss = F.cross_entropy(logits.reshape(sub.n * b, -1), yr.reshape(-1), reduction="none")
                loss_sum[m0:m0 + sub.n] += loss.view(sub.n, b).sum(1, dtype=torch.float64)
                correct[m0:m0 + sub.n] += topk_correct(logits, yr, topk).sum(1, dtype=torch.float64)
    finally:
        hooks.pert = None
        hooks.remove()
        model.train(was_training)
    return (loss_sum / len(x)).cpu(), (correct / len(x)).cpu()


@torch.no_grad()
def layer_activations(model: nn.Module, x: torch.Tensor, layers: Sequence[str],
                      chunk_size: int = 1024) -> dict[str, torch.Tensor]:
    """Unperturbed activations of ``layers`` for all of ``x`` (eval mode), on the CPU."""
    was_training = model.training
    model.eval()
    modules = dict(model.named_modules())
    store: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    handles = [modules[name].register_forward_hook(
        lambda mod, inp, out, name=name: store[name].append(out.detach().cpu())) for name in layers]
    try:
        for i in range(0, len(x), chunk_size):
            model(x[i:i + chunk_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: torch.cat(v) for name, v in store.items()}


@torch.no_grad()
def activation_moments(model: nn.Module, x: torch.Tensor, layers: Sequence[str],
                       chunk_size: int = 1024) -> dict[str, dict[str, torch.Tensor]]:
    """Per layer: ``mean`` per element (C, ...) and ``var`` per unit (C,) over ``x``.

    The per-element mean is what mean-ablation clamps to (appendix A.1); the per-unit
    variance (over examples and, for feature maps, spatial positions) scales the noise
    of the noise analysis (section 2.2). Accumulated in float64 chunk by chunk.
    """
    was_training = model.training
    model.eval()
    modules = dict(model.named_modules())
    acc: dict[str, dict] = {}

    def hook(name):
        def fn(mod, inp, out):
            o = out.detach().double()
            a = acc.setdefault(name, {"n": 0, "sum": 0.0, "unit_sum": 0.0, "unit_sq": 0.0, "count": 0})
            a["n"] += o.shape[0]
            a["sum"] = a["sum"] + o.sum(0)
            dims = [0] + list(range(2, o.dim()))
            a["unit_sum"] = a["unit_sum"] + o.sum(dims)
            a["unit_sq"] = a["unit_sq"] + (o * o).sum(dims)
            a["count"] += o.numel() // o.shape[1]
        return fn

    handles = [modules[name].register_forward_hook(hook(name)) for name in layers]
    try:
        for i in range(0, len(x), chunk_size):
            model(x[i:i + chunk_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {}
    for name in layers:
        a = acc[name]
        mu = a["unit_sum"] / a["count"]
        var = (a["unit_sq"] / a["count"] - mu * mu).clamp_min(0)
        out[name] = {"mean": (a["sum"] / a["n"]).float(), "var": var.float()}
    return out
