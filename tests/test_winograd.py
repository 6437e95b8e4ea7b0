"""Winograd convolution equals F.conv2d, and the engine's Winograd path equals the plain
definition at every point of cumulative curves, on 4x4 and odd-sized maps."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from singledir.engine import winograd
from singledir.engine.ablation import ablation_fill, curve_points, layer_sizes, random_orderings
from singledir.engine.activations import activation_moments
from singledir.engine.reference import reference_ablation_eval, split_units
from singledir.models.nets import ConvNet

from test_engine import TOL, _randomize_bn, _stats_for


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("h,w", [(4, 4), (5, 5), (7, 7), (7, 6), (1, 1), (2, 3), (8, 8)])
def test_winograd_conv_equals_conv2d(h, w, m):
    g = torch.Generator().manual_seed(h * 10 + w)
    x = torch.randn(5, 24, h, w, generator=g)
    weight = torch.randn(20, 24, 3, 3, generator=g) * (2 / (9 * 24)) ** 0.5
    geo = winograd.Geometry(h, w, m)
    out = winograd.conv2d(x, winograd.transform_weights(weight, geo), geo)
    ref = F.conv2d(x, weight, None, 1, 1)
    assert out.shape == ref.shape == (5, 20, h, w)
    # rounding only: F(2x2) within a few ulps of the output scale, F(4x4) within ~1e-5
    tol = (2e-6 if m == 2 else 2e-5) * float(ref.abs().max())
    assert float((out - ref).abs().max()) <= tol
    # products counted: alpha^2 per (tile, pair, example), fewer than the direct 9 per output
    assert winograd.flops(5, geo, 24, 20) == 2.0 * (m + 2) ** 2 * geo.tiles * 5 * 24 * 20


def test_winograd_buffers_and_layout():
    """Results go into the caller's buffers, position-major; a wrong weight shape fails."""
    x = torch.randn(3, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(6, 8, 3, 3) * (2 / 72) ** 0.5
    geo = winograd.geometry(4, 4)
    bufs = {}

    def buffer(name, shape):
        bufs[name] = torch.empty(shape)
        return bufs[name]
    out = winograd.conv2d(x, winograd.transform_weights(weight, geo), geo, buffer)
    assert set(bufs) == {"v", "prod", "y"} and out.data_ptr() == bufs["y"].data_ptr()
    assert out.permute(2, 3, 0, 1).is_contiguous()
    ref = F.conv2d(x, weight, None, 1, 1)
    assert float((out - ref).abs().max()) <= 2e-5 * float(ref.abs().max())


def test_tile_size_and_when_it_pays():
    assert winograd.tile_size(4, 4) == 4  # one 6x6 tile: 36 products against 64 for F(2x2)
    assert winograd.tile_size(2, 2) == 2 and winograd.tile_size(5, 5) == 2  # tie at 144: the more exact one
    assert winograd.geometry(4, 4).n == 36
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    assert winograd.applies(conv)
    assert not winograd.applies(torch.nn.Conv2d(4, 4, 3, padding=1, stride=2))
    assert not winograd.applies(torch.nn.Conv2d(4, 4, 5, padding=2))
    # many channels on a 4x4 map: yes; few channels or a 32x32 map: the direct convolution
    assert winograd.worth_it(winograd.geometry(4, 4), 256, 256)
    assert not winograd.worth_it(winograd.geometry(4, 4), 8, 8)
    assert not winograd.worth_it(winograd.geometry(32, 32), 256, 256)


@pytest.mark.parametrize("forced", [False, True])
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("size", [32, 40, 56])  # relu9-11 maps 4x4, 5x5, 7x7
def test_engine_winograd_curves_equal_reference(size, batch_norm, forced, monkeypatch):
    """The engine's suffix convolutions through Winograd (where they pay; ``forced``: on
    every map, odd sizes included) against one full forward pass per point of two
    cumulative curves (nested masks: the incremental chain and the kept-channel
    convolutions), zero and mean ablation."""
    if forced:
        monkeypatch.setattr(winograd, "worth_it", lambda *a: True)
    torch.manual_seed(0)
    model = ConvNet(3, 10, width=0.25, batch_norm=batch_norm)  # 128 maps in the last block
    _randomize_bn(model, 1)
    model.eval()
    x = torch.randn(24, 3, size, size)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::4] = (y[::4] + 1) % 10
    layers = ["relu9", "relu10", "relu11"]
    sizes = layer_sizes(model, layers, x)
    total = sum(sizes.values())
    orders = random_orderings(total, 2, 3)
    sets = [orders[o, :k] for o in range(2) for k in curve_points(total, 6)]
    moments = activation_moments(model, x, layers)
    for mode in ("zero", "mean"):
        fill = ablation_fill(mode, moments, layers) if mode == "mean" else None
        ref = [reference_ablation_eval(model, x, y, split_units(s, sizes), fill) for s in sets]
        loss, acc, stats = _stats_for(model, x, y, layers, "plan", mode, moments, sets, chunk_size=16)
        np.testing.assert_allclose(loss, [r[0] for r in ref], atol=TOL, rtol=0)
        np.testing.assert_allclose(acc, [r[1] for r in ref], atol=TOL, rtol=0)
        assert np.ptp([r[0] for r in ref]) > 1e-3  # the curve moves: the comparison is not vacuous
        used = stats["flops_suffix_winograd"] > 0
        assert used == (forced or size in (32, 56)), stats  # 5x5 maps: the direct convolution pays
        assert stats["flops_suffix"] >= stats["flops_suffix_winograd"]
