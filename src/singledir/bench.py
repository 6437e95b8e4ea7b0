"""Benchmark: the engine against the naive method, and fused against sequential training.

``python -m singledir.bench [CSV] [--quick] [--threads N] [--repeats R] [--convnet-width W] ...``

Prints, for the machine it runs on:

1. the measured fp32 matrix-multiply throughput (the machine's GEMM FLOP/s: ``torch.mm``,
   MKL on a CPU; and, where PyTorch has oneDNN, the same product on oneDNN's matrix
   multiply, which on some CPUs is twice as fast: fractions are printed against both);
2. a full cumulative-ablation analysis (10 orderings x 21 points, all units of both
   hidden layers) of an MLP 784-2048-2048-10 on 10,000 examples, and of the paper's
   ConvNet (last three layers ablated, as in Fig. 1b) on 2,000 32x32 examples: the
   engine's wall time against the naive method (:func:`singledir.engine.reference.reference_ablation_eval`:
   forward hooks, one full forward pass per point). The naive method is timed on a few
   points over all examples and extrapolated linearly to every point (its cost per point
   does not depend on the point); those points also check that both give the same numbers;
3. the engine's achieved FLOP/s on the suffix work (what it computes per mask, counted
   by the engine) as a fraction of the measured GEMM FLOP/s, and the speed-up split
   into its two factors: how many times less arithmetic the engine does than the naive
   method (``*_flop_ratio``; the naive method's counted by ``torch.utils.flop_counter``)
   times the engine's FLOP rate relative to the naive method's (``*_rate_vs_naive``);
   for the ConvNet also the engine's time with direct convolutions only
   (``SINGLEDIR_WINOGRAD=0``, :mod:`singledir.engine.winograd`), so that a machine shows
   whether the Winograd form pays there (``convnet_winograd_speedup``);
4. K sequential trainings of a small MLP against one fused training of K
   (:mod:`singledir.training.fused`): models x examples per second;
5. with CUDA: the engine on the GPU in fp32, TF32 and bf16 (images/s and the measured
   difference from fp32).

Every time is the median of ``--repeats`` rounds (default 3), the rounds of the
competitors run in turn (engine, naive; sequential, fused), so that a load drifting on a
shared machine falls on both sides of a ratio alike; the CSV also carries each time's
smallest and largest round.

Inputs are synthetic (seeded normal images; labels are the network's own predictions
with 10 % flipped), since timing does not depend on the data. Writes every figure to a
tidy CSV (default ``results/bench.csv``); the last printed line is one JSON object with
``mlp_speedup``, ``convnet_speedup``, ``gemm_fraction`` and ``fused_training_speedup``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from singledir.engine.ablation import curve_points, layer_sizes, masks_from_sets, random_orderings
from singledir.io import save_csv
from singledir.models.nets import MLP, ConvNet
from singledir.engine.options import EngineOptions
from singledir.engine.batch import PerturbationBatch
from singledir.engine.perturb import evaluate_perturbations
from singledir.engine.reference import reference_ablation_eval, split_units


def _best_seconds(fn, repeats: int = 3, device="cpu") -> float:
    """The best wall time of ``repeats`` calls of ``fn``, after one warm-up call."""
    best = math.inf
    for i in range(repeats + 1):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        if i:
            best = min(best, time.perf_counter() - t)
    return best


def gemm_flops(n: int = 2048, repeats: int = 3, device="cpu") -> float:
    """Best-of-``repeats`` fp32 FLOP/s of an n x n x n matrix product (``torch.mm``)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2.0 * n ** 3 / _best_seconds(lambda: a @ b, repeats, device)


def onednn_gemm_flops(n: int = 2048, repeats: int = 3) -> float | None:
    """Best-of-``repeats`` fp32 FLOP/s of the same n x n x n product on oneDNN's matrix
    multiply (:func:`singledir.engine.linear.linear`, CPU), or None where PyTorch has no
    oneDNN. On some CPUs (the AMD development machine: 464-502 against MKL's 220-229
    GFLOP/s) it is far faster than ``torch.mm``'s MKL, so the benchmark reports the
    engine's rate against both."""
    from singledir.engine.linear import linear, onednn_linear_available

    if not onednn_linear_available():
        return None
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch.no_grad():
        return 2.0 * n ** 3 / _best_seconds(lambda: linear(a, b), repeats)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _variance_preserving(model: nn.Module, seed: int) -> nn.Module:
    """He-initialized weights, so a random deep network's output depends on its input."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
    return model.eval()


def _data(model: nn.Module, n: int, shape, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=g)
    with torch.no_grad():
        y = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, n, 1000)])
    flip = torch.rand(n, generator=g) < 0.1
    y[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=g)
    return x, y


def _spread(times: list[float]) -> str:
    """'2.72 s' for one run; '2.72 s (median of 2.68, 2.72, 2.85)' for several."""
    med = float(np.median(times))
    return f"{med:.2f} s" + (f" (median of {', '.join(f'{t:.2f}' for t in times)})" if len(times) > 1 else "")


def ablation_benchmark(name: str, model: nn.Module, x, y, layers, n_orderings: int, n_points: int,
                       naive_points: int, chunk_size: int, log, direct_convolutions: bool = False,
                       repeats: int = 1) -> dict:
    """Engine vs naive for one full cumulative-ablation analysis; returns a result dict.

    ``direct_convolutions``: also time the engine with its small-map convolutions direct
    (``SINGLEDIR_WINOGRAD=0``), so that each machine shows whether the Winograd form pays.
    ``repeats``: rounds of (engine, [engine with direct convolutions,] naive sample), run
    in turn so that a drifting load on a shared machine falls on all of them alike; every
    time reported is the median over the rounds (``*_min`` / ``*_max`` give the spread),
    and the rounds' results must agree (``engine_repeat_max_abs_loss_diff``: 0 on a CPU)."""
    sizes = layer_sizes(model, layers, x)
    total = sum(sizes.values())
    orders = random_orderings(total, n_orderings, 0)
    points = curve_points(total, n_points)
    sets = [orders[o, :k] for o in range(n_orderings) for k in points]
    keep = masks_from_sets(sets, sizes)
    pert = PerturbationBatch(len(sets), keep, {n: None for n in layers})
    options = EngineOptions(chunk_size=chunk_size)
    # The naive method on a few points spread over the curve, all examples; linear in points.
    check = np.unique(np.linspace(0, len(sets) - 1, naive_points).round().astype(int))

    def engine():
        stats: dict = {}
        t = time.perf_counter()
        loss, acc = evaluate_perturbations(model, x, y, pert, options=options, stats=stats)
        return time.perf_counter() - t, loss, acc, stats

    def engine_direct():
        before = os.environ.get("SINGLEDIR_WINOGRAD")
        os.environ["SINGLEDIR_WINOGRAD"] = "0"
        try:
            return engine()
        finally:
            if before is None:
                os.environ.pop("SINGLEDIR_WINOGRAD")
            else:
                os.environ["SINGLEDIR_WINOGRAD"] = before

    def naive():
        t = time.perf_counter()
        refs = [reference_ablation_eval(model, x, y, split_units(sets[i], sizes)) for i in check]
        return time.perf_counter() - t, refs

    runs, direct_runs, naive_runs = [], [], []
    for _ in range(max(1, repeats)):
        runs.append(engine())
        if direct_convolutions:
            direct_runs.append(engine_direct())
        naive_runs.append(naive())
    _, loss, acc, stats = runs[0]
    t_engine = float(np.median([r[0] for r in runs]))
    time_base = float(np.median([r[3]["time_base"] for r in runs]))
    time_suffix = float(np.median([r[3]["time_suffix"] for r in runs]))
    repeat_diff = max([float((r[1] - rs[0][1]).abs().max()) for rs in (runs, direct_runs) for r in rs[1:]],
                      default=0.0)
    log(f"[{name}] engine: {_spread([r[0] for r in runs])} for {len(sets)} points x {len(x)} examples "
        f"(path {stats['path']}, {stats['unique_perturbations']} distinct masks; base pass {time_base:.2f} s, "
        f"suffix {time_suffix:.2f} s)")
    direct = {}
    if direct_convolutions:
        t_direct = float(np.median([r[0] for r in direct_runs]))
        loss_d, stats_d = direct_runs[0][1], direct_runs[0][3]
        # the suffix's work counted as direct convolutions (what the Winograd form replaces)
        direct = {"engine_direct_s": t_direct, "winograd_speedup": t_direct / t_engine,
                  "winograd_max_abs_loss_diff": float((loss_d - loss).abs().max()),
                  "suffix_flops_direct_equivalent": stats_d["flops_suffix"],
                  "base_flops_direct_equivalent": stats_d["flops_base"]}
        log(f"[{name}] engine with direct convolutions only (SINGLEDIR_WINOGRAD=0): {_spread([r[0] for r in direct_runs])}"
            f" -> the Winograd form of the small-map convolutions is {t_direct / t_engine:.2f}x as fast here "
            f"(largest loss difference {direct['winograd_max_abs_loss_diff']:.1e})")
        if t_direct < t_engine:
            log(f"[{name}] the Winograd form does not pay on this machine: run analyses with SINGLEDIR_WINOGRAD=0")
    t_naive_part = float(np.median([r[0] for r in naive_runs]))
    t_naive = t_naive_part * len(sets) / len(check)
    diffs = [(abs(ref_loss - float(loss[i])), abs(ref_acc - float(acc[i])))
             for i, (ref_loss, ref_acc) in zip(check, naive_runs[0][1])]
    max_dloss = max(d[0] for d in diffs)
    max_dacc = max(d[1] for d in diffs)
    log(f"[{name}] naive: {_spread([r[0] for r in naive_runs])} for {len(check)} of {len(sets)} points "
        f"(all {len(x)} examples) -> {t_naive:.1f} s extrapolated linearly to all points")
    log(f"[{name}] engine vs naive at those points: max |d loss| = {max_dloss:.2e}, max |d accuracy| = {max_dacc:.2e}"
        + (f"; the {len(runs)} engine rounds differ by at most {repeat_diff:.1e}" if len(runs) > 1 else ""))
    speedup = t_naive / t_engine
    suffix_rate = stats["flops_suffix"] / max(time_suffix, 1e-9)
    engine_flops = stats["flops_suffix"] + stats["flops_base"]
    total_rate = engine_flops / t_engine
    log(f"[{name}] speedup: {speedup:.1f}x; engine suffix {suffix_rate / 1e9:.1f} GFLOP/s, "
        f"overall {total_rate / 1e9:.1f} GFLOP/s")
    # The speed-up splits exactly into how much less arithmetic the engine does and how
    # fast it does it: speedup = flop_ratio * rate_ratio. A flop_ratio below a target means
    # the target needs the engine's products to run faster than the naive method's.
    naive_flops = forward_flops(model, x) * len(sets)
    flop_ratio = naive_flops / engine_flops
    naive_rate = naive_flops / t_naive
    log(f"[{name}] arithmetic: naive {naive_flops / 1e12:.2f} TFLOP, engine {engine_flops / 1e12:.3f} TFLOP "
        f"({flop_ratio:.1f}x less); naive runs at {naive_rate / 1e9:.1f} GFLOP/s, the engine at "
        f"{total_rate / naive_rate:.2f}x that rate -> {flop_ratio:.1f} x {total_rate / naive_rate:.2f} = {speedup:.1f}x")
    return {"name": name, "examples": len(x), "points": len(sets), "repeats": len(runs), "engine_s": t_engine,
            "engine_s_min": min(r[0] for r in runs), "engine_s_max": max(r[0] for r in runs),
            "engine_repeat_max_abs_loss_diff": repeat_diff,
            "naive_s_measured": t_naive_part, "naive_points_measured": len(check), "naive_s": t_naive,
            "naive_s_measured_min": min(r[0] for r in naive_runs), "naive_s_measured_max": max(r[0] for r in naive_runs),
            "speedup": speedup, "suffix_flops": stats["flops_suffix"], "suffix_s": time_suffix,
            "base_flops": stats["flops_base"], "base_s": time_base, "suffix_flops_per_s": suffix_rate,
            "engine_flops_per_s": total_rate, "naive_flops": naive_flops, "naive_flops_per_s": naive_rate,
            "flop_ratio": flop_ratio, "rate_ratio": total_rate / naive_rate,
            "max_abs_loss_diff": max_dloss, "max_abs_accuracy_diff": max_dacc, **direct}


def forward_flops(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward pass over all of ``x`` (matrix products and convolutions, 2 per
    multiply-add: what the naive method computes per point), counted by
    ``torch.utils.flop_counter`` on one example."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1])
    return float(counter.get_total_flops()) * len(x)


def mlp_training_flops(sizes, n_train: int, n_test: int, epochs: int) -> float:
    """FLOPs of training one MLP as :func:`singledir.training.single.train` does: per epoch a
    forward and a backward pass over the training set (weight gradients everywhere, input
    gradients below the first layer), and a forward pass over the training and test sets
    for each history row (epochs + 1 rows)."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    step = 2 * (2 * sum(macs) + sum(macs[1:]))  # forward + weight grads + input grads
    return epochs * n_train * step + (epochs + 1) * (n_train + n_test) * 2 * sum(macs)


def fused_benchmark(k: int, hidden, n: int, epochs: int, batch_size: int, log, peak: float | None = None,
                    repeats: int = 1) -> dict:
    """K sequential trainings vs one job of K as ``fuse: K`` runs it
    (:func:`singledir.training.fused.train_group`: with one thread a short measured trial, then
    fused or one at a time, whichever the trial found faster, the trial's time included; with
    several threads the cost model's choice), and vs forced fusion (same seeds, same work).

    With ``peak`` (the machine's GEMM FLOP/s) it also reports the ceiling: fusion saves
    per-step overheads, not arithmetic, so no fused run can beat ``peak`` divided by the
    FLOP/s that sequential training already achieves.

    ``repeats``: rounds of (sequential, forced fusion, ``fuse: K``), run in turn; each time
    reported is the median over the rounds (``fused_chosen``: the fraction of rounds in
    which ``fuse: K`` fused; a one-thread trial decides anew each round)."""
    import tempfile

    from singledir.data.sources import Tensors
    from singledir.training.fused import train_fused, train_group
    from singledir.training.core import TrainConfig
    from singledir.training.single import train

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
        train(build(0), few[0], tiny, os.path.join(tmp, "warm_seq"), log=quiet)
        train_fused([build(0), build(1)], few, [tiny, tiny], os.path.join(tmp, "warm_fused"), log=quiet)
        seq_s, fused_s, group_s, chosen = [], [], [], []
        for r in range(max(1, repeats)):  # fresh output folders: a finished run would just load itself
            t = time.perf_counter()
            for i in range(k):
                train(build(cfgs[i].seed), datas[i], cfgs[i], os.path.join(tmp, f"seq{r}_{i}"), log=quiet)
            seq_s.append(time.perf_counter() - t)
            models = [build(c.seed) for c in cfgs]
            t = time.perf_counter()
            train_fused(models, datas, cfgs, os.path.join(tmp, f"fused{r}"), log=quiet)
            fused_s.append(time.perf_counter() - t)
            models = [build(c.seed) for c in cfgs]
            t = time.perf_counter()
            _, decision = train_group(models, datas, cfgs, os.path.join(tmp, f"group{r}"), log=quiet)
            group_s.append(time.perf_counter() - t)
            chosen.append(decision["fuse"])
        t_seq, t_fused, t_group = (float(np.median(v)) for v in (seq_s, fused_s, group_s))
    work = k * n * epochs
    flops = k * mlp_training_flops([784, *hidden, 10], n, len(x_test), epochs)
    name = f"{k} MLPs 784-{'-'.join(map(str, hidden))}-10"
    log(f"[fused] {name}, {epochs} epoch(s) of {n} examples, batch {batch_size}: "
        f"sequential {_spread(seq_s)} ({work / t_seq:,.0f} model-examples/s, {flops / t_seq / 1e9:.1f} GFLOP/s), "
        f"forced fusion {_spread(fused_s)} ({work / t_fused:,.0f} model-examples/s, "
        f"{flops / t_fused / 1e9:.1f} GFLOP/s) -> {t_seq / t_fused:.2f}x")
    log(f"[fused] {name} as `fuse: {k}` runs it: {_spread(group_s)} -> {t_seq / t_group:.2f}x; the {decision['rule']} "
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


def _cuda_device() -> torch.device | None:
    """The GPU the device check runs on, or None without one (the one device query; the
    tests replace it to run the check's code on CPU tensors)."""
    return torch.device("cuda") if torch.cuda.is_available() else None


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type} (stand-in)"


class _Budget:
    """Wall-clock budget of the device check: each part asks for its share and is
    skipped (and says so) when too little is left."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def gpu_engine_benchmark(name: str, model: nn.Module, x, y, layers, device, log, n_orderings: int = 10,
                         n_points: int = 21, chunk_size: int = 2048) -> list[dict]:
    """One full cumulative-ablation analysis on the device in each precision: images/s
    (examples x points per second) and the difference from fp32. A precision the device
    refuses is reported with its reason."""
    model = model.to(device)
    x, y = x.to(device), y.to(device)
    sizes = layer_sizes(model, layers, x)
    total = sum(sizes.values())
    orders = random_orderings(total, n_orderings, 0)
    sets = [orders[o, :k] for o in range(n_orderings) for k in curve_points(total, n_points)]
    keep = masks_from_sets(sets, sizes)
    pert = PerturbationBatch(len(sets), {k: v.to(device) for k, v in keep.items()}, {n: None for n in layers})
    rows, ref = [], None
    for precision in ("fp32", "tf32", "bf16"):
        try:
            # check_tol=1: measure the difference from fp32 and report it, never refuse
            options = EngineOptions(chunk_size=chunk_size, precision=precision, check_tol=1.0)
            evaluate_perturbations(model, x[:64], y[:64], pert, options=options)  # warm-up
            _sync(device)
            t = time.perf_counter()
            loss, acc = evaluate_perturbations(model, x, y, pert, options=options)
            _sync(device)
        except (ValueError, RuntimeError) as e:  # e.g. tf32 off a CUDA device, a refused precision
            log(f"[gpu] {name} {precision}: not run ({e})")
            rows.append({"model": name, "precision": precision, "error": str(e)})
            continue
        dt = time.perf_counter() - t
        ref = (loss, acc) if ref is None else ref
        row = {"model": name, "precision": precision, "seconds": dt, "images_per_s": len(x) * len(sets) / dt,
               "max_abs_accuracy_diff": float((acc - ref[1]).abs().max()),
               "max_abs_loss_diff": float((loss - ref[0]).abs().max())}
        log(f"[gpu] {name} engine {precision}: {dt:.3f} s, {row['images_per_s']:,.0f} image-points/s, "
            f"|d accuracy| <= {row['max_abs_accuracy_diff']:.1e}, |d loss| <= {row['max_abs_loss_diff']:.1e} vs fp32")
        rows.append(row)
    return rows


def _train_steps(step, budget_s: float, max_steps: int, device) -> tuple[float, int]:
    """Seconds per call of ``step`` (after two warm-up calls), over at most ``max_steps``
    calls or ``budget_s`` seconds, whichever comes first."""
    step(), step()
    _sync(device)
    t0 = time.perf_counter()
    n = 0
    while n < max_steps and (n == 0 or time.perf_counter() - t0 < budget_s):
        step()
        n += 1
        if n % 8 == 0:
            _sync(device)
    _sync(device)
    return (time.perf_counter() - t0) / n, n


def _convnet_step(models, device, batch: int, size: int, k: int):
    """One SGD step of one ConvNet (k == 1) or of k fused ConvNets (singledir.training.fused)."""
    from singledir.training.core import TrainConfig
    from singledir.training.fused import FusedNet, FusedOptimizer, MemberRNG

    g = torch.Generator().manual_seed(0)
    cfgs = [TrainConfig(epochs=1, batch_size=batch, optimizer="sgd", lr=0.01, momentum=0.9, seed=i) for i in range(k)]
    if k == 1:
        net = models[0].to(device).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        xb = torch.randn(batch, 3, size, size, generator=g).to(device)
        yb = torch.randint(0, 10, (batch,), generator=g).to(device)

        def step():
            loss = torch.nn.functional.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step
    net = FusedNet(models, MemberRNG([c.seed for c in cfgs], device)).to(device).train()
    opt = FusedOptimizer(list(net.parameters()), cfgs)
    xb = torch.randn(k, batch, 3, size, size, generator=g).to(device)
    yb = torch.randint(0, 10, (k, batch), generator=g).to(device)

    def step():
        logits = net(xb)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                                 reduction="none").view(k, -1).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step([0.01] * k)
    return step


def _mlp_step(hidden, device, batch: int):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = MLP(784, hidden, 10).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    xb = torch.randn(batch, 1, 28, 28, generator=g).to(device)
    yb = torch.randint(0, 10, (batch,), generator=g).to(device)

    def step():
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


# Training-set sizes of the paper's data sets (the projection's epochs are of these).
_TRAIN_SIZES = {"MNIST": 60000, "CIFAR10": 50000}


def paper_projection(config: dict, epoch_cost, fused_speedup: dict, log) -> list[dict]:
    """GPU-hours per experiment of ``config``: per model ``epochs x`` the measured cost of
    one epoch of its architecture (``epoch_cost(family, model_spec, n_train)`` in seconds,
    or None when not measured), times the experiment's model count
    (:func:`singledir.pipeline.plan.experiment_models`), divided by the measured fusion speedup of
    the architecture where the experiment sets ``fuse`` (training only; analyses apart)."""
    from singledir.pipeline.plan import enabled_experiments, enabled_families, experiment_models, experiment_specs

    rows = []
    for family in enabled_families(config):
        fam = config["families"][family]
        n_train = _TRAIN_SIZES.get(str(fam.get("dataset", {}).get("name")))
        for exp in enabled_experiments(config, family):
            ids = experiment_models(config, family, exp)
            specs = experiment_specs(config, family, exp)
            seconds, unmeasured = 0.0, 0
            for mid in ids:
                spec = specs[mid]
                cost = epoch_cost(family, spec, n_train) if n_train else None
                epochs = spec["train"].get("epochs")
                if cost is None or not epochs:
                    unmeasured += 1
                    continue
                seconds += cost * float(epochs)
            fuse = int(fam["experiments"][exp].get("fuse", 1) or 1)
            arch = specs[ids[0]]["model"].get("arch")
            speedup = fused_speedup.get(arch, 1.0) if fuse > 1 else 1.0
            hours = seconds / 3600.0 / speedup
            rows.append({"family": family, "experiment": exp, "models": len(ids), "models_unmeasured": unmeasured,
                         "fuse": fuse, "fused_speedup_applied": speedup, "gpu_hours": hours})
            note = f", {unmeasured} not measured (not included)" if unmeasured else ""
            log(f"[projection] {family}/{exp}: {len(ids)} models x their epochs -> {hours:.1f} GPU-hours"
                f"{f' (fused {speedup:.2f}x)' if speedup != 1.0 else ''}{note}")
    return rows


def gpu_check(budget_s: float, config_path: str, log, quick: bool = False) -> dict:
    """The one-shot device check (``--device cuda``): within ``budget_s`` seconds, the
    engine's images/s in fp32/TF32/bf16, K fused ConvNets against one, one ConvNet epoch
    at the config's width, and the paper-scale projection of training GPU-hours."""
    import yaml

    device = _cuda_device()
    if device is None:
        raise SystemExit("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)")
    budget = _Budget(budget_s)
    log(f"[gpu] device {_device_name(device)}, budget {budget_s:.0f} s")
    config = yaml.safe_load(open(config_path))
    summary: dict = {"device": _device_name(device), "budget_s": budget_s}
    rows: list[dict] = []
    conv_arch = config["families"].get("cifar10", {}).get("model", {"width": 1.0, "batch_norm": True})
    width = 0.0625 if quick else float(conv_arch.get("width", 1.0))
    # 1. The engine in each precision (a fifth of the budget each at most, else skipped).
    n_mlp, n_conv = (200, 64) if quick else (10000, 5000)
    mlp = _variance_preserving(MLP(784, [64, 64] if quick else [2048, 2048], 10), 0)
    x, y = _data(mlp, n_mlp, (1, 28, 28), 1)
    conv = _variance_preserving(ConvNet(3, 10, width=width, batch_norm=True), 1)
    xc, yc = _data(conv, n_conv, (3, 32, 32), 2)
    engine_parts = [("mlp", mlp, x, y, ["relu1", "relu2"]), (f"convnet_w{width:g}", conv, xc, yc,
                                                              ["relu9", "relu10", "relu11"])]
    for name, model, xs, ys, layers in engine_parts:
        if budget.left() < 0.5 * budget_s:
            log(f"[gpu] {name} engine: skipped (budget)")
            continue
        for row in gpu_engine_benchmark(name, model, xs, ys, layers, device, log,
                                        *((3, 6) if quick else (10, 21))):
            rows.append({"part": "engine", **row})
            if "images_per_s" in row:
                summary[f"gpu_{name.split('_')[0]}_{row['precision']}_images_per_s"] = row["images_per_s"]
                summary[f"gpu_{name.split('_')[0]}_{row['precision']}_max_abs_accuracy_diff"] = \
                    row["max_abs_accuracy_diff"]
    # 2. K fused ConvNets against one (grouped convolutions), steps of batch 128.
    k = 4 if quick else 8
    batch = 8 if quick else 128
    fused_speedup = {}
    if budget.left() > 0.3 * budget_s:
        share = min(0.1 * budget_s, budget.left() / 4)
        torch.manual_seed(0)
        t_one, n_one = _train_steps(_convnet_step([ConvNet(3, 10, width=width)], device, batch, 32, 1), share,
                                    200, device)
        members = []
        for i in range(k):
            torch.manual_seed(i)
            members.append(ConvNet(3, 10, width=width))
        t_k, n_k = _train_steps(_convnet_step(members, device, batch, 32, k), share, 200, device)
        fused_speedup["convnet"] = k * t_one / t_k
        summary.update(gpu_fused_convnet_k=k, gpu_fused_convnet_speedup=fused_speedup["convnet"],
                       gpu_convnet_step_s=t_one)
        rows.append({"part": "fused_convnet", "k": k, "one_step_s": t_one, "fused_step_s": t_k,
                     "speedup": fused_speedup["convnet"]})
        log(f"[gpu] {k} fused ConvNets (width {width:g}, batch {batch}): {1e3 * t_k:.1f} ms/step against one "
            f"{1e3 * t_one:.1f} ms/step -> {fused_speedup['convnet']:.2f}x ({n_one} and {n_k} steps)")
    else:
        log("[gpu] fused ConvNets: skipped (budget)")
    # 3. One ConvNet epoch at the config's width: a full pass of 50,000 images in batches
    #    of 128 (391 steps), cut short at its budget share and extrapolated (said so).
    steps_epoch = 4 if quick else math.ceil(50000 / 128)
    conv_epoch_s = None
    if budget.left() > 0.15 * budget_s:
        torch.manual_seed(0)
        t_step, n = _train_steps(_convnet_step([ConvNet(3, 10, width=width)], device, batch, 32, 1),
                                 budget.left() / 2, steps_epoch, device)
        conv_epoch_s = t_step * steps_epoch
        how = "measured" if n >= steps_epoch else f"{n} of {steps_epoch} steps, extrapolated"
        summary.update(gpu_convnet_epoch_s=conv_epoch_s, gpu_convnet_width=width)
        rows.append({"part": "convnet_epoch", "width": width, "epoch_s": conv_epoch_s, "steps": n})
        log(f"[gpu] one ConvNet epoch (width {width:g}, 50,000 images, batch {batch}): {conv_epoch_s:.1f} s ({how})")
    else:
        log("[gpu] ConvNet epoch: skipped (budget)")
    # 4. Paper-scale projection: MLP epochs measured per width on the fly (cheap).
    mlp_step_s: dict = {}

    def epoch_cost(family, spec, n_train):
        arch = spec["model"]
        if arch.get("arch") == "convnet":
            return None if conv_epoch_s is None else conv_epoch_s * n_train / 50000
        if arch.get("arch") == "mlp":
            key = tuple(arch["hidden"])
            if key not in mlp_step_s and budget.left() > 5:
                hidden = [min(h, 64) for h in key] if quick else list(key)
                mlp_step_s[key] = _train_steps(_mlp_step(hidden, device, 128), min(5.0, budget.left() / 4), 100,
                                               device)[0]
            return mlp_step_s[key] * math.ceil(n_train / 128) if key in mlp_step_s else None
        return None  # ResNets on ImageNet: not measured here

    projection = paper_projection(config, epoch_cost, fused_speedup, log)
    for r in projection:
        rows.append({"part": "projection", **r})
        summary[f"gpu_hours_{r['family']}_{r['experiment']}"] = r["gpu_hours"]
    summary["gpu_hours_total_measured"] = sum(r["gpu_hours"] for r in projection)
    summary["gpu_check_s"] = budget_s - budget.left()
    log(f"[gpu] check took {summary['gpu_check_s']:.0f} s of its {budget_s:.0f} s budget")
    return {"summary": summary, "rows": rows}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m singledir.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="?", default="results/bench.csv", help="where to write the CSV")
    ap.add_argument("--quick", action="store_true", help="a tiny version that runs in seconds")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--convnet-width", type=float, default=None, help="ConvNet width multiplier (default 0.5)")
    ap.add_argument("--fuse-k", type=int, default=None, help="models trained at once (default 16)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="rounds of each timing, reported as medians (default 3; 1 with --quick)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: the one-shot GPU check instead of the CPU benchmark")
    ap.add_argument("--budget-s", type=float, default=480.0, help="wall-time budget of the GPU check (seconds)")
    ap.add_argument("--config", default="config/config.yaml", help="config whose planned models the GPU check projects")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def log(msg):
        print(msg, flush=True)

    q = args.quick
    repeats = args.repeats if args.repeats is not None else (1 if q else 3)
    if repeats < 1:
        ap.error(f"--repeats must be at least 1; got {repeats}")
    threads = torch.get_num_threads()
    log(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{threads} threads")
    if q:
        log("QUICK MODE: tiny sizes, the ratios are not the benchmark's")
    rows = []
    if args.device == "cuda":
        res = gpu_check(args.budget_s, args.config, log, quick=q)
        table = pd.DataFrame([{"benchmark": f"gpu_{r['part']}" + (f"_{r['model']}_{r['precision']}" if "model" in r
                                                                  else (f"_{r['family']}_{r['experiment']}"
                                                                        if "experiment" in r else "")),
                               "metric": key, "value": float(v), "unit": "", "note": ""}
                              for r in res["rows"] for key, v in r.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)])
        save_csv(table, args.csv)
        log(f"wrote {args.csv}")
        summary = {**res["summary"], "threads": threads, "quick": q}
        print(json.dumps(summary), flush=True)
        return summary

    def add(bench, metric, value, unit="", note=""):
        rows.append({"benchmark": bench, "metric": metric, "value": float(value), "unit": unit, "note": note})

    n_gemm = 256 if q else 2048
    peaks, onednn_peaks = [gemm_flops(n_gemm)], [onednn_gemm_flops(n_gemm)]
    log(f"[gemm] fp32 matrix multiply: {peaks[0] / 1e9:.1f} GFLOP/s (torch.mm)"
        + (f", {onednn_peaks[0] / 1e9:.1f} GFLOP/s (oneDNN)" if onednn_peaks[0] else ""))

    # MLP 784-2048-2048-10 on 10,000 examples, 10 orderings x 21 points, all units of both layers.
    hidden = [64, 64] if q else [2048, 2048]
    mlp = _variance_preserving(MLP(784, hidden, 10), 0)
    x, y = _data(mlp, 300 if q else 10000, (1, 28, 28), 1)
    res_mlp = ablation_benchmark("mlp", mlp, x, y, ["relu1", "relu2"], 3 if q else 10, 6 if q else 21,
                                 2 if q else 3, 5000, log, repeats=repeats)
    peaks.append(gemm_flops(n_gemm))
    onednn_peaks.append(onednn_gemm_flops(n_gemm))
    width = args.convnet_width or (0.0625 if q else 0.5)
    conv = _variance_preserving(ConvNet(3, 10, width=width, batch_norm=True), 1)
    xc, yc = _data(conv, 100 if q else 2000, (3, 32, 32), 2)
    res_conv = ablation_benchmark(f"convnet_w{width:g}", conv, xc, yc, ["relu9", "relu10", "relu11"],
                                  3 if q else 10, 6 if q else 21, 2, 2000, log, direct_convolutions=True,
                                  repeats=repeats)
    peaks.append(gemm_flops(n_gemm))
    onednn_peaks.append(onednn_gemm_flops(n_gemm))
    # The machine's rate, measured before, between and after the engine runs (on a shared
    # machine the load drifts): the median.
    peak = float(np.median(peaks))
    log(f"[gemm] fp32 matrix multiply: {', '.join(f'{p / 1e9:.1f}' for p in peaks)} GFLOP/s -> {peak / 1e9:.1f}")
    add("gemm", "fp32_flops_per_s", peak, "FLOP/s",
        f"{n_gemm}^3 matmul, best of 3, median of 3 measurements, {threads} threads")
    for res in (res_mlp, res_conv):
        for key, value in res.items():
            if key != "name":
                add(res["name"], key, value)
    suffix_rate = (res_mlp["suffix_flops"] + res_conv["suffix_flops"]) / (res_mlp["suffix_s"] + res_conv["suffix_s"])
    gemm_fraction = suffix_rate / peak
    log(f"[gemm] engine suffix work: {suffix_rate / 1e9:.1f} GFLOP/s = {100 * gemm_fraction:.0f} % of the measured "
        f"GEMM throughput (mlp {100 * res_mlp['suffix_flops_per_s'] / peak:.0f} %, "
        f"convnet {100 * res_conv['suffix_flops_per_s'] / peak:.0f} %)")
    add("gemm", "engine_suffix_fraction", gemm_fraction, "", "engine suffix FLOP/s / measured fp32 GEMM FLOP/s")
    # The Winograd form executes fewer FLOPs for the same outputs; the same time against the
    # FLOPs direct convolutions would have executed says how fast the suffix's work got done.
    conv_direct_eq = res_conv["suffix_flops_direct_equivalent"] / res_conv["suffix_s"]
    gemm_fraction_direct_eq = ((res_mlp["suffix_flops"] + res_conv["suffix_flops_direct_equivalent"])
                               / (res_mlp["suffix_s"] + res_conv["suffix_s"]) / peak)
    log(f"[gemm] counting the ConvNet's suffix as direct convolutions ({res_conv['suffix_flops_direct_equivalent'] / 1e12:.2f} "
        f"against {res_conv['suffix_flops'] / 1e12:.2f} TFLOP executed): {100 * gemm_fraction_direct_eq:.0f} % "
        f"(convnet {100 * conv_direct_eq / peak:.0f} %)")
    add("gemm", "engine_suffix_fraction_direct_equivalent", gemm_fraction_direct_eq, "",
        "the same with the ConvNet's Winograd convolutions counted as the direct ones they replace")
    # torch.mm (MKL) is the GEMM rate the targets are stated against; where oneDNN's matrix
    # multiply is faster the machine can do more, and the fractions against it say so.
    onednn_peak = float(np.median(onednn_peaks)) if all(onednn_peaks) else None
    if onednn_peak:
        add("gemm", "onednn_fp32_flops_per_s", onednn_peak, "FLOP/s",
            f"{n_gemm}^3 product on oneDNN (engine.linear), best of 3, median of 3 measurements, {threads} threads")
        log(f"[gemm] oneDNN fp32 matrix multiply: {', '.join(f'{p / 1e9:.1f}' for p in onednn_peaks)} GFLOP/s -> "
            f"{onednn_peak / 1e9:.1f} ({onednn_peak / peak:.2f}x torch.mm); against it the engine's suffix runs at "
            f"{100 * suffix_rate / onednn_peak:.0f} % (mlp {100 * res_mlp['suffix_flops_per_s'] / onednn_peak:.0f} %, "
            f"convnet {100 * res_conv['suffix_flops_per_s'] / onednn_peak:.0f} %)")

    k = args.fuse_k or (4 if q else 16)
    # The paper's smallest MNIST MLP (Figs. 7a, A4a: 128 units per layer), and a small one
    # such as the demo trains, where per-step overheads rather than FLOPs dominate.
    fused = fused_benchmark(k, [32, 32] if q else [128, 128], 512 if q else 10000, 1, 128, log, peak, repeats)
    fused_small = fused_benchmark(k, [16, 16] if q else [32, 32], 512 if q else 10000, 1, 128, log, peak, repeats)
    for name, res in (("fused_training", fused), ("fused_training_small", fused_small)):
        for key, value in res.items():
            add(name, key, value)

    summary = {"mlp_speedup": res_mlp["speedup"], "convnet_speedup": res_conv["speedup"],
               "gemm_fraction": gemm_fraction, "mlp_gemm_fraction": res_mlp["suffix_flops_per_s"] / peak,
               "convnet_gemm_fraction": res_conv["suffix_flops_per_s"] / peak,
               # speedup = flop_ratio (naive FLOPs / engine FLOPs) x the engine's FLOP rate
               # relative to the naive method's
               "mlp_flop_ratio": res_mlp["flop_ratio"], "convnet_flop_ratio": res_conv["flop_ratio"],
               "mlp_rate_vs_naive": res_mlp["rate_ratio"], "convnet_rate_vs_naive": res_conv["rate_ratio"],
               # the engine's ConvNet time with direct convolutions over its time as run
               "convnet_winograd_speedup": res_conv["winograd_speedup"],
               "gemm_fraction_direct_equivalent": gemm_fraction_direct_eq,
               "convnet_gemm_fraction_direct_equivalent": conv_direct_eq / peak,
               "fused_training_speedup": fused["speedup"], "fused_training_chosen": bool(fused["fused_chosen"]),
               "fused_training_small_chosen": bool(fused_small["fused_chosen"]),
               "fused_training_speedup_small": fused_small["speedup"],
               "fused_training_speedup_ceiling": fused["speedup_ceiling"],
               "gemm_flops_per_s": peak, "onednn_gemm_flops_per_s": onednn_peak,
               "gemm_fraction_of_onednn": suffix_rate / onednn_peak if onednn_peak else None,
               # the same ceiling at oneDNN's rate (what the machine's fastest fp32 product allows)
               "fused_training_speedup_ceiling_onednn": (fused["speedup_ceiling"] * onednn_peak / peak
                                                         if onednn_peak else None),
               "convnet_width": width, "threads": threads, "repeats": repeats, "quick": q}
    save_csv(pd.DataFrame(rows), args.csv)
    log(f"wrote {args.csv}")
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
