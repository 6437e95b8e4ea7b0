"""Wall times for the benchmark: best-of and median rounds, and the machine's fp32
matrix-multiply throughput that the engine's FLOP rate is compared with."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from singledir.engine.linear import linear, onednn_linear_available


def sync(device) -> None:
    """Wait for the device's queued work (CUDA); nothing on a CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_seconds(fn, repeats: int = 3, device="cpu") -> float:
    """The best wall time of ``repeats`` calls of ``fn``, after one warm-up call."""
    best = math.inf
    for i in range(repeats + 1):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        if i:
            best = min(best, time.perf_counter() - t)
    return best


def spread(times: list[float]) -> str:
    """'2.72 s' for one run; '2.72 s (median of 2.68, 2.72, 2.85)' for several."""
    med = float(np.median(times))
    return f"{med:.2f} s" + (f" (median of {', '.join(f'{t:.2f}' for t in times)})" if len(times) > 1 else "")


def gemm_flops(n: int = 2048, repeats: int = 3, device="cpu") -> float:
    """Best-of-``repeats`` fp32 FLOP/s of an n x n x n matrix product (``torch.mm``)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2.0 * n ** 3 / best_seconds(lambda: a @ b, repeats, device)


def onednn_gemm_flops(n: int = 2048, repeats: int = 3) -> float | None:
    """Best-of-``repeats`` fp32 FLOP/s of the same n x n x n product on oneDNN's matrix
    multiply (:func:`singledir.engine.linear.linear`, CPU), or None where PyTorch has no
    oneDNN. On some CPUs (the AMD development machine: 464-502 against MKL's 220-229
    GFLOP/s) it is far faster than ``torch.mm``'s MKL, so the benchmark reports the
    engine's rate against both."""
    if not onednn_linear_available():
        return None
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch.no_grad():
        return 2.0 * n ** 3 / best_seconds(lambda: linear(a, b), repeats)
