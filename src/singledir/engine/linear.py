"""A fully connected layer's product, on the fastest fp32 matrix multiply the CPU build has.

PyTorch computes ``F.linear`` on a CPU with MKL's GEMM. On some CPUs MKL is far from the
machine's peak: on the AMD EPYC (AVX-512) development machine, MKL's fp32 GEMM runs at
204–224 GFLOP/s while oneDNN's matrix multiply (the library PyTorch already uses for
its CPU convolutions) runs the same products at 420–490 GFLOP/s, and a 10-way read-out
(N = 10) 3.5–4x faster (measured in the README's "Speed" section). :func:`linear` routes
the engine's out-of-place products through oneDNN (``torch.ops.mkldnn._linear_pointwise``,
the kernel torch.compile's CPU back end calls) where it applies: CPU, float32, 2-d input,
oneDNN built in, no autograd, no autocast. Elsewhere (CUDA, bfloat16, a build without
oneDNN, or if the call ever fails) it is ``F.linear``. Results differ from ``F.linear`` by float rounding only (the
same sums, added in another order); ``tests/test_linear.py`` checks it, and the engine's
tests check every curve against the plain definition to 1e-5. For a given machine,
thread count and shape the choice and the result are fixed: nothing is timed.

In-place accumulation (the engine's running sums, ``addmm_``) stays on MKL: oneDNN's
operator returns a new tensor, and adding it into the running sum costs an extra pass
over memory that loses more than the faster product gains (measured: 17–34 ms against
10–21 ms per update at 10,000 examples).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_state = {"onednn": None}  # None: not yet known; then True/False for this process


def onednn_linear_available() -> bool:
    """Whether :func:`linear` can use oneDNN in this process (PyTorch built with oneDNN,
    ``torch.backends.mkldnn`` enabled, and its linear operator registered)."""
    if _state["onednn"] is None:
        ok = bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)
        if ok:
            try:
                ok = hasattr(torch.ops.mkldnn, "_linear_pointwise")
            except (AttributeError, RuntimeError):
                ok = False
        _state["onednn"] = ok
    return bool(_state["onednn"]) and bool(torch.backends.mkldnn.enabled)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` (``x``: (B, in), ``weight``: (out, in), ``bias``: (out,) or
    None): oneDNN's product on a CPU in float32, else ``F.linear``. Returns a new
    contiguous (B, out) tensor."""
    if (x.device.type == "cpu" and x.dim() == 2 and x.dtype == weight.dtype == torch.float32
            and (bias is None or bias.dtype == torch.float32) and x.shape[0] > 0 and weight.shape[0] > 0
            and x.shape[1] > 0 and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and onednn_linear_available()):
        try:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight.contiguous(),
                                                      None if bias is None else bias.reshape(-1).contiguous(),
                                                      "none", [], "")
        except RuntimeError:  # an unsupported build or shape: fall back for the rest of the process
            _state["onednn"] = False
    return F.linear(x, weight, None if bias is None else bias.reshape(-1))
