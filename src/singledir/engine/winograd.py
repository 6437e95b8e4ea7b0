"""3x3 convolutions on small feature maps by Winograd's minimal filtering, F(4x4, 3x3)
and F(2x2, 3x3).

The engine's channel-sparse path (:mod:`singledir.engine.clamp_plan`) spends most of a
ConvNet analysis in the last layers' convolutions, where the maps are tiny (4x4 for
32x32 images) and the channels many. There a direct convolution runs well below the
machine's matrix-multiply rate (measured on a 2-core Xeon: oneDNN at 150-190 GFLOP/s for
245 -> 245 channels on 2,000 4x4 maps against ``torch.mm``'s 230-290). Winograd's
algorithm (Lavin & Gray, "Fast algorithms for convolutional neural networks", CVPR 2016)
turns the convolution into one ordinary matrix product per transformed tile position,
between an input transform and an output transform that only scale and add::

    Y = A^T [ (G g G^T) * (B^T d B) ] A

A side of 4 is one F(4, 3) tile (6 transformed positions: the 4x4 map, zero-padded to
6x6, needs 36 multiplications per channel pair instead of 16 * 9 = 144 direct, of which 44
fall on padding); a side of 2 is one F(2, 3) tile (4 positions). With ``SINGLEDIR_WINOGRAD=f2``
sides of 4 take two F(2, 3) tiles instead (64 multiplications per channel pair).

*Accuracy.* F(2x2, 3x3)'s transforms have entries 0, +-1 and +-1/2, and its float32 results
differ from the exact convolution by no more than a direct convolution's do (measured:
mean |error| 2.1e-7 for both on 245 -> 245 channels, unit-scale inputs, against float64).
F(4x4, 3x3)'s transformed values are larger, and so are its rounding errors: with the
points 0, +-1, 1/2, -2 (Barabasz et al. 2020's most accurate choice) and its input
transform scaled to small integers, 4x a direct convolution's on average (8.3e-7 against
2.1e-7; largest 2.0e-5 against 5.4e-6), about 2e-6 of the outputs' mean magnitude. That is
float rounding, not an approximation (in float64 the form is exact to 1e-12, tested), and
well inside the engine's 1e-5 agreement with the plain definition: over the benchmark's
ConvNet analysis (210 points x 2,000 images) the largest loss difference from direct
convolutions was 7.9e-8 with F(4x4) and 2.2e-8 with F(2x2); on ConvNets trained on real
CIFAR-10 images the engine's loss agreed with the plain definition to 2.4e-7 with either
form (and with direct convolutions). An earlier F(4x4) form (points
0, +-1, +-2; not blocked in cache) erred 10x a direct convolution's and was slower on the
AMD development machine, so it was removed; this one is 1.6x as fast as F(2x2) on the Xeon
(245 -> 245 channels, 2,000 4x4 maps: 39 against 69-73 ms, direct 134 ms).

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
_BT2 = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_G2 = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_AT2 = ((1, 1, 1, 0), (0, 1, -1, -1))
# F(4x4, 3x3) (Toom-Cook at the points 0, 1, -1, 1/2, -2 and infinity, the choice with the
# smallest float32 error of Barabasz et al., "Error analysis and improving the accuracy of
# Winograd convolution for deep neural networks", ACM TOMS 2020), each row of B^T scaled to
# small integers (so the input transform is exact in float32) and G divided by the same factor.
_BT4 = ((2, -3, -4, 3, 2, 0), (0, -2, 1, 5, 2, 0), (0, -2, 5, -1, -2, 0), (0, 2, 1, -2, -1, 0),
        (0, 1, -2, -1, 2, 0), (0, 2, -3, -4, 3, 2))
_G4 = ((1 / 2, 0, 0), (1 / 6, 1 / 6, 1 / 6), (1 / 6, -1 / 6, 1 / 6), (16 / 15, 8 / 15, 4 / 15),
       (1 / 30, -1 / 15, 2 / 15), (0, 0, 1 / 2))
_AT4 = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 1 / 2, -2, 0), (0, 1, 1, 1 / 4, 4, 0), (0, 1, -1, 1 / 8, -8, 1))
_TOOM_COOK = {2: (_BT2, _G2, _AT2), 4: (_BT4, _G4, _AT4)}  # output tile side -> (B^T, G, A^T)
# Largest transformed-input block (bytes) per block of examples.
_BLOCK_BYTES = 4 << 20
# Smallest channel counts at which the Winograd form beat oneDNN's direct convolution, per
# form and with or without channel-wise stages applied per block (``fused``: a prologue, or an
# epilogue beyond a bias; see :func:`winograd_conv3x3`).
#
# F(2x2, 3x3) (2,000 4x4 maps, 2-core Xeon, 2 threads; speed-up of the Winograd form): 96->96
# 1.15x, 128->128 0.9-1.1x, 160->160 1.4x, 192->192 1.5x, 256->256 2.0x, 512->512 2.8x, 100->250
# and 250->100 1.5x, 192->128 1.2x, but 200->64 0.8x and 30->250 1.0x. Fused (both sides batch
# norm + ReLU, 2 threads / 1 thread): 80->80 1.39x/1.62x, 96->96 1.25-1.33x/1.43x, 128->128
# 1.17-1.22x/1.28x, 64->96 1.10-1.21x/1.41x, 64->128 1.04-1.08x/1.20x; but 64->64
# 0.92-0.95x/1.02x, 96->64 0.91-0.95x/1.04x, 128->64 0.92x/1.00x, 200->64 0.90-0.95x/1.03x
# (oneDNN's direct kernel is fast for 64 outputs) and 32->32 0.91-0.97x/1.04x.
#
# F(4x4, 3x3), with 36 instead of 64 products per channel pair, is faster than the direct
# convolution from 16 channels on both sides (same machine and maps; plain / fused, 2 threads):
# 16->16 1.03-1.35x / 1.14-1.17x, 32->32 1.98x / 1.25x, 64->64 1.21x / 1.34x, 96->64 1.30x /
# 1.41x, 200->64 1.49x / 1.50x, 128->128 1.70x / 1.73x, 30->250 1.49x / 1.71x, 250->30 2.18x /
# 2.07x; 1 thread: 16->16 1.58x / 1.75x, 64->64 1.31x / 1.44x, 128->128 1.87x / 1.92x. Below 16
# input channels it can lose (plain 8->245 0.93x, 13->128 0.92x, 8->64 0.72x).
_THRESHOLDS = {("f2", False): (96, 20000), ("f2", True): (80, 6400),
               ("f4", False): (16, 256), ("f4", True): (16, 256)}


def enabled() -> bool:
    """Whether the engine may use the Winograd form (``SINGLEDIR_WINOGRAD=0`` turns it off)."""
    return os.environ.get("SINGLEDIR_WINOGRAD", "1") != "0"


def variant() -> str:
    """The form used on sides of 4: ``"f4"`` (F(4x4, 3x3), the default) or ``"f2"``
    (F(2x2, 3x3) only, with ``SINGLEDIR_WINOGRAD=f2``: a quarter of F(4x4)'s float32 error,
    for a 1.6x slower convolution)."""
    return "f2" if os.environ.get("SINGLEDIR_WINOGRAD", "1") == "f2" else "f4"


def winograd_applies(conv: nn.Module, in_hw: tuple[int, int]) -> bool:
    """Whether ``conv`` on an (H, W) input is a convolution this module computes: 3x3
    kernel, stride 1, zero padding 1, no dilation, no groups, on a map of even sides of at
    most 4."""
    h, w = in_hw
    return (type(conv) is nn.Conv2d and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and h in (2, 4) and w in (2, 4))


def winograd_pays(in_channels: int, out_channels: int, fused: bool = False) -> bool:
    """Whether the Winograd form (:func:`variant`) was measured faster than a direct
    convolution for these channel counts (see the module's constants); ``fused``: with
    channel-wise stages applied per block (a prologue or an epilogue beyond a bias)."""
    least, product = _THRESHOLDS[variant(), fused]
    return enabled() and min(in_channels, out_channels) >= least and in_channels * out_channels >= product


def _tile_sides(hw: tuple[int, int], form: str) -> tuple[int, int]:
    """Output tile side per dimension: 4 (F(4, 3), one tile) on a side of 4 in the ``"f4"``
    form, else 2 (F(2, 3))."""
    return tuple(4 if (n == 4 and form == "f4") else 2 for n in hw)


def winograd_filter(weight: torch.Tensor, hw: tuple[int, int], form: str | None = None) -> torch.Tensor:
    """The transformed filters G g G^T of a (out, in, 3, 3) weight for a convolution on
    (H, W) = ``hw`` maps, as (P, in, out) float32 (computed in float64), P the transformed
    tile's positions (16 for F(2x2), 36 for F(4x4), 24 for a 4x2 map); ``form``:
    :func:`variant` if None."""
    mh, mw = _tile_sides(hw, form or variant())
    gh = torch.tensor(_TOOM_COOK[mh][1], dtype=torch.float64, device=weight.device)
    gw = torch.tensor(_TOOM_COOK[mw][1], dtype=torch.float64, device=weight.device)
    u = torch.einsum("pi,ocij,qj->pqco", gh, weight.detach().double(), gw)
    return u.reshape(gh.shape[0] * gw.shape[0], weight.shape[1], weight.shape[0]).float().contiguous()


@functools.lru_cache(maxsize=None)
def _transforms(h: int, w: int, positions: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(input transform (P T, h w), output transform (h w, P T), T) for an (h, w) map with
    zero padding 1 and filters of ``positions`` = P transformed positions, T tiles; rows of
    the input transform ordered (tile position, tile), as the P products want them."""
    sides = _tile_sides((h, w), "f2" if positions == 16 else "f4")  # 16: F(2x2) tiles throughout

    def one_d(n, m):  # a side of n in tiles of m outputs, F(m, 3): m + 2 positions per tile
        bt, _, at = _TOOM_COOK[m]
        t, p = n // m, m + 2
        kin = torch.zeros(p * t, n, dtype=torch.float64)
        kout = torch.zeros(n, p * t, dtype=torch.float64)
        for tile in range(t):
            for a in range(p):
                for i in range(p):
                    pos = m * tile + i - 1  # padded position m*tile+i is unpadded pos
                    if 0 <= pos < n:
                        kin[a * t + tile, pos] += bt[a][i]
                for o in range(m):
                    kout[m * tile + o, a * t + tile] += at[o][a]
        return kin, kout, p, t

    (ih, oh, ph, th), (iw, ow, pw, tw) = one_d(h, sides[0]), one_d(w, sides[1])
    # kron rows are ((a, ti), (b, tj)); reorder to ((a, b), (ti, tj))
    perm = [(a * th + ti) * (pw * tw) + (b * tw + tj)
            for a in range(ph) for b in range(pw) for ti in range(th) for tj in range(tw)]
    kin = torch.kron(ih, iw)[perm]
    kout = torch.kron(oh, ow)[:, perm]
    return kin.float().contiguous(), kout.float().contiguous(), th * tw


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, out: torch.Tensor | None = None,
                     workspace: dict | None = None, scale: torch.Tensor | None = None,
                     shift: torch.Tensor | None = None, relu: bool = False,
                     prologue: list[tuple] = ()) -> tuple[torch.Tensor, float]:
    """The 3x3 convolution (stride 1, zero padding 1, no bias) of ``x`` (B, C, H, W),
    float32, with transformed filters ``u`` (P, C, O) from :func:`winograd_filter` (which
    also chose the form: F(4x4, 3x3) or F(2x2, 3x3) per side).

    Returns the (B, O, H, W) output (channels-last; into ``out`` if given) and the FLOPs
    executed (the P products and both transforms, 2 per multiply-add). ``workspace``
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
    hw, pos = h * w, u.shape[0]
    kin, kout, tiles = _transforms(h, w, pos)
    rows = pos * tiles  # transformed values per example and channel
    kin, kout = kin.to(x.device), kout.to(x.device)
    if out is None:
        out = torch.empty((b_all, o, h, w), device=x.device, dtype=torch.float32,
                          memory_format=torch.channels_last)
    block = max(16, min(256, _BLOCK_BYTES // (4 * rows * max(c, o))))
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
        v = buf("v", rows * b * c).view(rows, b * c)
        torch.mm(kin, xb.view(hw, b * c), out=v)  # B^T d B of every tile
        m = buf("m", rows * b * o).view(pos, tiles * b, o)
        torch.bmm(v.view(pos, tiles * b, c), u, out=m)  # one product per tile position
        y = buf("y", hw * b * o).view(hw, b * o)
        torch.mm(kout, m.view(rows, b * o), out=y)  # A^T M A
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
    flops = 2.0 * b_all * (rows * c * o + rows * hw * (c + o))
    return out, flops
