"""Regularizers aimed at single-direction reliance (paper section 5; issue "Beyond the paper", E2).

Training options of the MLP and the ConvNet (``train.regularizer`` with strength
``train.reg_strength``, grid variable ``strength``); :func:`regularized_loss` replaces the
plain cross-entropy in :func:`singledir.training.loop.fit`. The *units* are those the analyses
ablate: the outputs of the model's unit layers (``reg_layers``: ``all``, ``-k`` or names,
as ``analysis.ablation_layers``), a whole feature map being one unit of a ConvNet.

``ablation_noise`` (strength = q_max)
    Every step draws q ~ Uniform(0, q_max) and zeroes one random set of round(q N) of the
    N units for the whole batch (no 1/(1-q) rescaling: the test-time perturbation is an
    ablation, not dropout), so no single ablation fraction is privileged, unlike dropout's
    fixed p. At q = 0 the forward pass is the plain model's.
``reliance`` (strength = lambda, in 1/nats, >= 0)
    loss = CE(clean) + lambda * max(0, CE(ablated) - [CE(clean)])^2: a penalty on the
    network's reliance, the loss increase under one random cumulative ablation of the batch
    (q ~ Uniform(0, reg_q_max), as above; one extra forward pass per step). [.] is the clean
    loss as the penalty's reference, held fixed (detached): the penalty lowers the ablated
    loss towards the clean one and never pushes the clean loss up. Its gradient is
    grad CE(clean) + 2 lambda gap grad CE(ablated), gap = the current increase: the clean
    loss always keeps weight 1, and the ablated loss gets weight in proportion to how much
    the net relies on the ablated units now. So it is not ablation-noise training (whose
    loss is CE(ablated) alone) at any lambda, nor a fixed mix of the two; lambda = 0 is plain
    training. (An earlier form, CE(clean) + lambda (CE(ablated) - CE(clean)), was the
    ablated loss itself at lambda = 1: ablation noise under another name.)
``selectivity`` (strength = alpha)
    loss = CE - alpha * mean SI (Leavitt & Morcos 2020, "Selectivity considered harmful",
    eq. 2): SI = (mu_max - mu_rest) / (mu_max + mu_rest + eps) per unit, from the unit's
    class-conditional mean activation on the batch (feature maps averaged over space),
    mu_max the largest class mean and mu_rest the mean of the other classes present in the
    batch; averaged over the units of each layer, then over layers. Negative alpha lowers
    selectivity, positive alpha raises it.

Randomness comes from the training loop's seeded generator (saved in its resume
checkpoints), so a regularized run is deterministic and resumes exactly.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
import torch.nn.functional as F

from singledir.models.nets import resolve_layers
from singledir.training.core import TrainConfig

REGULARIZERS = ("none", "ablation_noise", "reliance", "selectivity")
SI_EPS = 1e-7


def check(name: str, strength: float, q_max: float = 0.5) -> None:
    """One clear error for a bad regularizer setting (the schema checks the same at config time)."""
    if name not in REGULARIZERS:
        raise ValueError(f"train.regularizer: unknown regularizer {name!r}; choose one of {list(REGULARIZERS)}")
    if name == "ablation_noise" and not 0.0 <= strength <= 1.0:
        raise ValueError(f"train.reg_strength: ablation_noise needs q_max in [0, 1]; got {strength}")
    if name == "reliance" and not (0.0 <= strength and 0.0 <= q_max <= 1.0):
        raise ValueError(f"train.reg_strength / reg_q_max: reliance needs lambda >= 0 and q_max in [0, 1]; "
                         f"got {strength}, {q_max}")


def unit_modules(model: nn.Module, layers="all") -> dict[str, nn.Module]:
    mods = dict(model.named_modules())
    return {n: mods[n] for n in resolve_layers(model, layers)}


@contextmanager
def capture(modules: dict[str, nn.Module]):
    """{layer: output} of each module during the forward passes inside the block."""
    out: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: out.__setitem__(n, o)) for n, m in modules.items()]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


@contextmanager
def ablated(modules: dict[str, nn.Module], keep: dict[str, torch.Tensor]):
    """Multiply each module's output by its keep-mask (C,) (broadcast over examples and space)."""
    def hook(mod, inp, out, n):
        shape = (1, -1) + (1,) * (out.dim() - 2)
        return out * keep[n].view(shape).to(out.dtype)

    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n)) for n, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def random_keep_masks(sizes: dict[str, int], q: float, gen: torch.Generator, device) -> dict[str, torch.Tensor]:
    """Keep-masks zeroing one random set of round(q N) of the N units (all layers pooled)."""
    total = sum(sizes.values())
    k = int(round(q * total))
    perm = torch.randperm(total, generator=gen, device=gen.device).to(device)
    keep = torch.ones(total, device=device)
    keep[perm[:k]] = 0.0
    out, start = {}, 0
    for n, c in sizes.items():
        out[n] = keep[start:start + c]
        start += c
    return out


def draw_q(q_max: float, gen: torch.Generator) -> float:
    """q ~ Uniform(0, q_max), from the training loop's generator."""
    return float(torch.rand((), generator=gen, device=gen.device)) * q_max


def class_selectivity(acts: torch.Tensor, y: torch.Tensor, eps: float = SI_EPS) -> torch.Tensor:
    """Per-unit class-selectivity index (Leavitt & Morcos 2020) on one batch, differentiable.

    ``acts`` (B, C) or (B, C, H, W) (averaged over space); classes absent from the batch
    are left out. A batch with a single class has no "other classes": SI = 0.
    """
    if acts.dim() > 2:
        acts = acts.flatten(2).mean(2)
    classes = torch.unique(y)
    if len(classes) < 2:
        return acts.new_zeros(acts.shape[1])
    onehot = (y.unsqueeze(1) == classes.unsqueeze(0)).to(acts.dtype)  # (B, K)
    means = (onehot.T @ acts) / onehot.sum(0).unsqueeze(1)  # (K, C)
    mu_max, arg = means.max(0)
    k = means.shape[0]
    mu_rest = (means.sum(0) - mu_max) / (k - 1)
    return (mu_max - mu_rest) / (mu_max + mu_rest + eps)


def mean_selectivity(outputs: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Mean SI over the units of each layer, then over layers."""
    return torch.stack([class_selectivity(a, y).mean() for a in outputs.values()]).mean()


class Regularizer:
    """The loss of one training step for ``train.regularizer`` (see the module docstring)."""

    def __init__(self, model: nn.Module, name: str = "none", strength: float = 0.0, q_max: float = 0.5,
                 layers="all"):
        check(name, strength, q_max)
        self.name, self.strength, self.q_max = name, float(strength), float(q_max)
        self.modules = unit_modules(model, layers) if name != "none" else {}
        self.sizes: dict[str, int] | None = None

    def _sizes(self, model, xb):
        if self.sizes is None:
            with torch.no_grad(), capture(self.modules) as out:
                was = model.training
                model.eval()
                model(xb[:1])
                model.train(was)
            self.sizes = {n: int(out[n].shape[1]) for n in self.modules}
        return self.sizes

    def loss(self, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.name == "none":
            return F.cross_entropy(model(xb), yb)
        if self.name == "selectivity":
            with capture(self.modules) as out:
                ce = F.cross_entropy(model(xb), yb)
            return ce - self.strength * mean_selectivity(out, yb)
        sizes = self._sizes(model, xb)
        if self.name == "ablation_noise":
            keep = random_keep_masks(sizes, draw_q(self.strength, gen), gen, xb.device)
            with ablated(self.modules, keep):
                return F.cross_entropy(model(xb), yb)
        # reliance: one clean and one ablated forward pass
        clean = F.cross_entropy(model(xb), yb)
        keep = random_keep_masks(sizes, draw_q(self.q_max, gen), gen, xb.device)
        with ablated(self.modules, keep):
            abl = F.cross_entropy(model(xb), yb)
        return clean + self.strength * reliance_penalty(clean, abl)


def reliance_penalty(clean: torch.Tensor, ablated_loss: torch.Tensor) -> torch.Tensor:
    """max(0, CE(ablated) - CE(clean))^2 with the clean loss as a fixed reference (detached):
    the ``reliance`` regularizer's penalty, weighted by lambda (module docstring)."""
    return torch.clamp(ablated_loss - clean.detach(), min=0.0) ** 2


def from_train_config(model: nn.Module, cfg: TrainConfig) -> Regularizer:
    """The regularizer of a config (``none`` when ``train.regularizer`` is unset or null)."""
    return Regularizer(model, cfg.regularizer or "none", cfg.reg_strength, cfg.reg_q_max, cfg.reg_layers)


def is_regularized(spec: dict) -> bool:
    return (spec.get("train", {}).get("regularizer") or "none") != "none"


__all__ = ["REGULARIZERS", "Regularizer", "class_selectivity", "mean_selectivity", "random_keep_masks", "reliance_penalty",
           "from_train_config", "is_regularized", "check", "ablated", "capture"]
