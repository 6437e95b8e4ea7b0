"""Benchmark: the engine against the naive method, and fused against sequential training.

``python -m singledir.bench [CSV] [--quick] [--threads N] [--convnet-width W] ...``

Prints, for the machine it runs on:

1. the measured fp32 matrix-multiply throughput (the machine's GEMM FLOP/s);
2. a full cumulative-ablation analysis (10 orderings x 21 points, all units of both
   hidden layers) of an MLP 784-2048-2048-10 on 10,000 examples, and of the paper's
   ConvNet (last three layers ablated, as in Fig. 1b) on 2,000 32x32 examples: the
   engine's wall time against the naive method (:func:`singledir.reference.reference_ablation_eval`:
   forward hooks, one full forward pass per point). The naive method is timed on a few
   points over all examples and extrapolated linearly to every point (its cost per point
   does not depend on the point); those points also check that both give the same numbers;
3. the engine's achieved FLOP/s on the suffix work (what it computes per mask, counted
   by the engine) as a fraction of the measured GEMM FLOP/s;
4. K sequential trainings of a small MLP against one fused training of K
   (:mod:`singledir.fused`): models x examples per second;
5. with CUDA: the engine on the GPU in fp32, TF32 and bf16 (images/s and the measured
   difference from fp32).

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

from .ablation import curve_points, layer_sizes, masks_from_sets, random_orderings
from .io import save_csv
from .models import MLP, ConvNet
from .perturb import PerturbationBatch, evaluate_perturbations
from .reference import reference_ablation_eval, split_units


def gemm_flops(n: int = 2048, repeats: int = 3, device="cpu") -> float:
    """Best-of-``repeats`` fp32 FLOP/s of an n x n x n matrix product."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = math.inf
    for _ in range(repeats + 1):  # the first call warms up
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best


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


def ablation_benchmark(name: str, model: nn.Module, x, y, layers, n_orderings: int, n_points: int,
                       naive_points: int, chunk_size: int, log) -> dict:
    """Engine vs naive for one full cumulative-ablation analysis; returns a result dict."""
    sizes = layer_sizes(model, layers, x)
    total = sum(sizes.values())
    orders = random_orderings(total, n_orderings, 0)
    points = curve_points(total, n_points)
    sets = [orders[o, :k] for o in range(n_orderings) for k in points]
    keep = masks_from_sets(sets, sizes)
    pert = PerturbationBatch(len(sets), keep, {n: None for n in layers})
    stats: dict = {}
    t = time.perf_counter()
    loss, acc = evaluate_perturbations(model, x, y, pert, chunk_size=chunk_size, stats=stats)
    t_engine = time.perf_counter() - t
    log(f"[{name}] engine: {t_engine:.2f} s for {len(sets)} points x {len(x)} examples "
        f"(path {stats['path']}, {stats['unique_perturbations']} distinct masks; base pass {stats['time_base']:.2f} s, "
        f"suffix {stats['time_suffix']:.2f} s)")
    # The naive method on a few points spread over the curve, all examples; linear in points.
    check = np.unique(np.linspace(0, len(sets) - 1, naive_points).round().astype(int))
    t = time.perf_counter()
    diffs = []
    for i in check:
        ref_loss, ref_acc = reference_ablation_eval(model, x, y, split_units(sets[i], sizes))
        diffs.append((abs(ref_loss - float(loss[i])), abs(ref_acc - float(acc[i]))))
    t_naive_part = time.perf_counter() - t
    t_naive = t_naive_part * len(sets) / len(check)
    max_dloss = max(d[0] for d in diffs)
    max_dacc = max(d[1] for d in diffs)
    log(f"[{name}] naive: {t_naive_part:.2f} s for {len(check)} of {len(sets)} points (all {len(x)} examples) "
        f"-> {t_naive:.1f} s extrapolated linearly to all points")
    log(f"[{name}] engine vs naive at those points: max |d loss| = {max_dloss:.2e}, max |d accuracy| = {max_dacc:.2e}")
    speedup = t_naive / t_engine
    suffix_rate = stats["flops_suffix"] / max(stats["time_suffix"], 1e-9)
    total_rate = (stats["flops_suffix"] + stats["flops_base"]) / t_engine
    log(f"[{name}] speedup: {speedup:.1f}x; engine suffix {suffix_rate / 1e9:.1f} GFLOP/s, "
        f"overall {total_rate / 1e9:.1f} GFLOP/s")
    return {"name": name, "examples": len(x), "points": len(sets), "engine_s": t_engine,
            "naive_s_measured": t_naive_part, "naive_points_measured": len(check), "naive_s": t_naive,
            "speedup": speedup, "suffix_flops": stats["flops_suffix"], "suffix_s": stats["time_suffix"],
            "base_flops": stats["flops_base"], "base_s": stats["time_base"], "suffix_flops_per_s": suffix_rate,
            "engine_flops_per_s": total_rate, "max_abs_loss_diff": max_dloss, "max_abs_accuracy_diff": max_dacc}


def mlp_training_flops(sizes, n_train: int, n_test: int, epochs: int) -> float:
    """FLOPs of training one MLP as :func:`singledir.training.train` does: per epoch a
    forward and a backward pass over the training set (weight gradients everywhere, input
    gradients below the first layer), and a forward pass over the training and test sets
    for each history row (epochs + 1 rows)."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    step = 2 * (2 * sum(macs) + sum(macs[1:]))  # forward + weight grads + input grads
    return epochs * n_train * step + (epochs + 1) * (n_train + n_test) * 2 * sum(macs)


def fused_benchmark(k: int, hidden, n: int, epochs: int, batch_size: int, log, peak: float | None = None) -> dict:
    """K sequential trainings vs one job of K as ``fuse: K`` runs it
    (:func:`singledir.fused.train_group`: a short measured trial, then fused or one at a
    time, whichever the trial found faster; the trial's time is included), and vs forced
    fusion (same seeds, same work).

    With ``peak`` (the machine's GEMM FLOP/s) it also reports the ceiling: fusion saves
    per-step overheads, not arithmetic, so no fused run can beat ``peak`` divided by the
    FLOP/s that sequential training already achieves."""
    import tempfile

    from .data import Tensors
    from .fused import train_fused, train_group
    from .training import TrainConfig, train

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
        t = time.perf_counter()
        for i in range(k):
            train(build(cfgs[i].seed), datas[i], cfgs[i], os.path.join(tmp, f"seq{i}"), log=quiet)
        t_seq = time.perf_counter() - t
        models = [build(c.seed) for c in cfgs]
        t = time.perf_counter()
        train_fused(models, datas, cfgs, os.path.join(tmp, "fused"), log=quiet)
        t_fused = time.perf_counter() - t
        models = [build(c.seed) for c in cfgs]
        t = time.perf_counter()
        _, decision = train_group(models, datas, cfgs, os.path.join(tmp, "group"), log=quiet)
        t_group = time.perf_counter() - t
    work = k * n * epochs
    flops = k * mlp_training_flops([784, *hidden, 10], n, len(x_test), epochs)
    name = f"{k} MLPs 784-{'-'.join(map(str, hidden))}-10"
    log(f"[fused] {name}, {epochs} epoch(s) of {n} examples, batch {batch_size}: "
        f"sequential {t_seq:.2f} s ({work / t_seq:,.0f} model-examples/s, {flops / t_seq / 1e9:.1f} GFLOP/s), "
        f"forced fusion {t_fused:.2f} s ({work / t_fused:,.0f} model-examples/s, {flops / t_fused / 1e9:.1f} GFLOP/s) "
        f"-> {t_seq / t_fused:.2f}x")
    log(f"[fused] {name} as `fuse: {k}` runs it: {t_group:.2f} s -> {t_seq / t_group:.2f}x; the trial chose "
        f"{'fusion' if decision['fuse'] else 'one at a time'}: {decision['reason']}")
    res = {"k": k, "sequential_s": t_seq, "fused_s": t_group, "speedup": t_seq / t_group,
           "forced_fused_s": t_fused, "forced_fused_speedup": t_seq / t_fused, "fused_chosen": float(decision["fuse"]),
           "trial_speedup": decision["speedup"],
           "sequential_throughput": work / t_seq, "fused_throughput": work / t_group,
           "sequential_flops_per_s": flops / t_seq, "fused_flops_per_s": flops / t_group}
    if peak:
        res["speedup_ceiling"] = peak * t_seq / flops
        log(f"[fused] ceiling on this machine: sequential training already runs at {100 * flops / t_seq / peak:.0f} % "
            f"of the measured GEMM FLOP/s, so no fusion can exceed {res['speedup_ceiling']:.2f}x; forced fusion "
            f"reaches {100 * flops / t_fused / peak:.0f} %")
    return res


def gpu_benchmark(x, y, log) -> list[dict]:
    """The MLP analysis on the GPU in each precision: images/s and difference from fp32."""
    dev = torch.device("cuda")
    model = _variance_preserving(MLP(784, [2048, 2048], 10), 0).to(dev)
    x, y = x.to(dev), y.to(dev)
    layers = ["relu1", "relu2"]
    sizes = layer_sizes(model, layers, x)
    total = sum(sizes.values())
    orders = random_orderings(total, 10, 0)
    sets = [orders[o, :k] for o in range(10) for k in curve_points(total, 21)]
    keep = masks_from_sets(sets, sizes)
    pert = PerturbationBatch(len(sets), {k: v.to(dev) for k, v in keep.items()}, {n: None for n in layers})
    rows, ref = [], None
    for precision in ("fp32", "tf32", "bf16"):
        stats: dict = {}
        evaluate_perturbations(model, x[:512], y[:512], pert, chunk_size=8192, precision=precision)  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        loss, acc = evaluate_perturbations(model, x, y, pert, chunk_size=8192, precision=precision, stats=stats)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        ref = (loss, acc) if ref is None else ref
        row = {"precision": precision, "seconds": dt, "images_per_s": len(x) * len(sets) / dt,
               "max_abs_accuracy_diff": float((acc - ref[1]).abs().max()),
               "max_abs_loss_diff": float((loss - ref[0]).abs().max())}
        log(f"[gpu] {torch.cuda.get_device_name()} {precision}: {dt:.3f} s, {row['images_per_s']:,.0f} "
            f"image-points/s, |d accuracy| <= {row['max_abs_accuracy_diff']:.1e} vs fp32")
        rows.append(row)
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m singledir.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="?", default="results/bench.csv", help="where to write the CSV")
    ap.add_argument("--quick", action="store_true", help="a tiny version that runs in seconds")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--convnet-width", type=float, default=None, help="ConvNet width multiplier (default 0.5)")
    ap.add_argument("--fuse-k", type=int, default=None, help="models trained at once (default 16)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def log(msg):
        print(msg, flush=True)

    q = args.quick
    threads = torch.get_num_threads()
    log(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{threads} threads")
    if q:
        log("QUICK MODE: tiny sizes, the ratios are not the benchmark's")
    rows = []

    def add(bench, metric, value, unit="", note=""):
        rows.append({"benchmark": bench, "metric": metric, "value": float(value), "unit": unit, "note": note})

    n_gemm = 256 if q else 2048
    peaks = [gemm_flops(n_gemm)]
    log(f"[gemm] fp32 matrix multiply: {peaks[0] / 1e9:.1f} GFLOP/s")

    # MLP 784-2048-2048-10 on 10,000 examples, 10 orderings x 21 points, all units of both layers.
    hidden = [64, 64] if q else [2048, 2048]
    mlp = _variance_preserving(MLP(784, hidden, 10), 0)
    x, y = _data(mlp, 300 if q else 10000, (1, 28, 28), 1)
    res_mlp = ablation_benchmark("mlp", mlp, x, y, ["relu1", "relu2"], 3 if q else 10, 6 if q else 21,
                                 2 if q else 3, 5000, log)
    peaks.append(gemm_flops(n_gemm))
    width = args.convnet_width or (0.0625 if q else 0.5)
    conv = _variance_preserving(ConvNet(3, 10, width=width, batch_norm=True), 1)
    xc, yc = _data(conv, 100 if q else 2000, (3, 32, 32), 2)
    res_conv = ablation_benchmark(f"convnet_w{width:g}", conv, xc, yc, ["relu9", "relu10", "relu11"],
                                  3 if q else 10, 6 if q else 21, 2, 2000, log)
    peaks.append(gemm_flops(n_gemm))
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

    k = args.fuse_k or (4 if q else 16)
    # The paper's smallest MNIST MLP (Figs. 7a, A4a: 128 units per layer), and a small one
    # such as the demo trains, where per-step overheads rather than FLOPs dominate.
    fused = fused_benchmark(k, [32, 32] if q else [128, 128], 512 if q else 10000, 1, 128, log, peak)
    fused_small = fused_benchmark(k, [16, 16] if q else [32, 32], 512 if q else 10000, 1, 128, log, peak)
    for name, res in (("fused_training", fused), ("fused_training_small", fused_small)):
        for key, value in res.items():
            add(name, key, value)

    summary = {"mlp_speedup": res_mlp["speedup"], "convnet_speedup": res_conv["speedup"],
               "gemm_fraction": gemm_fraction, "fused_training_speedup": fused["speedup"],
               "fused_training_speedup_small": fused_small["speedup"],
               "fused_training_speedup_ceiling": fused["speedup_ceiling"],
               "gemm_flops_per_s": peak, "convnet_width": width, "threads": threads, "quick": q}
    if torch.cuda.is_available():
        for row in gpu_benchmark(x, y, log):
            for key in ("seconds", "images_per_s", "max_abs_accuracy_diff", "max_abs_loss_diff"):
                add(f"gpu_mlp_{row['precision']}", key, row[key])
            summary[f"gpu_{row['precision']}_images_per_s"] = row["images_per_s"]
    save_csv(pd.DataFrame(rows), args.csv)
    log(f"wrote {args.csv}")
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
