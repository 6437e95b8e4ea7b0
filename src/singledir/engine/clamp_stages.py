"""The stages the channel plan (:mod:`singledir.engine.clamp_plan`) understands, and the
tensor layouts and buffers its per-mask loop works in.

A stage is *mixing* (``nn.Linear`` on (B, C), ``nn.Conv2d`` with ``groups=1`` and zero
padding: the only stages that combine channels) or *channel-wise* (batch norm in eval
mode, elementwise activations, dropout, pooling, ``nn.Flatten`` of a (C, 1, 1) map).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# Modules that act on each channel separately and are deterministic in eval mode.
_POINTWISE = (nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh,
              nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
              nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
              nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


def stage_kind(mod: nn.Module) -> str | None:
    """'linear', 'conv', 'bn', 'relu', 'pointwise' or 'flatten'; None for a module the
    plan does not understand."""
    t = type(mod)
    if t is nn.Linear:
        return "linear"
    if t is nn.Conv2d and mod.groups == 1 and mod.padding_mode == "zeros":
        return "conv"
    if t in (nn.BatchNorm1d, nn.BatchNorm2d) and mod.running_mean is not None:
        return "bn"
    if t is nn.ReLU:
        return "relu"
    if t in _POINTWISE and not getattr(mod, "return_indices", False):
        return "pointwise"
    if t is nn.Flatten and mod.start_dim == 1 and mod.end_dim == -1:
        return "flatten"
    return None


@dataclass
class Stage:
    """One top-level stage of the Sequential model: its name, module and kind
    (:func:`stage_kind`, 'other' before the first perturbed layer)."""

    name: str
    module: nn.Module
    kind: str
    out_shape: tuple  # of one example


def mix_flops(stage: Stage, rows: int, n_in: int, n_out: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of a mixing stage restricted to n_in -> n_out channels."""
    if stage.kind == "linear":
        return 2.0 * rows * n_in * n_out
    kh, kw = stage.module.kernel_size
    spatial = int(np.prod(stage.out_shape[1:]))
    return 2.0 * rows * n_in * n_out * kh * kw * spatial


def transpose_into(x: torch.Tensor, out: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """x.t() written into the contiguous ``out``, in blocks of ``rows`` rows of x.

    Why blocks: a whole-tensor transposing copy runs at ~2.5 GB/s on a 2-core Xeon
    (32 ms for 5,000 x 2,048 floats); blocks of 64 rows, whose source and destination
    stay in cache, take 11 ms (measured)."""
    for r in range(0, x.shape[0], rows):
        out[:, r:r + rows].copy_(x[r:r + rows].t())
    return out


def unit_major(t: torch.Tensor) -> bool:
    """Whether a (B, C) tensor is the transpose of a contiguous (C, B) one."""
    return t.dim() == 2 and t.shape[0] > 1 and t.stride(0) == 1 and t.stride(1) == t.shape[0]


def select_channels(x: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``x.index_select(1, idx)`` (into ``out`` if given).

    A channels-last (B, C, H, W) map is gathered as the columns of its (B*H*W, C) rows:
    ``index_select`` on the 4-d tensor walks it channel by channel and ran at ~1 GB/s
    (24 ms for 245 of 256 channels of 2,000 4x4 maps on a 2-core Xeon), the 2-d form
    takes 6 ms (measured). Same values either way (a gather copies)."""
    if (x.dim() == 4 and x.shape[2] * x.shape[3] > 1 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)):
        b, c, h, w = x.shape
        if out is None:
            out = torch.empty((b, len(idx), h, w), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
        if out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
            torch.index_select(x.permute(0, 2, 3, 1).reshape(-1, c), 1, idx,
                               out=out.permute(0, 2, 3, 1).view(-1, len(idx)))
            return out
    return torch.index_select(x, 1, idx, out=out) if out is not None else x.index_select(1, idx)


class Workspace:
    """Reusable float32 buffers by name, so the per-mask loop does not allocate (fresh
    multi-megabyte tensors cost page faults on every call)."""

    def __init__(self, device):
        self.device = device
        self.buffers: dict[str, torch.Tensor] = {}
        self.winograd: dict[str, torch.Tensor] = {}  # block buffers of winograd_conv3x3

    def like(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """A buffer of t's shape and layout (unit-major 2-d tensors stay unit-major, so an
        elementwise operation into it reads and writes in the same order)."""
        if unit_major(t):
            return self.get(name, (t.shape[1], t.shape[0])).t()
        return self.get(name, t.shape)

    def get(self, name: str, shape) -> torch.Tensor:
        """A (B, C, ...) buffer; feature maps (B, C, H, W) are channels-last, the layout
        in which oneDNN's convolutions are fastest."""
        n = int(np.prod(shape))
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < n:
            buf = self.buffers[name] = torch.empty(n, device=self.device, dtype=torch.float32)
        if len(shape) == 4:
            b, c, h, w = shape
            return buf[:n].view(b, h, w, c).permute(0, 3, 1, 2)
        return buf[:n].view(tuple(shape))
