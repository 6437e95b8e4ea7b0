"""3x3 convolutions on small feature maps by Winograd's minimal filtering F(2x2, 3x3).

The engine's channel-sparse path (:mod:`singledir.engine.clamp_plan`) spends most of a
ConvNet analysis in the last layers' convolutions, where the maps are tiny (4x4 for
32x32 images) and the channels many. There a direct convolution runs well below the
machine's matrix-multiply rate (measured on a 2-core Xeon: oneDNN at 150-190 GFLOP/s for
245 -> 245 channels on 2,000 4x4 maps against ``torch.mm``'s 230-290), while Winograd's
algorithm computes each 2x2 output tile from a 4x4 input tile with 16 instead of 36
multiplications per channel pair: the convolution becomes 16 ordinary matrix products
(one per transformed tile position) between an input transform and an output transform
that only add and subtract (Lavin & Gray, "Fast algorithms for convolutional neural
networks", CVPR 2016)::

    Y = A^T [ (G g G^T) * (B^T d B) ] A

F(2x2, 3x3) is the numerically benign member of the family: its transforms have entries
0, +-1 and +-1/2, and its float32 results differ from the exact convolution by less
than a direct convolution's do (measured: max |error| 1-2.5e-6 against 3-8e-6 for
oneDNN's direct kernel on unit-scale activations; tested against float64). The larger
F(4x4, 3x3) would save more multiplications but, with transform entries up to 8 and
1/24, its errors were 10x a direct convolution's (measured), so it is not used.

Here the transforms are applied as small dense matrices over the whole (zero-padded)
map, so the method is meant for maps of at most 4x4 (:func:`winograd_applies`), and the
examples are processed in blocks whose transformed tiles stay in the CPU's cache.
:func:`winograd_pays` says for which channel counts it was measured to be faster.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn

# F(2x2, 3x3) (Lavin & Gray 2016): input transform B^T, filter transform G, output transform A^T.
_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_AT = ((1, 1, 1, 0), (0, 1, -1, -1))
# Largest transformed-input block (bytes) per block of examples.
_BLOCK_BYTES = 4 << 20
# Smallest channel counts at which the Winograd form beat oneDNN's direct convolution
# (2,000 4x4 maps, 2-core Xeon, 2 threads; speed-up of the Winograd form): 96->96 1.15x,
# 128->128 0.9-1.1x, 160->160 1.4x, 192->192 1.5x, 256->256 2.0x, 512->512 2.8x,
# 100->250 and 250->100 1.5x, 192->128 1.2x, but 200->64 0.8x and 30->250 1.0x.
_MIN_CHANNELS = 96
_MIN_CHANNEL_PRODUCT = 20000
# The same when the form also applies the batch norm and ReLU around the convolution to
# each block (``prologue``/``epilogue`` of :func:`winograd_conv3x3`), which the direct
# convolution needs whole passes over its input and output for. Measured on the Xeon
# (2,000 4x4 maps, both sides batch norm + ReLU, 2 threads / 1 thread): 80->80 1.39x/1.62x,
# 96->96 1.25-1.33x/1.43x, 128->128 1.17-1.22x/1.28x, 64->96 1.10-1.21x/1.41x,
# 64->128 1.04-1.08x/1.20x; but 64->64 0.92-0.95x/1.02x, 96->64 0.91-0.95x/1.04x,
# 128->64 0.92x/1.00x, 200->64 0.90-0.95x/1.03x (oneDNN's direct kernel is fast for 64
# outputs) and 32->32 0.91-0.97x/1.04x.
_MIN_CHANNELS_FUSED = 80
_MIN_CHANNEL_PRODUCT_FUSED = 6400


def enabled() -> bool:
    """Whether the engine may use the Winograd form (``SINGLEDIR_WINOGRAD=0`` turns it off)."""
    return os.environ.get("SINGLEDIR_WINOGRAD", "1") != "0"


def winograd_applies(conv: nn.Module, in_hw: tuple[int, int]) -> bool:
    """Whether ``conv`` on an (H, W) input is a convolution this module computes: 3x3
    kernel, stride 1, zero padding 1, no dilation, no groups, on a map of even sides of at
    most 4."""
    h, w = in_hw
    return (type(conv) is nn.Conv2d and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and h in (2, 4) and w in (2, 4))


def winograd_pays(in_channels: int, out_channels: int, fused: bool = False) -> bool:
    """Whether the Winograd form was measured faster than a direct convolution for these
    channel counts (see the module's constants); ``fused``: with channel-wise stages
    applied per block (a prologue or an epilogue beyond a bias)."""
    least, product = ((_MIN_CHANNELS_FUSED, _MIN_CHANNEL_PRODUCT_FUSED) if fused
                      else (_MIN_CHANNELS, _MIN_CHANNEL_PRODUCT))
    return enabled() and min(in_channels, out_channels) >= least and in_channels * out_channels >= product


def winograd_filter(weight: torch.Tensor) -> torch.Tensor:
    """The transformed filters G g G^T of a (out, in, 3, 3) weight, as (16, in, out)
    float32 (computed in float64)."""
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("pi,ocij,qj->pqco", g, weight.detach().double(), g)
    return u.reshape(16, weight.shape[1], weight.shape[0]).float().contiguous()


@functools.lru_cache(maxsize=None)
def _transforms(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input transform (16 T, h w), output transform (h w, 16 T)) for an (h, w) map with
    zero padding 1, T = (h/2)(w/2) tiles; rows of the input transform ordered (tile
    position, tile), as the 16 products want them."""

    def one_d(n):
        t = n // 2
        kin = torch.zeros(4 * t, n, dtype=torch.float64)
        kout = torch.zeros(n, 4 * t, dtype=torch.float64)
        for tile in range(t):
            for a in range(4):
                for i in range(4):
                    pos = 2 * tile + i - 1  # padded position 2*tile+i is unpadded pos
                    if 0 <= pos < n:
                        kin[a * t + tile, pos] += _BT[a][i]
                for o in range(2):
                    kout[2 * tile + o, a * t + tile] += _AT[o][a]
        return kin, kout

    (ih, oh), (iw, ow) = one_d(h), one_d(w)
    th, tw = h // 2, w // 2
    # kron rows are ((a, ti), (b, tj)); reorder to ((a, b), (ti, tj))
    perm = [(a * th + ti) * (4 * tw) + (b * tw + tj)
            for a in range(4) for b in range(4) for ti in range(th) for tj in range(tw)]
    kin = torch.kron(ih, iw)[perm]
    kout = torch.kron(oh, ow)[:, perm]
    return kin.float().contiguous(), kout.float().contiguous()


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, out: torch.Tensor | None = None,
                     workspace: dict | None = None, scale: torch.Tensor | None = None,
                     shift: torch.Tensor | None = None, relu: bool = False,
                     prologue: list[tuple] = ()) -> tuple[torch.Tensor, float]:
    """The 3x3 convolution (stride 1, zero padding 1, no bias) of ``x`` (B, C, H, W),
    float32, with transformed filters ``u`` (16, C, O) from :func:`winograd_filter`.

    Returns the (B, O, H, W) output (channels-last; into ``out`` if given) and the FLOPs
    executed (the 16 products and both transforms, 2 per multiply-add). ``workspace``
    (a dict) keeps the block buffers between calls.

    An epilogue is applied to each block while it is in cache, instead of as passes over
    the whole output: ``conv * scale + shift``, then ``max(., 0)`` with ``relu``;
    ``scale`` is per output channel (O,), ``shift`` per channel and position (O, H, W)
    (a bias, a constant channels' contribution, an eval-mode batch norm's shift, or all
    three folded into one). The FLOP count covers the convolution only.

    A ``prologue`` is applied, in order, to each block of the input as it is gathered:
    ``("affine", scale, shift)`` (per input channel, (C,) each: x * scale + shift) or
    ``("relu",)``. So the channel-wise stages before the convolution (batch norm, ReLU)
    cost no pass over the whole input either."""
    b_all, c, h, w = x.shape
    o = u.shape[2]
    hw, tiles = h * w, (h // 2) * (w // 2)
    kin, kout = _transforms(h, w)
    kin, kout = kin.to(x.device), kout.to(x.device)
    if out is None:
        out = torch.empty((b_all, o, h, w), device=x.device, dtype=torch.float32,
                          memory_format=torch.channels_last)
    block = max(16, min(256, _BLOCK_BYTES // (4 * 16 * tiles * max(c, o))))
    ws = workspace if workspace is not None else {}

    def buf(name, n):
        t = ws.get(name)
        if t is None or t.numel() < n or t.device != x.device:
            t = ws[name] = torch.empty(n, device=x.device, dtype=torch.float32)
        return t[:n]

    xs = x.permute(2, 3, 0, 1)  # (H, W, B, C), a view
    os_ = out.permute(0, 2, 3, 1)  # (B, H, W, O), a view
    # the epilogue's operands in the transformed output's (positions, examples, channels) order
    scale_v = None if scale is None else scale.reshape(1, 1, o)
    shift_v = None if shift is None else shift.reshape(o, hw).t().reshape(hw, 1, o).contiguous()
    pro = [("relu",) if op[0] == "relu" else ("affine", op[1].reshape(1, 1, 1, c), op[2].reshape(1, 1, 1, c))
           for op in prologue]
    for b0 in range(0, b_all, block):
        b = min(block, b_all - b0)
        xb = buf("x", hw * b * c).view(h, w, b, c)
        src = xs[:, :, b0:b0 + b]  # the block, spatial-major: (positions, examples x channels)
        for op in pro:
            if op[0] == "relu":
                torch.clamp_min(src, 0, out=xb)
            else:
                torch.addcmul(op[2], src, op[1], out=xb)
            src = xb
        if not pro:
            xb.copy_(src)
        v = buf("v", 16 * tiles * b * c).view(16 * tiles, b * c)
        torch.mm(kin, xb.view(hw, b * c), out=v)  # B^T d B of every tile
        m = buf("m", 16 * tiles * b * o).view(16, tiles * b, o)
        torch.bmm(v.view(16, tiles * b, c), u, out=m)  # one product per tile position
        y = buf("y", hw * b * o).view(hw, b * o)
        torch.mm(kout, m.view(16 * tiles, b * o), out=y)  # A^T M A
        yv = y.view(hw, b, o)
        if scale_v is not None and shift_v is not None:
            torch.addcmul(shift_v, yv, scale_v, out=yv)
        elif scale_v is not None:
            yv.mul_(scale_v)
        elif shift_v is not None:
            yv.add_(shift_v)
        src = y.view(h, w, b, o).permute(2, 0, 1, 3)
        if relu:
            torch.clamp_min(src, 0, out=os_[b0:b0 + b])
        else:
            os_[b0:b0 + b].copy_(src)
    flops = 2.0 * b_all * (16 * tiles * c * o + 16 * tiles * hw * (c + o))
    return out, flops
