"""K sequential trainings of a small MLP against one fused training of K
(:mod:`singledir.training.fused`): models x examples per second, and the ceiling that
the machine's GEMM FLOP/s puts on any fusion speed-up."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch

from singledir.bench.timing import spread
from singledir.data.sources import Tensors
from singledir.models.nets import MLP
from singledir.training.core import TrainConfig
from singledir.training.api import train_members
from singledir.training.loop import fit, train_one


def mlp_training_flops(sizes, n_train: int, n_test: int, epochs: int) -> float:
    """FLOPs of training one MLP as the epoch loop (:func:`singledir.training.loop.fit`) does: per epoch a
    forward and a backward pass over the training set (weight gradients everywhere, input
    gradients below the first layer), and a forward pass over the training and test sets
    for each of its two history rows (the benchmark's runs take no snapshots: the final epoch
    and the convergence gate's epoch floor(0.9 x epochs), :mod:`singledir.training.convergence`)."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    step = 2 * (2 * sum(macs) + sum(macs[1:]))  # forward + weight grads + input grads
    return epochs * n_train * step + 2 * (n_train + n_test) * 2 * sum(macs)


def fused_benchmark(k: int, hidden, n: int, epochs: int, batch_size: int, log, peak: float | None = None,
                    repeats: int = 1) -> dict:
    """K sequential trainings vs one job of K as ``fuse: K`` runs it
    (:func:`singledir.training.api.train_members`: with one thread a short measured trial, then
    fused or one at a time, whichever the trial found faster, the trial's time included; with
    several threads the cost model's choice), and vs forced fusion (same seeds, same work).

    With ``peak`` (the machine's GEMM FLOP/s) it also reports the ceiling: fusion saves
    per-step overheads, not arithmetic, so no fused run can beat ``peak`` divided by the
    FLOP/s that sequential training already achieves.

    ``repeats``: rounds of (sequential, forced fusion, ``fuse: K``), run in turn; each time
    reported is the median over the rounds (``fused_chosen``: the fraction of rounds in
    which ``fuse: K`` fused; a one-thread trial decides anew each round)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=g)
    x_test = torch.randn(max(100, n // 10), 1, 28, 28, generator=g)
    datas = [Tensors(x, torch.randint(0, 10, (n,), generator=g), x_test,
                     torch.randint(0, 10, (len(x_test),), generator=g), 10) for _ in range(k)]
    cfgs = [TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="sgd", lr=0.01, seed=s,
                        eval_batch_size=4096, checkpoint_every=epochs) for s in range(k)]

    def build(seed):
        torch.manual_seed(seed)
        return MLP(784, hidden, 10)

    quiet = lambda *a, **kw: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        # Warm up both paths first: torch.optim imports much on its first step.
        tiny = TrainConfig(epochs=1, batch_size=batch_size, optimizer="sgd", lr=0.01, seed=0)
        few = [Tensors(d.x_train[:batch_size], d.y_train[:batch_size], d.x_test[:10], d.y_test[:10], 10)
               for d in datas[:2]]
        train_one(build(0), few[0], tiny, os.path.join(tmp, "warm_seq"), log=quiet)
        fit([build(0), build(1)], few, [tiny, tiny], os.path.join(tmp, "warm_fused"), fused=True, log=quiet)
        seq_s, fused_s, group_s, chosen = [], [], [], []
        for r in range(max(1, repeats)):  # fresh output folders: a finished run would just load itself
            t = time.perf_counter()
            for i in range(k):
                train_one(build(cfgs[i].seed), datas[i], cfgs[i], os.path.join(tmp, f"seq{r}_{i}"), log=quiet)
            seq_s.append(time.perf_counter() - t)
            models = [build(c.seed) for c in cfgs]
            t = time.perf_counter()
            fit(models, datas, cfgs, os.path.join(tmp, f"fused{r}"), fused=True, log=quiet)
            fused_s.append(time.perf_counter() - t)
            models = [build(c.seed) for c in cfgs]
            t = time.perf_counter()
            _, decision = train_members(models, datas, cfgs, os.path.join(tmp, f"group{r}"), log=quiet)
            group_s.append(time.perf_counter() - t)
            chosen.append(decision["fuse"])
        t_seq, t_fused, t_group = (float(np.median(v)) for v in (seq_s, fused_s, group_s))
    work = k * n * epochs
    flops = k * mlp_training_flops([784, *hidden, 10], n, len(x_test), epochs)
    name = f"{k} MLPs 784-{'-'.join(map(str, hidden))}-10"
    log(f"[fused] {name}, {epochs} epoch(s) of {n} examples, batch {batch_size}: "
        f"sequential {spread(seq_s)} ({work / t_seq:,.0f} model-examples/s, {flops / t_seq / 1e9:.1f} GFLOP/s), "
        f"forced fusion {spread(fused_s)} ({work / t_fused:,.0f} model-examples/s, "
        f"{flops / t_fused / 1e9:.1f} GFLOP/s) -> {t_seq / t_fused:.2f}x")
    log(f"[fused] {name} as `fuse: {k}` runs it: {spread(group_s)} -> {t_seq / t_group:.2f}x; the {decision['rule']} "
        f"chose {'fusion' if decision['fuse'] else 'one at a time'}: {decision['reason']}")
    res = {"k": k, "repeats": len(seq_s), "sequential_s": t_seq, "fused_s": t_group, "speedup": t_seq / t_group,
           "forced_fused_s": t_fused, "forced_fused_speedup": t_seq / t_fused, "fused_chosen": float(np.mean(chosen)),
           "decided_by_trial": float(decision["rule"] == "trial"),
           "sequential_throughput": work / t_seq, "fused_throughput": work / t_group,
           "sequential_flops_per_s": flops / t_seq, "fused_flops_per_s": flops / t_group}
    if decision["rule"] == "trial":  # a cost-model decision (several threads) times nothing
        res["trial_speedup"] = decision["speedup"]
    if peak:
        res["speedup_ceiling"] = peak * t_seq / flops
        log(f"[fused] ceiling on this machine: sequential training already runs at {100 * flops / t_seq / peak:.0f} % "
            f"of the measured GEMM FLOP/s, so no fusion can exceed {res['speedup_ceiling']:.2f}x; forced fusion "
            f"reaches {100 * flops / t_fused / peak:.0f} %")
    return res
