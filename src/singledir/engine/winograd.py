"""Winograd convolution: a 3x3, stride-1, padding-1 convolution with fewer multiplications.

Winograd's minimal filtering algorithm F(m x m, 3 x 3) (Lavin & Gray, 2016) computes an
m x m block of outputs from an (m + 2) x (m + 2) tile of the padded input with
``alpha^2 = (m + 2)^2`` products per (input channel, output channel) pair instead of
``9 m^2``::

    Y = A^T [ (G g G^T) * (B^T d B) ] A      (* elementwise over the alpha x alpha tile)

Summed over input channels, the elementwise products of a tile position become matrix
products ``V[p] (tiles, C_in) @ U[p] (C_in, C_out)``. On a 4 x 4 map (the ConvNet's last
block) one F(4x4, 3x3) tile covers the whole padded map: 36 multiply-adds per channel
pair and example where the direct method does 144 (44 of them on padding zeros), 4x
fewer; F(2x2, 3x3) needs 64. :func:`tile_size` picks the ``m`` with fewer products for a
map, F(2x2) on a tie (its transforms are exact in binary, so its rounding is smaller).

*The transforms as matrices over the whole map.* For small maps the input transform of
every tile, zero padding included, is one linear map from the H*W values of a channel to
the ``alpha^2 x tiles`` tile values: a (alpha^2 * tiles, H*W) matrix built once per map
size (:class:`Geometry`), and likewise the output transform (A^T . A of every tile,
cropped to H x W). Padding zeros then cost nothing, maps of any size are exact (a side
that is not a multiple of m is padded to whole tiles and cropped), and each transform is
one matrix product over the data in position-major layout (H*W, B * C): positions are
the rows, so no gather of overlapping tiles is ever materialised. Their cost grows like
(H*W)^2, so they pay only on small maps, which is where the engine uses them
(:func:`worth_it`).

Results differ from :func:`torch.nn.functional.conv2d` by float rounding only (the
same products, grouped differently through transforms with small rational entries).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

# Lavin & Gray's matrices: F(2x2, 3x3) (points 0, 1, -1, inf) and F(4x4, 3x3) (points
# 0, 1, -1, 2, -2, inf).
_MATRICES = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)),
}


def applies(conv: torch.nn.Module) -> bool:
    """Whether ``conv`` is a convolution this module computes: a Conv2d with 3x3 kernels,
    stride 1, zero padding 1, no dilation, no groups."""
    return (isinstance(conv, torch.nn.Conv2d) and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


def _tiles(h: int, w: int, m: int) -> int:
    return -(-h // m) * -(-w // m)


def tile_size(h: int, w: int) -> int:
    """The output tile side m (2 or 4) with fewer products per channel pair on an h x w
    map; 2 on a tie."""
    return min((2, 4), key=lambda m: ((m + 2) ** 2 * _tiles(h, w, m), m))


class Geometry:
    """F(m x m, 3x3) on h x w maps: the weight, input and output transforms as matrices.

    ``n`` = alpha^2 * tiles products per channel pair and example; ``input`` (n, h*w) maps
    a channel's values to its tiles' transformed values (rows ordered (position, tile),
    so that each position's rows over tiles and examples are one matrix); ``output``
    (h*w, n) maps the products back to the map; ``weight`` (alpha^2, 9) is G (x) G."""

    def __init__(self, h: int, w: int, m: int):
        bt, g, at = _MATRICES[m]
        a = m + 2
        th, tw = -(-h // m), -(-w // m)
        self.h, self.w, self.m, self.alpha, self.tiles = h, w, m, a, th * tw
        self.n = a * a * self.tiles
        kin = np.zeros((a, a, th, tw, h, w))
        kout = np.zeros((h, w, a, a, th, tw))
        for ti in range(th):
            for tj in range(tw):
                # tile (ti, tj) reads padded rows m*ti .. m*ti + a - 1 (map row = padded row - 1)
                for r in range(a):
                    for s in range(a):
                        y, x = m * ti + r - 1, m * tj + s - 1
                        if 0 <= y < h and 0 <= x < w:
                            kin[:, :, ti, tj, y, x] = np.outer(bt[:, r], bt[:, s])
                for r in range(m):
                    for s in range(m):
                        y, x = m * ti + r, m * tj + s
                        if y < h and x < w:
                            kout[y, x, :, :, ti, tj] = np.outer(at[r], at[s])
        self.input = torch.tensor(kin.reshape(self.n, h * w), dtype=torch.float32)
        self.output = torch.tensor(kout.reshape(h * w, self.n), dtype=torch.float32)
        self.weight = torch.tensor(np.kron(g, g), dtype=torch.float32)  # (alpha^2, 9)

    def to(self, device) -> "Geometry":
        for name in ("input", "output", "weight"):
            setattr(self, name, getattr(self, name).to(device))
        return self


@functools.lru_cache(maxsize=32)
def geometry(h: int, w: int, device: str = "cpu") -> Geometry:
    """The :class:`Geometry` of h x w maps (tile size by :func:`tile_size`), cached."""
    return Geometry(h, w, tile_size(h, w)).to(device)


def transform_weights(w: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """(C_out, C_in, 3, 3) weights -> U, (alpha^2, C_in, C_out): ``G g G^T`` of each pair."""
    c_out, c_in = w.shape[:2]
    u = geo.weight @ w.reshape(c_out * c_in, 9).t()  # (alpha^2, C_out * C_in)
    return u.view(-1, c_out, c_in).transpose(1, 2).contiguous()


def conv2d(x: torch.Tensor, u: torch.Tensor, geo: Geometry, buffer=None) -> torch.Tensor:
    """The 3x3, stride-1, padding-1 convolution (no bias) of ``x`` (B, C_in, H, W) with
    weights transformed by :func:`transform_weights` (``u``: (alpha^2, C_in, C_out)).

    Returns (B, C_out, H, W) in position-major memory layout (H, W, B, C_out). Its
    intermediates and result go into ``buffer(name, shape)`` (names ``"v"``, ``"prod"``,
    ``"y"``; default: new tensors), so a caller can reuse them: fresh multi-megabyte
    tensors cost page faults on every call."""
    if buffer is None:
        buffer = lambda name, shape: torch.empty(shape, dtype=x.dtype, device=x.device)  # noqa: E731
    b, c_in, h, w = x.shape
    c_out = u.shape[2]
    a2, t = geo.alpha ** 2, geo.tiles
    xs = x.permute(2, 3, 0, 1).reshape(h * w, b * c_in)  # a view when x is position-major
    v = torch.mm(geo.input, xs, out=buffer("v", (geo.n, b * c_in))).view(a2, t * b, c_in)
    prod = torch.bmm(v, u, out=buffer("prod", (a2, t * b, c_out)))
    y = torch.mm(geo.output, prod.view(geo.n, b * c_out), out=buffer("y", (h * w, b * c_out)))
    return y.view(h, w, b, c_out).permute(2, 3, 0, 1)


def flops(rows: int, geo: Geometry, c_in: int, c_out: int) -> float:
    """FLOPs of :func:`conv2d`'s products on ``rows`` maps, 2 per multiply-add. The
    transforms are not counted (mostly zeros in the matrix form; a few adds per value
    in the algorithm), so a rate computed from this is the products' rate, not flattered
    by the transforms."""
    return 2.0 * geo.n * rows * c_in * c_out


def worth_it(geo: Geometry, c_in: int, c_out: int) -> bool:
    """Whether :func:`conv2d` should beat the direct convolution: its products plus the
    two transforms (``n * h*w`` multiply-adds per input and per output channel) against
    the direct method's 9 * h*w per pair. The direct method is counted at two thirds of
    its multiply-adds: oneDNN runs it at a higher rate than the small products and
    memory-bound transforms here."""
    hw = geo.h * geo.w
    wino = geo.n * (c_in * c_out + hw * (c_in + c_out))
    return wino < (2 / 3) * 9 * hw * c_in * c_out
