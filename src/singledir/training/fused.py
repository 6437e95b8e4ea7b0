"""Fused training: K same-shaped small models trained at once in one process.

The paper trains hundreds of small networks (seeds, corruption fractions, dropout
rates, learning rates). One at a time, a small network leaves the machine idle between
tiny matrix products; fused, the K networks' layers become one batched matrix product
(``torch.baddbmm`` over stacked weights) or one grouped convolution (``groups=K``, batch
norm over K*C channels, so running statistics stay per model), and one optimizer step
updates all K.

*Same function as separate training.* Every member keeps what makes it itself:

- its initialization (each member model is built separately from its own seed and
  the fused network is assembled from their weights);
- its data order and augmentation (its own generator, seeded ``seed + 1`` as in
  :func:`singledir.training.loop.fit`) and its own labels;
- its dropout noise: :func:`torch.nn.functional.dropout` itself runs on the member's
  slice with the member's own copy of the global RNG state (seeded ``seed``, as
  ``train`` seeds the global RNG), so the masks are the ones a separate run draws;
- its learning rate, weight decay and dropout rate (per-member values);
- the optimizer arithmetic: SGD and Adam are the element-wise formulas of
  ``torch.optim``'s single-tensor implementations (what a separate CPU run uses).

With one intra-op thread (how the workflow's training jobs run) a fused MLP is
therefore *bitwise* the K separately trained MLPs: each member's slice of a batched
matrix product is computed by the very kernel of the separate product, and evaluation
runs each member's own products on the shared batch. What cannot be
bitwise equal is a grouped convolution (ConvNets), MLPs with several intra-op threads
(MKL may split a separate model's small product across threads, another summation
order) and, on CUDA, the batched products: they add the same numbers in another order,
so the difference is float rounding, which training then amplifies as it amplifies any
rounding-sized change. ``tests/training/test_fused.py`` shows the bitwise equality and bounds
the other differences by separate training's own sensitivity to a rounding-sized
change of its initial weights.

What fusion saves on a CPU is the per-step overhead of K separate loops (launching
small operations, the optimizer, the autograd engine), large for small networks and
small for networks whose matrix products already run near the machine's peak; on a GPU,
where one small network leaves the device idle, it saves most of the time.

This module owns the fused network (:class:`FusedNet`) and its per-member optimizer
(:class:`FusedOptimizer`, the kinds and constants of :func:`singledir.training.core.make_optimizer`).
They are trained by the one epoch loop (:func:`singledir.training.loop.fit`, its fused
mode), with the same data order, schedule, checkpoints and history as a single model; whether
a group trains fused or one model at a time is :mod:`singledir.training.fusion_choice`'s.

Which models of a config train together (experiment key ``fuse: K``) is decided by
:func:`singledir.pipeline.groups.fusion_groups` (see ``workflow/rules/train.smk``).
"""

from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict

import torch
from torch import nn
import torch.nn.functional as F

from singledir.training.core import ADAM_BETAS, ADAM_EPS, TrainConfig


# ---------------------------------------------------------------------------- modules

class _FusedLinearFn(torch.autograd.Function):
    """y[k] = x[k] @ W[k]^T + b[k] for K members, gradients as autograd computes F.linear's.

    One batched product per pass (``baddbmm``/``bmm``): member k's slice is the product
    a separate model computes (``addmm(b, x, W^T)``; backward ``g @ W``, ``g^T @ x``,
    ``g.sum(0)``); when that is bitwise equal, see the module docstring.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        g = g.contiguous()
        gx = torch.bmm(g, weight) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(g.transpose(1, 2), x)
        gb = g.sum(1) if ctx.has_bias else None
        return gx, gw, gb


class _FusedLinear(nn.Module):
    """K Linear layers: (K, B, in) -> (K, B, out)."""

    def __init__(self, mods: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in mods]).clone())
        self.bias = (nn.Parameter(torch.stack([m.bias.detach() for m in mods]).clone())
                     if mods[0].bias is not None else None)

    def forward(self, x):
        return _FusedLinearFn.apply(x, self.weight, self.bias)


class _FusedConv2d(nn.Module):
    """K Conv2d layers as one grouped convolution on (B, K*C, H, W)."""

    def __init__(self, mods: list[nn.Conv2d]):
        super().__init__()
        m = mods[0]
        self.k, self.stride, self.padding, self.dilation = len(mods), m.stride, m.padding, m.dilation
        self.weight = nn.Parameter(torch.cat([c.weight.detach() for c in mods]).clone())
        self.bias = nn.Parameter(torch.cat([c.bias.detach() for c in mods]).clone()) if m.bias is not None else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.k)


def _fused_bn(mods: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    m = mods[0]
    bn = nn.BatchNorm2d(len(mods) * m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                        track_running_stats=m.track_running_stats)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(m, name) is not None:
                getattr(bn, name).copy_(torch.cat([getattr(b, name) for b in mods]))
        if m.num_batches_tracked is not None:
            bn.num_batches_tracked.copy_(m.num_batches_tracked)
    return bn


class MemberRNG:
    """Each member's own copy of the global RNG state (CPU, and CUDA on a GPU)."""

    def __init__(self, seeds: list[int], device: torch.device):
        self.device = device
        cuda = device.type == "cuda"
        saved_cpu = torch.get_rng_state()
        saved_cuda = torch.cuda.get_rng_state(device) if cuda else None
        self.states = []
        for s in seeds:
            torch.manual_seed(s)  # what training.train does before its loop
            self.states.append(torch.cuda.get_rng_state(device) if cuda else torch.get_rng_state())
        torch.set_rng_state(saved_cpu)
        if cuda:
            torch.cuda.set_rng_state(saved_cuda, device)

    @contextlib.contextmanager
    def member(self, k: int):
        cuda = self.device.type == "cuda"
        get = (lambda: torch.cuda.get_rng_state(self.device)) if cuda else torch.get_rng_state
        put = (lambda st: torch.cuda.set_rng_state(st, self.device)) if cuda else torch.set_rng_state
        saved = get()
        put(self.states[k])
        try:
            yield
        finally:
            self.states[k] = get()
            put(saved)


class _FusedDropout(nn.Module):
    """Per-member dropout with the member's own probability and RNG stream."""

    def __init__(self, ps: list[float], rng: MemberRNG):
        super().__init__()
        self.ps, self.rng = ps, rng

    def forward(self, x):  # (K, B, ...)
        if not self.training or not any(self.ps):
            return x
        outs = []
        for k, p in enumerate(self.ps):
            if p > 0:
                with self.rng.member(k):
                    outs.append(F.dropout(x[k], p, True))
            else:
                outs.append(x[k])
        return torch.stack(outs)


# Stages an evaluation can run member by member after the first product (MLPs).
_MEMBER_TAIL_KINDS = ("linear", "any", "dropout", "flatten")


class FusedNet(nn.Module):
    """K same-shaped Sequential models (MLP or ConvNet) as one network.

    Input (K, B, ...) (member k's batch in row k), output (K, B, classes). Linear
    stages work on (K, B, F); convolution, batch norm and pooling on (B, K*C, H, W).
    """

    def __init__(self, models: list[nn.Sequential], rng: MemberRNG):
        super().__init__()
        self.k = len(models)
        names = [[n for n, _ in m.named_children()] for m in models]
        template = max(names, key=len)
        core = [n for n in template if not n.startswith("dropout")]
        for k, ns in enumerate(names):
            if [n for n in ns if not n.startswith("dropout")] != core or not set(ns) <= set(template):
                raise ValueError(f"fused training: model {k} has stages {ns}, model 0 has {names[0]}; "
                                 f"fused models must have the same architecture")
        ref_shapes = {k: tuple(v.shape) for k, v in models[0].state_dict().items()}
        for k, m in enumerate(models[1:], start=1):
            shapes = {n: tuple(v.shape) for n, v in m.state_dict().items()}
            if shapes != ref_shapes:
                raise ValueError(f"fused training: model {k}'s weights have other shapes than model 0's; "
                                 f"fused models must have the same architecture")
        self.kinds: list[tuple[str, str]] = []
        self.stages = nn.ModuleDict()
        for name in template:
            mods = [getattr(m, name, None) for m in models]
            ref = next(m for m in mods if m is not None)
            if isinstance(ref, nn.Dropout):
                self.stages[name] = _FusedDropout([m.p if m is not None else 0.0 for m in mods], rng)
                kind = "dropout"
            elif any(type(m) is not type(ref) for m in mods):
                raise ValueError(f"fused training: stage {name!r} differs between models")
            elif isinstance(ref, nn.Linear):
                self.stages[name], kind = _FusedLinear(mods), "linear"
            elif isinstance(ref, nn.Conv2d):
                self.stages[name], kind = _FusedConv2d(mods), "conv"
            elif isinstance(ref, nn.BatchNorm2d):
                self.stages[name], kind = _fused_bn(mods), "grouped"
            elif isinstance(ref, (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d)):
                self.stages[name], kind = copy.deepcopy(ref), "grouped"
            elif isinstance(ref, (nn.ReLU, nn.Identity)):
                self.stages[name], kind = copy.deepcopy(ref), "any"
            elif isinstance(ref, nn.Flatten) and ref.start_dim == 1 and ref.end_dim == -1:
                self.stages[name], kind = nn.Identity(), "flatten"
            else:
                raise ValueError(f"fused training: stage {name!r} ({type(ref).__name__}) is not supported")
            self.kinds.append((name, kind))

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """``x``: (K, B, ...), or with ``shared`` one (B, ...) batch that every member sees
        (evaluation): an MLP in eval mode then runs each member on it (see
        :meth:`_member_tails`); otherwise the first mixing stage is one product for all
        members."""
        k = self.k
        grouped = False  # layout: (K, B, ...) or (B, K*C, H, W)
        h = x
        for i, (name, kind) in enumerate(self.kinds):
            mod = self.stages[name]
            if shared:
                if kind == "linear":
                    if not self.training and all(kd in _MEMBER_TAIL_KINDS for _, kd in self.kinds[i:]):
                        return self._member_tails(h, i)
                    w = mod.weight.reshape(-1, mod.weight.shape[-1])  # (B, F) @ (F, K*out): one wide product
                    h = (h @ w.t() if mod.bias is None else torch.addmm(mod.bias.reshape(-1), h, w.t()))
                    h = h.view(h.shape[0], k, -1).transpose(0, 1)
                    shared = False
                elif kind == "conv":  # all members' filters on the one input: the grouped layout
                    h = F.conv2d(h, mod.weight, mod.bias, mod.stride, mod.padding, mod.dilation)
                    grouped, shared = True, False
                elif kind == "flatten":
                    h = h.flatten(1)
                else:
                    h = mod(h)
                continue
            if kind in ("conv", "grouped") and not grouped:
                h = h.transpose(0, 1).reshape(h.shape[1], k * h.shape[2], *h.shape[3:])
                grouped = True
            elif kind in ("linear", "dropout", "flatten") and grouped:
                h = h.view(h.shape[0], k, h.shape[1] // k, *h.shape[2:]).transpose(0, 1)
                grouped = False
            if kind == "flatten":
                h = h.reshape(k, h.shape[1], -1)
            else:
                h = mod(h)
        if grouped:
            h = h.view(h.shape[0], k, -1).transpose(0, 1)
        return h

    def _member_tails(self, shared: torch.Tensor, start: int) -> torch.Tensor:
        """Evaluation of an MLP on one (B, F) batch that every member sees, from its first
        Linear stage ``start`` on: each member's stages with its own weights, (K, B, classes).

        Why not batched: the batched (K, B, out) layout made every later stage work on large
        strided tensors (ReLU, copies and the bias copies of ``baddbmm`` over tens of
        megabytes), and fused evaluation was measured 20 % slower than the K separate
        evaluations it replaces (16 MLPs 784-128-128-10, 10,000 examples). A first wide
        product (B, F) @ (F, K*out) with per-member tails gained nothing over separate
        evaluation (0.48 s against 0.45 s on the AMD development machine; on the Xeon 0.97-0.99
        of separate evaluation's time, against 0.93-0.96 with each member's own products,
        alternating runs on 10,000 examples), for a (B, K*out) intermediate of tens of
        megabytes. Per member the intermediates are small and stay in
        cache, and each stage is the operation a separate model runs (``F.linear``, ReLU) on a
        tensor of the same shape, so the result is what separate evaluation gives, bitwise."""
        outs = []
        for m in range(self.k):
            h = shared
            for name, kind in self.kinds[start:]:
                mod = self.stages[name]
                if kind == "linear":
                    h = F.linear(h, mod.weight[m], None if mod.bias is None else mod.bias[m])
                elif kind == "flatten":
                    h = h.flatten(1)
                elif kind == "any":
                    h = mod(h)
                # "dropout": the identity in evaluation
            outs.append(h)
        return torch.stack(outs)

    def member_state_dict(self, k: int, like: nn.Module) -> "OrderedDict[str, torch.Tensor]":
        """Member k's weights under the names of its own model ``like``."""
        out = OrderedDict()
        for key, ref in like.state_dict().items():
            name, attr = key.rsplit(".", 1)
            t = getattr(self.stages[name], attr)
            if attr == "num_batches_tracked":
                out[key] = t.detach().clone()
            else:
                out[key] = t.detach().view(self.k, -1)[k].view(ref.shape).clone()
        return out


# ---------------------------------------------------------------------------- optimizer

class FusedOptimizer:
    """SGD / Adam on stacked parameters (member k = ``p.view(K, -1)[k]``), with the
    element-wise formulas of torch.optim's single-tensor implementations and
    per-member learning rates and weight decays.

    Why not ``torch.optim``: its hyperparameters belong to a parameter group, and a group
    holds whole leaf tensors, while K members with their own ``lr`` and ``weight_decay``
    (a learning-rate sweep fuses) are slices of one stacked leaf. ``torch.optim`` would
    need one leaf per member, stacked again in every forward pass (a copy of every weight
    per step, and K optimizer calls); here one call updates the stacked tensor in place,
    member by member only where hyperparameters differ. The formulas are torch.optim's
    (``tests/training/test_fused.py`` checks a fused MLP bitwise against the separately trained ones).

    Measured (2-core Xeon, one thread, a busy host: medians of 7 x 20 steps; the script is
    in the issue-28 closing note): one SGD-momentum step of 16 MLPs 784-128-128-10, batch
    128, with ``torch.optim.SGD`` on one leaf per member (param groups for the learning
    rates, weights re-stacked in every forward pass) took 1.01-1.19x the time of this
    optimizer with four different learning rates, and 1.06x with one. ``torch.optim``'s
    update alone was faster with differing learning rates (0.43-0.75x) and slower with one
    (1.89x), but the re-stacking costs more than it saves."""

    def __init__(self, params: list[torch.Tensor], cfgs: list[TrainConfig]):
        self.params = params
        self.k = len(cfgs)
        self.kind = cfgs[0].optimizer  # one of core.OPTIMIZERS: TrainConfig checks it
        self.momentum = cfgs[0].momentum
        self.wds = [c.weight_decay for c in cfgs]
        self.betas, self.eps = ADAM_BETAS, ADAM_EPS  # as core.make_optimizer's Adam
        self.state: list[dict] = [{} for _ in params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lrs: list[float]):
        same = len(set(lrs)) == 1 and len(set(self.wds)) == 1
        members = [(None, lrs[0], self.wds[0])] if same else [(k, lrs[k], self.wds[k]) for k in range(self.k)]
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            st = self.state[i]
            first = not st
            if first and self.kind == "sgd" and self.momentum != 0:
                st["momentum_buffer"] = torch.zeros_like(p)
            if first and self.kind == "adam":
                st.update(step=0.0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            if self.kind == "adam":
                st["step"] += 1
            for k, lr, wd in members:
                def part(t, k=k):
                    return t if k is None else t.view(self.k, -1)[k]
                if self.kind == "sgd":
                    self._sgd(part, p, st, lr, wd, first)
                else:
                    self._adam(part, p, st, lr, wd)

    def _sgd(self, part, p, st, lr, wd, first):
        grad = part(p.grad)
        param = part(p)
        if wd != 0:
            grad = grad.add(param, alpha=wd)
        if self.momentum != 0:
            buf = part(st["momentum_buffer"])
            if first:  # torch.optim.SGD: buf = grad.clone() on the first step
                buf.copy_(grad)
            else:
                buf.mul_(self.momentum).add_(grad, alpha=1)
            grad = buf
        param.add_(grad, alpha=-lr)

    def _adam(self, part, p, st, lr, wd):
        beta1, beta2 = self.betas
        grad = part(p.grad)
        param = part(p)
        if wd != 0:
            grad = grad.add(param, alpha=wd)
        exp_avg, exp_avg_sq = part(st["exp_avg"]), part(st["exp_avg_sq"])
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = st["step"]
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        param.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict:
        return {"state": self.state}

    def load_state_dict(self, d: dict):
        self.state = d["state"]
