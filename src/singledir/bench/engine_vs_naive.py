"""One full cumulative-ablation analysis: the engine's wall time against the naive method
(:func:`singledir.engine.reference.reference_ablation_eval`: forward hooks, one full
forward pass per point), and the speed-up split into less arithmetic times a faster rate."""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from singledir.bench.synthetic import BenchNet, cumulative_sets
from singledir.bench.timing import spread
from singledir.engine.ablation import masks_from_sets
from singledir.engine.batch import PerturbationBatch
from singledir.engine.options import EngineOptions
from singledir.engine.perturb import evaluate_perturbations
from singledir.engine.reference import reference_ablation_eval, split_units


def forward_flops(model: nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward pass over all of ``x`` (matrix products and convolutions, 2 per
    multiply-add: what the naive method computes per point), counted by
    ``torch.utils.flop_counter`` on one example."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1])
    return float(counter.get_total_flops()) * len(x)


def ablation_benchmark(net: BenchNet, n_orderings: int, n_points: int, naive_points: int, chunk_size: int, log,
                       direct_convolutions: bool = False, repeats: int = 1) -> dict:
    """Engine vs naive for one full cumulative-ablation analysis of ``net``; returns a result dict.

    The naive method runs on ``naive_points`` points spread over the curve, all examples;
    its time is extrapolated linearly to every point (its cost per point does not depend
    on the point). ``direct_convolutions``: also time the engine with its small-map
    convolutions direct (``SINGLEDIR_WINOGRAD=0``), so that each machine shows whether the
    Winograd form pays. ``repeats``: rounds of (engine, [engine with direct convolutions,]
    naive sample), run in turn so that a drifting load on a shared machine falls on all
    of them alike; every time reported is the median over the rounds (``*_min`` /
    ``*_max`` give the spread), and the rounds' results must agree
    (``engine_repeat_max_abs_loss_diff``: 0 on a CPU)."""
    name, model, x, y = net.name, net.model, net.x, net.y
    sizes, sets = cumulative_sets(net, n_orderings, n_points)
    keep = masks_from_sets(sets, sizes)
    pert = PerturbationBatch(len(sets), keep, {n: None for n in net.layers})
    options = EngineOptions(chunk_size=chunk_size)
    check = np.unique(np.linspace(0, len(sets) - 1, naive_points).round().astype(int))

    def engine():
        stats: dict = {}
        t = time.perf_counter()
        loss, acc = evaluate_perturbations(model, x, y, pert, options=options, stats=stats)
        return time.perf_counter() - t, loss, acc, stats

    def naive():
        t = time.perf_counter()
        refs = [reference_ablation_eval(model, x, y, split_units(sets[i], sizes)) for i in check]
        return time.perf_counter() - t, refs

    runs, direct_runs, naive_runs = [], [], []
    for _ in range(max(1, repeats)):
        runs.append(engine())
        if direct_convolutions:
            direct_runs.append(_with_direct_convolutions(engine))
        naive_runs.append(naive())
    _, loss, acc, stats = runs[0]
    t_engine = float(np.median([r[0] for r in runs]))
    time_base = float(np.median([r[3]["time_base"] for r in runs]))
    time_suffix = float(np.median([r[3]["time_suffix"] for r in runs]))
    repeat_diff = max([float((r[1] - rs[0][1]).abs().max()) for rs in (runs, direct_runs) for r in rs[1:]],
                      default=0.0)
    log(f"[{name}] engine: {spread([r[0] for r in runs])} for {len(sets)} points x {len(x)} examples "
        f"(path {stats['path']}, {stats['unique_perturbations']} distinct masks; base pass {time_base:.2f} s, "
        f"suffix {time_suffix:.2f} s)")
    direct = _winograd_comparison(name, direct_runs, t_engine, loss, log) if direct_convolutions else {}
    t_naive_part = float(np.median([r[0] for r in naive_runs]))
    t_naive = t_naive_part * len(sets) / len(check)
    diffs = [(abs(ref_loss - float(loss[i])), abs(ref_acc - float(acc[i])))
             for i, (ref_loss, ref_acc) in zip(check, naive_runs[0][1])]
    max_dloss = max(d[0] for d in diffs)
    max_dacc = max(d[1] for d in diffs)
    log(f"[{name}] naive: {spread([r[0] for r in naive_runs])} for {len(check)} of {len(sets)} points "
        f"(all {len(x)} examples) -> {t_naive:.1f} s extrapolated linearly to all points")
    log(f"[{name}] engine vs naive at those points: max |d loss| = {max_dloss:.2e}, max |d accuracy| = {max_dacc:.2e}"
        + (f"; the {len(runs)} engine rounds differ by at most {repeat_diff:.1e}" if len(runs) > 1 else ""))
    speedup = t_naive / t_engine
    suffix_rate = stats["flops_suffix"] / max(time_suffix, 1e-9)
    log(f"[{name}] speedup: {speedup:.1f}x; engine suffix {suffix_rate / 1e9:.1f} GFLOP/s, "
        f"overall {(stats['flops_suffix'] + stats['flops_base']) / t_engine / 1e9:.1f} GFLOP/s")
    arithmetic = _arithmetic_split(name, forward_flops(model, x) * len(sets), stats, t_engine, t_naive, log)
    return {"name": name, "examples": len(x), "points": len(sets), "repeats": len(runs), "engine_s": t_engine,
            "engine_s_min": min(r[0] for r in runs), "engine_s_max": max(r[0] for r in runs),
            "engine_repeat_max_abs_loss_diff": repeat_diff,
            "naive_s_measured": t_naive_part, "naive_points_measured": len(check), "naive_s": t_naive,
            "naive_s_measured_min": min(r[0] for r in naive_runs), "naive_s_measured_max": max(r[0] for r in naive_runs),
            "speedup": speedup, "suffix_flops": stats["flops_suffix"], "suffix_s": time_suffix,
            "base_flops": stats["flops_base"], "base_s": time_base, "suffix_flops_per_s": suffix_rate,
            **arithmetic, "max_abs_loss_diff": max_dloss, "max_abs_accuracy_diff": max_dacc, **direct}


def _with_direct_convolutions(engine):
    """``engine()`` with the small-map convolutions direct (``SINGLEDIR_WINOGRAD=0``),
    the variable restored after."""
    before = os.environ.get("SINGLEDIR_WINOGRAD")
    os.environ["SINGLEDIR_WINOGRAD"] = "0"
    try:
        return engine()
    finally:
        if before is None:
            os.environ.pop("SINGLEDIR_WINOGRAD")
        else:
            os.environ["SINGLEDIR_WINOGRAD"] = before


def _winograd_comparison(name: str, direct_runs: list, t_engine: float, loss: torch.Tensor, log) -> dict:
    """The engine with direct convolutions against the engine as run (Winograd form where
    it pays): time ratio, largest loss difference, and the FLOPs counted as direct."""
    t_direct = float(np.median([r[0] for r in direct_runs]))
    loss_d, stats_d = direct_runs[0][1], direct_runs[0][3]
    # the suffix's work counted as direct convolutions (what the Winograd form replaces)
    direct = {"engine_direct_s": t_direct, "winograd_speedup": t_direct / t_engine,
              "winograd_max_abs_loss_diff": float((loss_d - loss).abs().max()),
              "suffix_flops_direct_equivalent": stats_d["flops_suffix"],
              "base_flops_direct_equivalent": stats_d["flops_base"]}
    log(f"[{name}] engine with direct convolutions only (SINGLEDIR_WINOGRAD=0): {spread([r[0] for r in direct_runs])}"
        f" -> the Winograd form of the small-map convolutions is {t_direct / t_engine:.2f}x as fast here "
        f"(largest loss difference {direct['winograd_max_abs_loss_diff']:.1e})")
    if t_direct < t_engine:
        log(f"[{name}] the Winograd form does not pay on this machine: run analyses with SINGLEDIR_WINOGRAD=0")
    return direct


def _arithmetic_split(name: str, naive_flops: float, stats: dict, t_engine: float, t_naive: float, log) -> dict:
    """The speed-up splits exactly into how much less arithmetic the engine does and how
    fast it does it: speedup = flop_ratio * rate_ratio. A flop_ratio below a target means
    the target needs the engine's products to run faster than the naive method's."""
    engine_flops = stats["flops_suffix"] + stats["flops_base"]
    total_rate = engine_flops / t_engine
    flop_ratio = naive_flops / engine_flops
    naive_rate = naive_flops / t_naive
    speedup = t_naive / t_engine
    log(f"[{name}] arithmetic: naive {naive_flops / 1e12:.2f} TFLOP, engine {engine_flops / 1e12:.3f} TFLOP "
        f"({flop_ratio:.1f}x less); naive runs at {naive_rate / 1e9:.1f} GFLOP/s, the engine at "
        f"{total_rate / naive_rate:.2f}x that rate -> {flop_ratio:.1f} x {total_rate / naive_rate:.2f} = {speedup:.1f}x")
    return {"engine_flops_per_s": total_rate, "naive_flops": naive_flops, "naive_flops_per_s": naive_rate,
            "flop_ratio": flop_ratio, "rate_ratio": total_rate / naive_rate}
