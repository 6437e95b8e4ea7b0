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
import os
import platform

import numpy as np
import pandas as pd
import torch

from singledir.bench.engine_vs_naive import ablation_benchmark
from singledir.bench.fused_training import fused_benchmark
from singledir.bench.gpu_check import gpu_check
from singledir.bench.synthetic import BenchNet, labelled_data, variance_preserving
from singledir.bench.timing import gemm_flops, onednn_gemm_flops
from singledir.io import save_csv
from singledir.models.nets import MLP, ConvNet


def _parser() -> argparse.ArgumentParser:
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
    return ap


def _log(msg):
    print(msg, flush=True)


def main(argv=None) -> dict:
    """Run the benchmark (or with ``--device cuda`` the GPU check), write the CSV, print
    the summary as the last line (one JSON object) and return it."""
    ap = _parser()
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    q = args.quick
    repeats = args.repeats if args.repeats is not None else (1 if q else 3)
    if repeats < 1:
        ap.error(f"--repeats must be at least 1; got {repeats}")
    threads = torch.get_num_threads()
    _log(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
         f"{threads} threads")
    if q:
        _log("QUICK MODE: tiny sizes, the ratios are not the benchmark's")
    if args.device == "cuda":
        res = gpu_check(args.budget_s, args.config, _log, quick=q)
        rows = res["rows"]
        table = pd.DataFrame([{"benchmark": _gpu_benchmark_name(r), "metric": key, "value": float(v), "unit": "",
                               "note": ""}
                              for r in rows for key, v in r.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)])
        summary = {**res["summary"], "threads": threads, "quick": q}
    else:
        table, summary = _cpu_benchmark(args, repeats, threads)
    save_csv(table, args.csv)
    _log(f"wrote {args.csv}")
    print(json.dumps(summary), flush=True)
    return summary


def _gpu_benchmark_name(row: dict) -> str:
    """The CSV's benchmark name of one GPU-check row: its part, then its model and
    precision, or its family and experiment."""
    return f"gpu_{row['part']}" + (f"_{row['model']}_{row['precision']}" if "model" in row
                                   else (f"_{row['family']}_{row['experiment']}" if "experiment" in row else ""))


def _cpu_benchmark(args, repeats: int, threads: int) -> tuple[pd.DataFrame, dict]:
    """GEMM rate, the engine against the naive method on the MLP and the ConvNet, and
    fused training: the tidy table and the summary."""
    q = args.quick
    rows = []

    def add(bench, metric, value, unit="", note=""):
        rows.append({"benchmark": bench, "metric": metric, "value": float(value), "unit": unit, "note": note})

    n_gemm = 256 if q else 2048
    peaks, onednn_peaks = [gemm_flops(n_gemm)], [onednn_gemm_flops(n_gemm)]
    _log(f"[gemm] fp32 matrix multiply: {peaks[0] / 1e9:.1f} GFLOP/s (torch.mm)"
         + (f", {onednn_peaks[0] / 1e9:.1f} GFLOP/s (oneDNN)" if onednn_peaks[0] else ""))

    # MLP 784-2048-2048-10 on 10,000 examples, 10 orderings x 21 points, all units of both layers.
    hidden = [64, 64] if q else [2048, 2048]
    mlp = variance_preserving(MLP(784, hidden, 10), 0)
    x, y = labelled_data(mlp, 300 if q else 10000, (1, 28, 28), 1)
    res_mlp = ablation_benchmark(BenchNet("mlp", mlp, x, y, ["relu1", "relu2"]), 3 if q else 10, 6 if q else 21,
                                 2 if q else 3, 5000, _log, repeats=repeats)
    peaks.append(gemm_flops(n_gemm))
    onednn_peaks.append(onednn_gemm_flops(n_gemm))
    width = args.convnet_width or (0.0625 if q else 0.5)
    conv = variance_preserving(ConvNet(3, 10, width=width, batch_norm=True), 1)
    xc, yc = labelled_data(conv, 100 if q else 2000, (3, 32, 32), 2)
    res_conv = ablation_benchmark(BenchNet(f"convnet_w{width:g}", conv, xc, yc, ["relu9", "relu10", "relu11"]),
                                  3 if q else 10, 6 if q else 21, 2, 2000, _log, direct_convolutions=True,
                                  repeats=repeats)
    peaks.append(gemm_flops(n_gemm))
    onednn_peaks.append(onednn_gemm_flops(n_gemm))
    # The machine's rate, measured before, between and after the engine runs (on a shared
    # machine the load drifts): the median.
    peak = float(np.median(peaks))
    _log(f"[gemm] fp32 matrix multiply: {', '.join(f'{p / 1e9:.1f}' for p in peaks)} GFLOP/s -> {peak / 1e9:.1f}")
    add("gemm", "fp32_flops_per_s", peak, "FLOP/s",
        f"{n_gemm}^3 matmul, best of 3, median of 3 measurements, {threads} threads")
    for res in (res_mlp, res_conv):
        for key, value in res.items():
            if key != "name":
                add(res["name"], key, value)
    fractions = _gemm_fractions(res_mlp, res_conv, peak, onednn_peaks, n_gemm, threads, add)

    k = args.fuse_k or (4 if q else 16)
    # The paper's smallest MNIST MLP (Figs. 7a, A4a: 128 units per layer), and a small one
    # such as the demo trains, where per-step overheads rather than FLOPs dominate.
    fused = fused_benchmark(k, [32, 32] if q else [128, 128], 512 if q else 10000, 1, 128, _log, peak, repeats)
    fused_small = fused_benchmark(k, [16, 16] if q else [32, 32], 512 if q else 10000, 1, 128, _log, peak, repeats)
    for name, res in (("fused_training", fused), ("fused_training_small", fused_small)):
        for key, value in res.items():
            add(name, key, value)

    onednn_peak = fractions["onednn_peak"]
    summary = {"mlp_speedup": res_mlp["speedup"], "convnet_speedup": res_conv["speedup"],
               "gemm_fraction": fractions["gemm_fraction"], "mlp_gemm_fraction": res_mlp["suffix_flops_per_s"] / peak,
               "convnet_gemm_fraction": res_conv["suffix_flops_per_s"] / peak,
               # speedup = flop_ratio (naive FLOPs / engine FLOPs) x the engine's FLOP rate
               # relative to the naive method's
               "mlp_flop_ratio": res_mlp["flop_ratio"], "convnet_flop_ratio": res_conv["flop_ratio"],
               "mlp_rate_vs_naive": res_mlp["rate_ratio"], "convnet_rate_vs_naive": res_conv["rate_ratio"],
               # the engine's ConvNet time with direct convolutions over its time as run
               "convnet_winograd_speedup": res_conv["winograd_speedup"],
               "gemm_fraction_direct_equivalent": fractions["gemm_fraction_direct_eq"],
               "convnet_gemm_fraction_direct_equivalent": fractions["conv_direct_eq"] / peak,
               "fused_training_speedup": fused["speedup"], "fused_training_chosen": bool(fused["fused_chosen"]),
               "fused_training_small_chosen": bool(fused_small["fused_chosen"]),
               "fused_training_speedup_small": fused_small["speedup"],
               "fused_training_speedup_ceiling": fused["speedup_ceiling"],
               "gemm_flops_per_s": peak, "onednn_gemm_flops_per_s": onednn_peak,
               "gemm_fraction_of_onednn": fractions["suffix_rate"] / onednn_peak if onednn_peak else None,
               # the same ceiling at oneDNN's rate (what the machine's fastest fp32 product allows)
               "fused_training_speedup_ceiling_onednn": (fused["speedup_ceiling"] * onednn_peak / peak
                                                         if onednn_peak else None),
               "convnet_width": width, "threads": threads, "repeats": repeats, "quick": q}
    return pd.DataFrame(rows), summary


def _gemm_fractions(res_mlp: dict, res_conv: dict, peak: float, onednn_peaks: list, n_gemm: int, threads: int,
                    add) -> dict:
    """The engine's suffix FLOP rate as a fraction of the measured GEMM rate (torch.mm;
    also with the ConvNet's Winograd work counted as direct convolutions, and against
    oneDNN's product where it has one); logs them and adds them to the table."""
    suffix_rate = (res_mlp["suffix_flops"] + res_conv["suffix_flops"]) / (res_mlp["suffix_s"] + res_conv["suffix_s"])
    gemm_fraction = suffix_rate / peak
    _log(f"[gemm] engine suffix work: {suffix_rate / 1e9:.1f} GFLOP/s = {100 * gemm_fraction:.0f} % of the measured "
         f"GEMM throughput (mlp {100 * res_mlp['suffix_flops_per_s'] / peak:.0f} %, "
         f"convnet {100 * res_conv['suffix_flops_per_s'] / peak:.0f} %)")
    add("gemm", "engine_suffix_fraction", gemm_fraction, "", "engine suffix FLOP/s / measured fp32 GEMM FLOP/s")
    # The Winograd form executes fewer FLOPs for the same outputs; the same time against the
    # FLOPs direct convolutions would have executed says how fast the suffix's work got done.
    conv_direct_eq = res_conv["suffix_flops_direct_equivalent"] / res_conv["suffix_s"]
    gemm_fraction_direct_eq = ((res_mlp["suffix_flops"] + res_conv["suffix_flops_direct_equivalent"])
                               / (res_mlp["suffix_s"] + res_conv["suffix_s"]) / peak)
    _log(f"[gemm] counting the ConvNet's suffix as direct convolutions "
         f"({res_conv['suffix_flops_direct_equivalent'] / 1e12:.2f} against {res_conv['suffix_flops'] / 1e12:.2f} "
         f"TFLOP executed): {100 * gemm_fraction_direct_eq:.0f} % (convnet {100 * conv_direct_eq / peak:.0f} %)")
    add("gemm", "engine_suffix_fraction_direct_equivalent", gemm_fraction_direct_eq, "",
        "the same with the ConvNet's Winograd convolutions counted as the direct ones they replace")
    # torch.mm (MKL) is the GEMM rate the targets are stated against; where oneDNN's matrix
    # multiply is faster the machine can do more, and the fractions against it say so.
    onednn_peak = float(np.median(onednn_peaks)) if all(onednn_peaks) else None
    if onednn_peak:
        add("gemm", "onednn_fp32_flops_per_s", onednn_peak, "FLOP/s",
            f"{n_gemm}^3 product on oneDNN (engine.linear), best of 3, median of 3 measurements, {threads} threads")
        _log(f"[gemm] oneDNN fp32 matrix multiply: {', '.join(f'{p / 1e9:.1f}' for p in onednn_peaks)} GFLOP/s -> "
             f"{onednn_peak / 1e9:.1f} ({onednn_peak / peak:.2f}x torch.mm); against it the engine's suffix runs at "
             f"{100 * suffix_rate / onednn_peak:.0f} % (mlp {100 * res_mlp['suffix_flops_per_s'] / onednn_peak:.0f} %, "
             f"convnet {100 * res_conv['suffix_flops_per_s'] / onednn_peak:.0f} %)")
    return {"suffix_rate": suffix_rate, "gemm_fraction": gemm_fraction, "conv_direct_eq": conv_direct_eq,
            "gemm_fraction_direct_eq": gemm_fraction_direct_eq, "onednn_peak": onednn_peak}
