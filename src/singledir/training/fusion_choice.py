"""Whether a group of same-shaped models trains fused or one model at a time.

:func:`decide_fusion` makes the choice once per group and records it in the group's work
directory (a resumed job keeps it: a half-trained group never switches method):

- where both methods give bitwise the same models (:func:`fused_is_bitwise`: MLPs, CPU,
  one intra-op thread) a short measured trial decides (:func:`fusion_trial`), so the timed
  choice changes time only;
- elsewhere (ConvNets, CUDA, several threads) fused and separate weights differ at float
  rounding, so a cost model from shapes and the device decides (:func:`fusion_cost_model`),
  without a timing: the weights never depend on the machine's load.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from singledir.data.sources import Tensors
from singledir.training.core import TrainConfig, make_optimizer
from singledir.training.fused import FusedNet, FusedOptimizer, MemberRNG
from singledir.training.loop import check_members

# Fuse only when the trial measures it at least this much faster than K separate runs
# (a small margin against timing noise: a wrong "fuse" would cost more than a missed one).
FUSE_MARGIN = 1.1


def _time_steps(steps_fns, rounds: int, device: torch.device) -> list[float]:
    """Median seconds of one call of each function, measured interleaved (one call of
    each per round, ``rounds`` rounds after two warm-up rounds), so that a change of the
    machine's load during the trial affects both alike."""
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


def decide_fusion(models: list[nn.Module], datas: list[Tensors], cfgs: list[TrainConfig],
                  work_dir: str | os.PathLike, fuse: str | bool = "auto", log=print) -> dict:
    """Fused or one model at a time for this group (``decision["fuse"]``), with the rule that
    decided (trial, cost model or forced) and its reason.

    ``fuse="auto"`` runs :func:`fusion_trial` when both methods give bitwise the same
    models (:func:`fused_is_bitwise`), else :func:`fusion_cost_model`; ``True``/``False``
    force one. The decision goes to ``work_dir/fusion_decision.json``; a resumed job reads
    it back and keeps its choice.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "fusion_decision.json"
    if path.exists():
        decision = json.loads(path.read_text())
        decision["resumed"] = True
    elif fuse == "auto" and not fused_is_bitwise(models, datas):
        check_members(cfgs, datas)
        decision = fusion_cost_model(models, datas, cfgs)
    elif fuse == "auto":
        check_members(cfgs, datas)
        decision = {**fusion_trial(models, datas, cfgs), "rule": "trial"}
    else:
        decision = {"fuse": bool(fuse), "k": len(models), "rule": "forced", "reason": f"forced: fuse={fuse}"}
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(decision, indent=1))
        os.replace(tmp, path)
    log(f"fusion decision for {len(models)} models: {'fused' if decision['fuse'] else 'one at a time'} "
        f"({decision['reason']})")
    return decision
