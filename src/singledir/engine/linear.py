"""A fully connected layer's product, on the fastest fp32 matrix multiply the CPU build has.

PyTorch computes ``F.linear`` on a CPU with MKL's GEMM. On some CPUs MKL is far from the
machine's peak: on the AMD EPYC (AVX-512) development machine, MKL's fp32 GEMM runs at
204–229 GFLOP/s while oneDNN's matrix multiply (the library PyTorch already uses for
its CPU convolutions) runs the same products at 420–502 GFLOP/s, and a 10-way read-out
(N = 10) 3.5–4x faster (measured in the README's "Speed" section). :func:`linear` routes
the engine's out-of-place products through oneDNN (``torch.ops.mkldnn._linear_pointwise``,
the kernel torch.compile's CPU back end calls) where it applies: CPU, float32, 2-d input,
oneDNN built in, an x86-64 CPU, no autograd, no autocast. Elsewhere (CUDA, bfloat16, ARM
CPUs, a build without oneDNN, or if the call ever fails) it is ``F.linear``. The
environment variable ``SINGLEDIR_ONEDNN_LINEAR=0`` turns it off (``=1`` turns it on on any
CPU), for a machine where MKL or another BLAS is the faster one: run
``python -m singledir.bench``, which prints both rates. Results differ from ``F.linear``
by float rounding only (the same sums, added in another order); ``tests/engine/test_linear.py``
checks it, and the engine's tests check every curve against the plain definition to
1e-5. For a given machine, thread count and shape the choice and the result are fixed:
nothing is timed.

In-place accumulation (the engine's running sums, ``addmm_``) stays on MKL: oneDNN's
operator returns a new tensor, and adding it into the running sum costs an extra pass
over memory that loses more than the faster product gains (measured: 17–34 ms against
10–21 ms per update at 10,000 examples).
"""

from __future__ import annotations

import os
import platform

import torch
import torch.nn.functional as F

_state = {"onednn": None}  # None: not yet known; then True/False for this process

# Where oneDNN's fp32 kernels are first-class: x86-64 (AVX2/AVX-512 JIT kernels). On ARM
# (Apple silicon's Accelerate, Graviton's OpenBLAS/ACL) PyTorch's own GEMM may be the faster
# one, and nobody here has measured it, so the engine keeps F.linear there.
_ONEDNN_MACHINES = ("x86_64", "amd64", "x64")
ENV_SWITCH = "SINGLEDIR_ONEDNN_LINEAR"  # "0": never use oneDNN here; "1": use it on any machine


def onednn_linear_available() -> bool:
    """Whether :func:`linear` uses oneDNN in this process: PyTorch built with oneDNN and
    its linear operator registered, ``torch.backends.mkldnn`` enabled, an x86-64 machine
    (or ``SINGLEDIR_ONEDNN_LINEAR=1``), and not ``SINGLEDIR_ONEDNN_LINEAR=0``."""
    switch = os.environ.get(ENV_SWITCH, "").strip()
    if switch == "0" or not torch.backends.mkldnn.enabled:
        return False
    if _state["onednn"] is None:  # what the build offers: decided once
        ok = bool(torch.backends.mkldnn.is_available())
        if ok:
            try:
                ok = hasattr(torch.ops.mkldnn, "_linear_pointwise")
            except (AttributeError, RuntimeError):
                ok = False
        _state["onednn"] = ok
    return bool(_state["onednn"]) and (switch == "1" or platform.machine().lower() in _ONEDNN_MACHINES)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` (``x``: (B, in), ``weight``: (out, in), ``bias``: (out,) or
    None): oneDNN's product on a CPU in float32, else ``F.linear``. Returns a new
    contiguous (B, out) tensor."""
    if (x.device.type == "cpu" and x.dim() == 2 and x.dtype == weight.dtype == torch.float32
            and (bias is None or bias.dtype == torch.float32) and x.numel() and weight.numel()
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and onednn_linear_available()):
        try:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight.contiguous(),
                                                      None if bias is None else bias.reshape(-1).contiguous(),
                                                      "none", [], "")
        except RuntimeError:  # an unsupported build or shape: fall back for the rest of the process
            _state["onednn"] = False
    return F.linear(x, weight, None if bias is None else bias.reshape(-1))
