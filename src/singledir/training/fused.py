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
  :func:`singledir.training.single.train`) and its own labels;
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
rounding-sized change. ``tests/test_fused.py`` shows the bitwise equality and bounds
the other differences by separate training's own sensitivity to a rounding-sized
change of its initial weights.

What fusion saves on a CPU is the per-step overhead of K separate loops (launching
small operations, the optimizer, the autograd engine), large for small networks and
small for networks whose matrix products already run near the machine's peak; on a GPU,
where one small network leaves the device idle, it saves most of the time.

This module owns the fused network (:class:`FusedNet`), its per-member optimizer
(:class:`FusedOptimizer`, the kinds and constants of :func:`singledir.training.core.make_optimizer`),
the fused epoch loop (:func:`train_fused`) and the choice to fuse (:func:`train_group`). The
config and learning-rate schedule are the training core's (:mod:`singledir.training.core`),
the same as :func:`singledir.training.single.train`'s. Resumable with the shared protocol
(:mod:`singledir.training.checkpoint`): a checkpoint every ``checkpoint_every`` epochs and on
SIGTERM/SIGUSR1 (then :class:`~singledir.training.checkpoint.TrainingInterrupted`), and a
resumed run ends with exactly the weights of an uninterrupted fused run (CPU).

Which models of a config train together (experiment key ``fuse: K``) is decided by
:func:`singledir.pipeline.groups.fusion_groups` (see ``workflow/rules/train.smk``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import torch
from torch import nn
import torch.nn.functional as F

from singledir.data.sources import Tensors
from singledir.io import save_torch
from singledir.training.checkpoint import (catch_stop_signals, checkpoint_and_stop, load_checkpoint, load_snapshot,
                                           save_checkpoint as write_checkpoint)
from singledir.training.core import ADAM_BETAS, ADAM_EPS, TrainConfig, augment_batch, epoch_row, lr_at, make_optimizer
from singledir.training.single import train


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
    per-member learning rates and weight decays."""

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


# ---------------------------------------------------------------------------- training

_SHARED_FIELDS = ("epochs", "batch_size", "optimizer", "momentum", "lr_schedule", "augment", "eval_batch_size",
                  "checkpoint_every")


def check_fusable(cfgs: list[TrainConfig], datas: list[Tensors]) -> None:
    """Members may differ in seed, lr, weight decay, labels and snapshot epochs only."""
    for f in _SHARED_FIELDS:
        values = {getattr(c, f) for c in cfgs}
        if len(values) > 1:
            raise ValueError(f"fused training: train.{f} differs between the models ({sorted(map(str, values))}); "
                             f"only seed, lr, weight_decay, dropout and labels may differ within a fused group")
    shapes = {(tuple(d.x_train.shape), tuple(d.x_test.shape), d.x_train.device.type) for d in datas}
    if len(shapes) > 1:
        raise ValueError(f"fused training: the models' datasets differ in shape or device: {shapes}")


@torch.no_grad()
def evaluate_fused(net: FusedNet, xs: list[torch.Tensor], ys: list[torch.Tensor],
                   batch_size: int) -> list[tuple[float, float]]:
    """Per member (mean loss, accuracy) in eval mode, chunked as training.evaluate."""
    was = net.training
    net.eval()
    k, n = len(xs), len(xs[0])
    loss, correct = [0.0] * k, [0] * k
    shared = all(x is xs[0] for x in xs)
    for i in range(0, n, batch_size):
        if shared:
            logits = net(xs[0][i:i + batch_size], shared=True)
        else:
            logits = net(torch.stack([x[i:i + batch_size] for x in xs]))
        for m in range(k):
            yb = ys[m][i:i + batch_size]
            loss[m] += F.cross_entropy(logits[m], yb, reduction="sum").item()
            correct[m] += (logits[m].argmax(1) == yb).sum().item()
    net.train(was)
    return [(loss[m] / n, correct[m] / n) for m in range(k)]


def train_fused(models: list[nn.Module], datas: list[Tensors], cfgs: list[TrainConfig],
                work_dir: str | os.PathLike, log=print) -> list[tuple[pd.DataFrame, dict[int, dict]]]:
    """Train K models at once, in place; per member (history, {epoch: state_dict} snapshots).

    ``models[k]`` must be freshly built from ``cfgs[k].seed`` (as ``train_model.py``
    does), ``datas[k]`` holds its (possibly corrupted) labels. ``work_dir`` holds the
    resume checkpoint and the snapshots; if it holds a checkpoint, training resumes.
    Outputs are those of :func:`singledir.training.single.train` for each member.
    """
    k = len(models)
    if not (k == len(datas) == len(cfgs)) or k < 1:
        raise ValueError("train_fused: need one data set and one TrainConfig per model")
    check_fusable(cfgs, datas)
    cfg0 = cfgs[0]
    cfg0.expect("epoch", "singledir.training.fused.train_fused")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = work_dir / "resume.pt"
    device = datas[0].x_train.device
    rng = MemberRNG([c.seed for c in cfgs], device)
    net = FusedNet(models, rng).to(device)
    gens = [torch.Generator(device=device).manual_seed(c.seed + 1) for c in cfgs]
    opt = FusedOptimizer(list(net.parameters()), cfgs)
    start_epoch, start_step, perms = 0, 0, None
    histories: list[list[dict]] = [[] for _ in range(k)]
    state, loaded = load_checkpoint(ckpt_path, map_location=device, log=log,
                                    required=("net", "optimizer", "epoch", "step", "perms", "histories", "seeds"))
    if state is not None:
        if state["seeds"] != [c.seed for c in cfgs]:
            raise ValueError(f"{ckpt_path} belongs to a group with seeds {state['seeds']}; remove it to start over")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        for g, s in zip(gens, state["gen_states"]):
            g.set_state(s.to("cpu") if device.type == "cpu" else s)
        rng.states = state["rng_states"]
        start_epoch, start_step, perms, histories = state["epoch"], state["step"], state["perms"], state["histories"]
        log(f"resuming fused group from {loaded} at epoch {start_epoch}, step {start_step}")

    def save_checkpoint(epoch, step, perms):
        write_checkpoint({"net": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "step": step,
                          "perms": perms, "histories": histories, "gen_states": [g.get_state() for g in gens],
                          "rng_states": rng.states, "seeds": [c.seed for c in cfgs]}, ckpt_path)

    def snapshot_path(m, e):
        return work_dir / f"member{m}_snapshot_{e}.pt"

    def take_snapshots(epoch):
        for m in range(k):
            if epoch in cfgs[m].snapshot_epochs and not snapshot_path(m, epoch).exists():
                save_torch(net.member_state_dict(m, models[m]), snapshot_path(m, epoch))

    def record(epoch):
        train_res = evaluate_fused(net, [d.x_train for d in datas], [d.y_train for d in datas], cfg0.eval_batch_size)
        test_res = evaluate_fused(net, [d.x_test for d in datas], [d.y_test for d in datas], cfg0.eval_batch_size)
        for m in range(k):
            histories[m].append(epoch_row(epoch, train_res[m], test_res[m]))

    n = len(datas[0].x_train)
    steps_per_epoch = math.ceil(n / cfg0.batch_size)
    shared_x = all(d.x_train is datas[0].x_train for d in datas)
    x_shape = tuple(datas[0].x_train.shape[1:])
    x_rows = datas[0].x_train.reshape(n, -1)
    x_buf = x_rows.new_empty(k * cfg0.batch_size, x_rows.shape[1]) if shared_x else None
    y_stack = torch.stack([d.y_train for d in datas])  # (K, n)
    take_snapshots(0)
    if not histories[0]:
        record(0)
    with catch_stop_signals() as stop:
        for epoch in range(start_epoch, cfg0.epochs):
            lrs = [lr_at(c, epoch) for c in cfgs]
            net.train()
            if perms is None:
                perms = [torch.randperm(n, generator=g, device=device) for g in gens]
            perm_stack = torch.stack(perms)  # (K, n)
            for step in range(start_step, steps_per_epoch):
                idx = perm_stack[:, step * cfg0.batch_size:(step + 1) * cfg0.batch_size]  # (K, B)
                yb = y_stack.gather(1, idx)
                if shared_x:
                    # (K, B, ...) in one gather: index_select on rows is far faster than
                    # advanced indexing of a 4-d tensor, and a buffer kept across steps
                    # saves the page faults of a fresh multi-megabyte tensor per step.
                    flat = idx.reshape(-1)
                    xb = torch.index_select(x_rows, 0, flat, out=x_buf[:len(flat)]).view(k, -1, *x_shape)
                else:
                    xb = torch.stack([d.x_train[i] for d, i in zip(datas, idx)])
                if cfg0.augment:
                    xb = torch.stack([augment_batch(xb[m], gens[m]) for m in range(k)])
                logits = net(xb)
                # Per member the mean over its batch, as F.cross_entropy(reduction="mean"):
                # the gradient each member receives is the same.
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                       reduction="none").view(k, -1).mean(1).sum()
                opt.zero_grad()
                loss.backward()
                opt.step(lrs)
                if stop.requested:
                    checkpoint_and_stop(lambda: save_checkpoint(epoch, step + 1, perms), ckpt_path,
                                        f"epoch {epoch}, step {step + 1}", stop.signum)
            start_step, perms = 0, None
            record(epoch + 1)
            take_snapshots(epoch + 1)
            if cfg0.checkpoint_due(epoch + 1):
                save_checkpoint(epoch + 1, 0, None)
            h = histories[0][-1]
            log(f"epoch {epoch + 1}/{cfg0.epochs} ({k} models) member 0: train_loss={h['train_loss']:.4f} "
                f"train_acc={h['train_accuracy']:.4f} test_acc={h['test_accuracy']:.4f}")
    out = []
    for m, model in enumerate(models):
        model.load_state_dict(net.member_state_dict(m, model))
        snaps = {e: load_snapshot(snapshot_path(m, e), work_dir)
                 for e in sorted(cfgs[m].snapshot_epochs) if snapshot_path(m, e).exists()}
        out.append((pd.DataFrame(histories[m]), snaps))
    return out


# ---------------------------------------------------------------------------- fuse or not

# Fuse only when the trial measures it at least this much faster than K separate runs
# (a small margin against timing noise: a wrong "fuse" would cost more than a missed one).
FUSE_MARGIN = 1.1


def _time_steps(steps_fns, rounds: int, device: torch.device) -> list[float]:
    """Median seconds of one call of each function, measured interleaved (one call of
    each per round, ``rounds`` rounds after two warm-up rounds), so that a change of the
    machine's load during the trial affects both alike."""
    import time

    times: list[list[float]] = [[] for _ in steps_fns]
    for r in range(rounds + 2):
        for i, step in enumerate(steps_fns):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if r >= 2:
                times[i].append(time.perf_counter() - t)
    return [float(sorted(ts)[len(ts) // 2]) for ts in times]


def fusion_trial(models: list[nn.Module], datas: list[Tensors], cfgs: list[TrainConfig], steps: int = 9) -> dict:
    """Measure, on copies, one training step of the K models fused against one step of a
    single member (the members have the same shape, so K separate steps cost K times
    that); returns the timings and the decision ``fuse`` (fused at least
    :data:`FUSE_MARGIN` times faster). Nothing of the real training is touched: the
    models are copied and the global RNG state is restored."""
    k = len(models)
    cfg0 = cfgs[0]
    device = datas[0].x_train.device
    saved = torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
    try:
        b = min(cfg0.batch_size, len(datas[0].x_train))
        xs = torch.stack([d.x_train[:b] for d in datas])
        ys = torch.stack([d.y_train[:b] for d in datas])
        single = copy.deepcopy(models[0]).train()
        opt1 = make_optimizer(single.parameters(), cfgs[0])

        def step_single():
            loss = F.cross_entropy(single(xs[0]), ys[0])
            opt1.zero_grad(set_to_none=True)
            loss.backward()
            opt1.step()

        net = FusedNet([copy.deepcopy(m) for m in models], MemberRNG([c.seed for c in cfgs], device)).to(device)
        net.train()
        optk = FusedOptimizer(list(net.parameters()), cfgs)
        lrs = [c.lr for c in cfgs]

        def step_fused():
            logits = net(xs)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys.reshape(-1),
                                   reduction="none").view(k, -1).mean(1).sum()
            optk.zero_grad()
            loss.backward()
            optk.step(lrs)

        t_single, t_fused = _time_steps([step_single, step_fused], steps, device)
    finally:
        torch.set_rng_state(saved[0])
        if saved[1] is not None:
            torch.cuda.set_rng_state(saved[1], device)
    ratio = k * t_single / t_fused
    fuse = ratio >= FUSE_MARGIN
    return {"fuse": fuse, "k": k, "steps": steps, "single_step_s": t_single, "fused_step_s": t_fused,
            "speedup": ratio, "margin": FUSE_MARGIN,
            "reason": (f"one fused step of {k} models took {1e3 * t_fused:.2f} ms, {k} separate steps "
                       f"{k} x {1e3 * t_single:.2f} ms = {1e3 * k * t_single:.2f} ms (medians of {steps}, interleaved): fused is "
                       f"{ratio:.2f}x as fast, {'at least' if fuse else 'less than'} the margin {FUSE_MARGIN}")}


def fused_is_bitwise(models: list[nn.Module], datas: list[Tensors]) -> bool:
    """Whether fused training gives bitwise the separately trained models here: MLPs
    (no convolution) on the CPU with one intra-op thread (see the module docstring)."""
    on_cpu = all(d.x_train.device.type == "cpu" for d in datas)
    no_conv = not any(isinstance(m, nn.Conv2d) for model in models for m in model.modules())
    return on_cpu and no_conv and torch.get_num_threads() == 1


# Fused ConvNets on a CPU (grouped convolutions) save a fixed overhead per step but run
# each FLOP slower than the separate convolutions; what decides is the training work of
# one member's step (forward + backward FLOPs). Measured on the 2-core development
# machine at one thread (paper ConvNet with batch norm, widths 1/16 to 1/2, batches 8 to
# 512, K = 4 or 6; fused against K separate steps): 0.26 GFLOP 1.32x; about 1 GFLOP
# 1.19-1.27x; 2 GFLOP 1.15x; about 4 GFLOP 0.90-1.00x; 62 GFLOP 0.67x, whatever the
# width or batch that made the FLOPs. Fusing at most this much keeps a measured 1.15x.
CONV_CPU_FUSE_MAX_STEP_FLOPS = 2e9


def member_step_flops(model: nn.Module, data: Tensors, batch_size: int) -> float:
    """FLOPs of one training step of one member: three times (forward, and a backward
    of twice the forward's products) its forward FLOPs on ``batch_size`` examples, counted
    by ``torch.utils.flop_counter`` on one example of ``data`` (a copy in eval mode; the
    count depends on shapes only)."""
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        probe(data.x_train[:1])
    return 3.0 * counter.get_total_flops() * batch_size


def fusion_cost_model(models: list[nn.Module], datas: list[Tensors], cfgs: list[TrainConfig]) -> dict:
    """The choice for a group whose fused weights differ from the one-by-one weights at
    rounding (:func:`fused_is_bitwise` is False), from shapes and the device alone: no
    timing, so the same config trains the same weights whatever the machine's load.

    - CUDA: fused (one small network leaves a GPU idle; K of them in one product keep it busy);
    - ConvNets on a CPU: fused only when one member's training step is at most
      :data:`CONV_CPU_FUSE_MAX_STEP_FLOPS` (grouped convolutions run each FLOP slower
      than dense ones, so large steps lose more than fusion's per-step savings);
    - MLPs on a CPU with several threads: fused (each member's batched product is a
      product of the separate shape, the threads share the K members, and the per-step
      operations are K times fewer).
    """
    k = len(models)
    device = datas[0].x_train.device
    has_conv = any(isinstance(m, nn.Conv2d) for m in models[0].modules())
    base = {"k": k, "rule": "cost model", "threads": torch.get_num_threads(), "device": device.type}
    if device.type == "cuda":
        return {**base, "fuse": True,
                "reason": "cost model (no timing: fused and separate weights differ at rounding here): "
                          "on CUDA a fused group keeps the GPU busy where one small network leaves it idle"}
    if has_conv:
        flops = member_step_flops(models[0], datas[0], min(cfgs[0].batch_size, len(datas[0].x_train)))
        fuse = flops <= CONV_CPU_FUSE_MAX_STEP_FLOPS
        return {**base, "fuse": fuse, "member_step_flops": flops, "max_step_flops": CONV_CPU_FUSE_MAX_STEP_FLOPS,
                "reason": (f"cost model (no timing: grouped convolutions differ from separate ones at rounding): "
                           f"one member's training step is {flops / 1e9:.3g} GFLOP, "
                           f"{'at most' if fuse else 'more than'} the {CONV_CPU_FUSE_MAX_STEP_FLOPS / 1e9:g} GFLOP "
                           f"up to which fused ConvNets train faster on a CPU")}
    return {**base, "fuse": True,
            "reason": f"cost model (no timing: with {base['threads']} threads fused and separate MLPs differ at "
                      f"rounding): batched products of the members' own shapes, K = {k} times fewer operations per step"}


def train_group(models: list[nn.Module], datas: list[Tensors], cfgs: list[TrainConfig],
                work_dir: str | os.PathLike, fuse: str | bool = "auto", log=print
                ) -> tuple[list[tuple[pd.DataFrame, dict[int, dict]]], dict]:
    """Train a group fused or one model at a time, whichever is faster here; returns
    (per member (history, snapshots), the decision).

    ``fuse="auto"`` runs :func:`fusion_trial` at the start when both methods give bitwise
    the same models (:func:`fused_is_bitwise`: MLPs, CPU, one thread), so the timed choice
    changes time only; otherwise (ConvNets, CUDA, several threads) :func:`fusion_cost_model`
    decides from shapes and the device, without a timing, so the weights never depend on
    the machine's load. The decision (with ``rule``: trial, cost model or forced) goes to
    ``work_dir/fusion_decision.json``; a resumed job reads it back and keeps its choice
    (a half-trained group never switches method). ``True``/``False`` force one.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "fusion_decision.json"
    if path.exists():
        decision = json.loads(path.read_text())
        decision["resumed"] = True
    elif fuse == "auto" and not fused_is_bitwise(models, datas):
        # Fused and separate training differ here by float rounding, which training
        # amplifies: a timed choice would make the weights depend on the machine's load.
        check_fusable(cfgs, datas)
        decision = fusion_cost_model(models, datas, cfgs)
    elif fuse == "auto":
        check_fusable(cfgs, datas)
        decision = {**fusion_trial(models, datas, cfgs), "rule": "trial"}
    else:
        decision = {"fuse": bool(fuse), "k": len(models), "rule": "forced", "reason": f"forced: fuse={fuse}"}
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(decision, indent=1))
        os.replace(tmp, path)
    log(f"fusion decision for {len(models)} models: {'fused' if decision['fuse'] else 'one at a time'} "
        f"({decision['reason']})")
    if decision["fuse"]:
        return train_fused(models, datas, cfgs, work_dir / "fused", log=log), decision
    out = []
    for m, (model, data, cfg) in enumerate(zip(models, datas, cfgs)):
        log(f"member {m + 1}/{len(models)} (seed {cfg.seed})")
        out.append(train(model, data, cfg, work_dir / f"member{m}", log=log))
    return out, decision
