"""The Winograd form of small 3x3 convolutions (singledir.engine.winograd) equals the
convolution, and the engine that uses it still equals the plain definition."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from singledir.engine import winograd
from singledir.engine.winograd import winograd_applies, winograd_conv3x3, winograd_filter, winograd_pays


FORMS = ("f4", "f2")
# transformed positions x tiles per example and channel: F(4x4) on sides of 4, F(2x2) on sides of 2
ROWS = {("f4", (4, 4)): 36, ("f4", (2, 2)): 16, ("f4", (2, 4)): 24, ("f4", (4, 2)): 24,
        ("f2", (4, 4)): 64, ("f2", (2, 2)): 16, ("f2", (2, 4)): 32, ("f2", (4, 2)): 32}


@pytest.mark.parametrize("m", [2, 4])
def test_toom_cook_matrices_compute_the_correlation_exactly(m):
    """F(m, 3)'s A^T [(G g) * (B^T d)] is the correlation of d with g, in float64 to
    rounding; B^T's entries are small integers and A^T's dyadic (exact in float32)."""
    bt, g_, at = (torch.tensor(t, dtype=torch.float64) for t in winograd._TOOM_COOK[m])
    assert bt.shape == (m + 2, m + 2) and g_.shape == (m + 2, 3) and at.shape == (m, m + 2)
    gen = torch.Generator().manual_seed(m)
    for _ in range(5):
        d, g = torch.randn(m + 2, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen, dtype=torch.float64)
        y = at @ ((g_ @ g) * (bt @ d))
        exact = torch.stack([(d[i:i + 3] * g).sum() for i in range(m)])
        assert (y - exact).abs().max().item() < 1e-13
    assert torch.equal(bt, bt.round()) and torch.equal(at.float().double(), at)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("hw", [(4, 4), (2, 2), (2, 4), (4, 2)])
def test_winograd_transforms_lay_out_the_exact_convolution(hw, form):
    """The whole-map transforms and the filter layout, evaluated in float64, give the
    convolution to float64 rounding: the form's float32 error is rounding, not algebra."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, 6, *hw, generator=g, dtype=torch.float64)
    w = torch.randn(4, 6, 3, 3, generator=g, dtype=torch.float64)
    mh, mw = winograd._tile_sides(hw, form)
    gh, gw = (torch.tensor(winograd._TOOM_COOK[m][1], dtype=torch.float64) for m in (mh, mw))
    u = torch.einsum("pi,ocij,qj->pqco", gh, w, gw).reshape(-1, 6, 4)  # winograd_filter's layout
    assert u.shape == winograd_filter(w.float(), hw, form).shape
    kin, kout, tiles = winograd._transforms(*hw, u.shape[0])
    assert kin.shape == (ROWS[form, hw], hw[0] * hw[1]) and u.shape[0] * tiles == ROWS[form, hw]
    v = kin.double() @ x.permute(2, 3, 0, 1).reshape(hw[0] * hw[1], -1)  # (rows, B*C)
    m = torch.bmm(v.view(u.shape[0], tiles * 5, 6), u)
    y = (kout.double() @ m.reshape(-1, 5 * 4)).view(*hw, 5, 4).permute(2, 3, 0, 1)
    assert (y - F.conv2d(x, w, None, 1, 1)).abs().max().item() < 1e-12


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("hw", [(4, 4), (2, 2), (2, 4), (4, 2)])
@pytest.mark.parametrize("block_bytes", [4 << 20, 1])  # one block; blocks of 16 examples, the last partial
def test_winograd_conv_equals_the_convolution(hw, block_bytes, form, monkeypatch):
    monkeypatch.setattr(winograd, "_BLOCK_BYTES", block_bytes)
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(37, 24, *hw, generator=g))
    w = torch.randn(19, 24, 3, 3, generator=g) / 15
    exact = F.conv2d(x.double(), w.double(), None, 1, 1)
    direct = F.conv2d(x, w, None, 1, 1)
    out, flops = winograd_conv3x3(x, winograd_filter(w, hw, form))
    assert out.shape == direct.shape and out.is_contiguous(memory_format=torch.channels_last)
    # float32 rounding only: F(2x2) no more of it than a direct convolution, F(4x4) a few
    # times more (its transformed values are larger), both far below the engine's 1e-5
    err = (out.double() - exact).abs().max().item()
    direct_err = (direct.double() - exact).abs().max().item()
    assert err < 1e-5 and err <= (2 if form == "f2" or hw == (2, 2) else 8) * direct_err + 1e-7
    rows = ROWS[form, hw]
    assert flops == 2.0 * 37 * (rows * 24 * 19 + rows * hw[0] * hw[1] * (24 + 19))
    # into a given buffer, from a channels-last input
    buf = torch.empty(37, 19, *hw).contiguous(memory_format=torch.channels_last)
    out2, _ = winograd_conv3x3(x.contiguous(memory_format=torch.channels_last), winograd_filter(w, hw, form), buf)
    assert out2.data_ptr() == buf.data_ptr() and torch.equal(out2, out)


def test_the_form_follows_the_environment(monkeypatch):
    w = torch.randn(3, 2, 3, 3)
    monkeypatch.delenv("SINGLEDIR_WINOGRAD", raising=False)
    assert winograd.variant() == "f4" and winograd_filter(w, (4, 4)).shape == (36, 2, 3)
    monkeypatch.setenv("SINGLEDIR_WINOGRAD", "f2")
    assert winograd.variant() == "f2" and winograd_filter(w, (4, 4)).shape == (16, 2, 3)
    assert winograd_filter(w, (2, 2)).shape == winograd_filter(w, (2, 2), "f4").shape == (16, 2, 3)


@pytest.mark.parametrize("epilogue", ["scale_shift_relu", "scale", "shift_relu", "relu"])
def test_winograd_epilogue_equals_the_separate_passes(epilogue, monkeypatch):
    """The per-block epilogue gives relu(conv * scale + shift), as the separate passes do
    (shift per channel and position, as a constant channels' contribution is), in blocks
    whose last is partial."""
    monkeypatch.setattr(winograd, "_BLOCK_BYTES", 1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(37, 24, 4, 4, generator=g)
    w = torch.randn(19, 24, 3, 3, generator=g) / 15
    scale = torch.rand(19, generator=g) + 0.5 if "scale" in epilogue else None
    shift = torch.randn(19, 4, 4, generator=g) if "shift" in epilogue else None
    relu = "relu" in epilogue
    plain, _ = winograd_conv3x3(x, winograd_filter(w, (4, 4)))
    expected = plain.double()
    if scale is not None:
        expected = expected * scale.double().view(1, -1, 1, 1)
    if shift is not None:
        expected = expected + shift.double().unsqueeze(0)
    if relu:
        expected = expected.clamp_min(0)
    out, _ = winograd_conv3x3(x, winograd_filter(w, (4, 4)), scale=scale, shift=shift, relu=relu)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert (out.double() - expected).abs().max().item() < 1e-5
    if relu:
        assert (out >= 0).all() and (out == 0).float().mean() > 0.2


def test_winograd_prologue_applies_the_channel_wise_stages_to_the_input_in_order(monkeypatch):
    """A prologue (batch norm as an affine map, then ReLU; or ReLU, then an affine map)
    gives the convolution of the transformed input, in blocks whose last is partial; the
    input itself is not modified."""
    monkeypatch.setattr(winograd, "_BLOCK_BYTES", 1)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(37, 24, 4, 4, generator=g).contiguous(memory_format=torch.channels_last)
    x0 = x.clone()
    w = torch.randn(19, 24, 3, 3, generator=g) / 15
    scale, shift = torch.rand(24, generator=g) + 0.5, torch.randn(24, generator=g)
    affine = x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    for ops, transformed in (([("affine", scale, shift), ("relu",)], affine.clamp_min(0)),
                             ([("relu",), ("affine", scale, shift)],
                              x.clamp_min(0) * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1))):
        out, _ = winograd_conv3x3(x, winograd_filter(w, (4, 4)), prologue=ops)
        exact = F.conv2d(transformed.double(), w.double(), None, 1, 1)
        assert (out.double() - exact).abs().max().item() < 1e-5
    assert torch.equal(x, x0)


def test_plan_gathers_the_transformed_filters_of_a_masks_channels():
    """ClampPlan._winograd_filter: the transformed filters of the given input channels
    (in their order) and output channels, for a convolution with more inputs than outputs,
    equal those of the sliced weight."""
    from singledir.engine.clamp_plan import ClampPlan
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 7, 3, padding=1), nn.ReLU(), nn.Conv2d(7, 5, 3, padding=1), nn.ReLU())
    plan = ClampPlan.build(model, ["1"], torch.randn(2, 3, 4, 4))
    w = model[2].weight
    cols, rows = torch.tensor([6, 0, 3, 4]), torch.tensor([1, 2, 4])
    for r, c, sliced in ((rows, cols, w[rows][:, cols]), (None, cols, w[:, cols]), (rows, None, w[rows])):
        got = plan._winograd_filter(2, r, c)
        # a gather is exact; the tolerance only absorbs float64 summation order in the reference
        torch.testing.assert_close(got, winograd_filter(sliced, (4, 4)), rtol=0, atol=1e-6)


def test_winograd_applies_only_to_3x3_stride_1_pad_1_on_small_maps():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    assert winograd_applies(conv, (4, 4)) and winograd_applies(conv, (2, 4))
    assert not winograd_applies(conv, (8, 8))  # larger maps: the dense transforms would not pay
    assert not winograd_applies(conv, (3, 3))  # odd sides
    assert not winograd_applies(nn.Conv2d(4, 4, 3, padding=1, stride=2), (4, 4))
    assert not winograd_applies(nn.Conv2d(4, 4, 5, padding=2), (4, 4))
    assert not winograd_applies(nn.Conv2d(4, 4, 3, padding=1, dilation=2), (4, 4))
    assert not winograd_applies(nn.Conv2d(4, 4, 3, padding=1, groups=2), (4, 4))
    assert not winograd_applies(nn.Conv2d(4, 4, 3, padding=0), (4, 4))


def test_winograd_pays_for_many_channels_and_can_be_switched_off(monkeypatch):
    # F(4x4, 3x3), the default: from 16 channels on both sides
    monkeypatch.delenv("SINGLEDIR_WINOGRAD", raising=False)
    assert winograd_pays(16, 16) and winograd_pays(64, 64) and winograd_pays(200, 64) and winograd_pays(30, 250)
    assert winograd_pays(64, 64, fused=True) and winograd_pays(16, 245, fused=True)
    assert not winograd_pays(8, 245) and not winograd_pays(13, 128) and not winograd_pays(8, 64, fused=True)
    # F(2x2, 3x3) only: from 96 channels (80 with batch norm and ReLU per block)
    monkeypatch.setenv("SINGLEDIR_WINOGRAD", "f2")
    assert winograd_pays(256, 256) and winograd_pays(100, 250)
    assert not winograd_pays(64, 64) and not winograd_pays(30, 250) and not winograd_pays(128, 128)
    # with batch norm and ReLU applied per block, from 80 channels on both sides
    assert winograd_pays(96, 96, fused=True) and winograd_pays(80, 80, fused=True)
    assert winograd_pays(128, 128, fused=True) and not winograd_pays(128, 128)
    assert not winograd_pays(64, 64, fused=True) and not winograd_pays(200, 64, fused=True)
    monkeypatch.setenv("SINGLEDIR_WINOGRAD", "0")
    assert not winograd_pays(256, 256) and not winograd_pays(256, 256, fused=True)


def _winograd_for_every_convolution(monkeypatch) -> list:
    """Lower every threshold so that each convolution the form can compute takes it;
    returns the list that records each call."""
    monkeypatch.setattr(winograd, "_THRESHOLDS", {k: (1, 1) for k in winograd._THRESHOLDS})
    calls = []
    real = winograd.winograd_conv3x3
    monkeypatch.setattr(winograd, "winograd_conv3x3", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
    return calls


# image side (16: 4x4 and 2x2 maps in the last layers; 32: 8x8 and 4x4), form
ENGINE_CASES = [(16, "f4"), (16, "f2"), (32, "f4")]


def _check_forms(calls, side, form):
    """The recorded Winograd calls used the form's filters: F(4x4) (36 positions) on 4x4
    maps unless only F(2x2) (16) is asked for, F(2x2) on 2x2 maps."""
    positions = {shape[0] for shape in calls}
    assert positions == ({16} if form == "f2" else {36, 16} if side == 16 else {36})


@pytest.mark.parametrize("side,form", ENGINE_CASES)
def test_engine_with_winograd_convolutions_equals_reference(side, form, monkeypatch):
    """The ConvNet's last convolutions (2x2 maps for 16x16 images, 4x4 for 32x32) in the
    Winograd form, for every channel count: every point of the curves equals the plain
    definition."""
    from singledir.engine.ablation import (ablation_fill, cumulative_ablation_curve, curve_points, layer_sizes,
                                           random_orderings)
    from singledir.models.activations import activation_moments
    from singledir.engine.options import EngineOptions
    from singledir.engine.reference import reference_curve
    from test_engine import _check_rows, _family

    monkeypatch.setenv("SINGLEDIR_WINOGRAD", form)
    calls = _winograd_for_every_convolution(monkeypatch)
    for family in ("convnet_bn", "convnet_nobn"):
        model, x, y, layers = _family(family, side)
        if family == "convnet_nobn":  # convolutions with biases (the ConvNet initializes them to zero)
            model = copy.deepcopy(model)
            g = torch.Generator().manual_seed(3)
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, nn.Conv2d):
                        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
        sizes = layer_sizes(model, layers, x)
        for mode in ("zero", "mean"):
            moments = activation_moments(model, x, layers)
            calls.clear()
            curve = cumulative_ablation_curve(model, x, y, layers, n_orderings=3, n_points=6, seed=5, mode=mode,
                                              moments=moments, options=EngineOptions(chunk_size=64))
            assert len(calls) > 10  # the suffix convolutions ran in the Winograd form
            _check_forms(calls, side, form)
            ref = reference_curve(model, x, y, sizes, random_orderings(sum(sizes.values()), 3, 5),
                                  curve_points(sum(sizes.values()), 6),
                                  ablation_fill(mode, moments, layers) if mode == "mean" else None)
            _check_rows(curve, ref)
            assert np.ptp(curve.loss) > 1e-3


@pytest.mark.parametrize("side,form", ENGINE_CASES)
def test_engine_with_winograd_convolutions_on_arbitrary_masks(side, form, monkeypatch):
    """Non-nested masks too (chains that start from the empty base update by the kept
    maps, with both signs), against the plain definition."""
    from singledir.engine.ablation import ablation_fill, layer_sizes
    from singledir.models.activations import activation_moments
    from singledir.engine.reference import reference_ablation_eval, split_units
    from test_engine import TOL, _family, _stats_for

    monkeypatch.setenv("SINGLEDIR_WINOGRAD", form)
    calls = _winograd_for_every_convolution(monkeypatch)
    model, x, y, layers = _family("convnet_bn", side)
    sizes = layer_sizes(model, layers, x)
    total, rng = sum(sizes.values()), np.random.default_rng(2)
    sets = [rng.choice(total, rng.integers(0, total + 1), replace=False) for _ in range(14)]
    sets += [np.arange(total - 3), np.arange(3, total)]
    moments = activation_moments(model, x, layers)
    for mode in ("zero", "mean"):
        fill = ablation_fill(mode, moments, layers) if mode == "mean" else None
        ref = np.array([reference_ablation_eval(model, x, y, split_units(s, sizes), fill) for s in sets])
        calls.clear()
        loss, acc, stats = _stats_for(model, x, y, layers, "plan", mode, moments, sets, chunk_size=40)
        assert stats["path"] == "plan"
        _check_forms(calls, side, form)
        np.testing.assert_allclose(loss, ref[:, 0], atol=TOL, rtol=0)
        np.testing.assert_allclose(acc, ref[:, 1], atol=TOL, rtol=0)


@pytest.mark.slow
def test_engine_with_f4_equals_reference_on_a_convnet_trained_on_real_cifar(monkeypatch):
    """Trained weights and real images (larger, less regular activations than a random
    network's): a ConvNet trained for three epochs on 2,000 real CIFAR-10 images, its last
    convolutions (4x4 maps) in F(4x4, 3x3) at the default thresholds, equals the plain
    definition at every point of its cumulative ablation curves on 300 test images."""
    from conftest import shared_file
    from singledir.data.sources import load_dataset, to_tensors
    from singledir.engine.ablation import cumulative_ablation_curve, curve_points, layer_sizes, random_orderings
    from singledir.engine.options import EngineOptions
    from singledir.engine.reference import reference_curve
    from singledir.models.nets import ConvNet
    from test_engine import _check_rows

    data = load_dataset({"source": "npz", "path": str(shared_file("cifar10_jpeg_12k.npz")), "train_limit": 2000})
    t = to_tensors(data, data.y_train)
    torch.manual_seed(0)
    model = ConvNet(3, 10, width=0.25, batch_norm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(3):
        for i in range(0, 2000, 100):
            loss = F.cross_entropy(model(t.x_train[i:i + 100]), t.y_train[i:i + 100])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    x, y = t.x_test[:300], t.y_test[:300]
    monkeypatch.delenv("SINGLEDIR_WINOGRAD", raising=False)
    calls = []
    real = winograd.winograd_conv3x3
    monkeypatch.setattr(winograd, "winograd_conv3x3", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
    layers = ["relu9", "relu10", "relu11"]
    sizes = layer_sizes(model, layers, x)
    curve = cumulative_ablation_curve(model, x, y, layers, n_orderings=2, n_points=6, seed=1,
                                      options=EngineOptions(chunk_size=300))
    assert calls and {shape[0] for shape in calls} == {36}  # F(4x4) at the default thresholds
    total = sum(sizes.values())
    ref = reference_curve(model, x, y, sizes, random_orderings(total, 2, 1), curve_points(total, 6))
    _check_rows(curve, ref)
    assert curve.accuracy.max() > 0.2 and np.ptp(curve.loss) > 0.1  # a trained net whose ablation matters
