"""The engine equals the plain definition (a hook that clamps units, one full forward pass
per point) at every point of every curve, for every model family, in both its paths."""

import functools

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from singledir.engine.ablation import (ablation_fill, cumulative_ablation_curve, curve_points, layer_sizes, masks_from_sets,
                                random_orderings, single_unit_impact)
from singledir.models.nets import MLP, ConvNet
from singledir.engine.options import EngineOptions
from singledir.engine.batch import PerturbationBatch
from singledir.engine.noise_source import NoiseSource
from singledir.models.activations import activation_moments
from singledir.engine.perturb import PrecisionError, evaluate_perturbations
from singledir.engine.reference import reference_ablation_eval, reference_curve, split_units

TOL = 1e-5


def _randomize_bn(model, seed):
    """Variance-preserving weights and non-trivial batch-norm statistics, so that a
    random deep network's output depends on its input (as a trained one's does)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)


@functools.lru_cache(maxsize=None)
def _family(name, side=16):
    """(model, x, y, layers) for a family; cached, the tests only evaluate them. ``side``:
    the ConvNets' image side (16: 2x2 maps in the last layers; 32: 4x4)."""
    torch.manual_seed(0)
    if name == "mlp":
        model = MLP(64, [40, 32], 10, dropout=0.2)
        _randomize_bn(model, 0)
        x = torch.randn(150, 1, 8, 8)
        layers = ["relu1", "relu2"]
    elif name in ("convnet_bn", "convnet_nobn"):
        model = ConvNet(3, 10, width=0.1, batch_norm=name == "convnet_bn")
        _randomize_bn(model, 1)
        x = torch.randn(36, 3, side, side)
        layers = ["relu9", "relu10", "relu11"]
    else:  # torchvision ResNet-18: not Sequential, hooks on a few modules called once per pass
        model = torchvision.models.resnet18(num_classes=10)
        _randomize_bn(model, 2)
        x = torch.randn(16, 3, 32, 32)
        layers = ["relu", "layer3.1.bn2", "layer4.0.conv2", "avgpool"]
    model.eval()
    with torch.no_grad():  # labels the model mostly gets right, so accuracy is informative
        y = model(x).argmax(1)
        flip = torch.rand(len(y)) < 0.3
        y[flip] = torch.randint(0, 10, (int(flip.sum()),))
    return model, x, y, layers


def _check_rows(curve, ref):
    assert len(curve) == len(ref)
    for row, (o, k, loss, acc) in zip(curve.itertuples(), ref):
        assert (row.ordering, row.n_ablated) == (o, k)
        assert row.loss == pytest.approx(loss, abs=TOL), (o, k)
        assert row.accuracy == pytest.approx(acc, abs=TOL), (o, k)


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("family", ["mlp", "convnet_bn", "convnet_nobn", "resnet18"])
def test_cumulative_curves_equal_reference(family, mode):
    model, x, y, layers = _family(family)
    moments = activation_moments(model, x, layers) if mode == "mean" else None
    n_orderings, n_points = (3, 6) if family != "resnet18" else (2, 4)
    curve = cumulative_ablation_curve(model, x, y, layers, n_orderings=n_orderings, n_points=n_points, seed=5,
                                      mode=mode, moments=moments, options=EngineOptions(chunk_size=64, max_rows=700))
    sizes = layer_sizes(model, layers, x)
    orders = random_orderings(sum(sizes.values()), n_orderings, 5)
    points = curve_points(sum(sizes.values()), n_points)
    fill = ablation_fill(mode, moments, layers) if mode == "mean" else None
    ref = reference_curve(model, x, y, sizes, orders, points, fill)
    _check_rows(curve, ref)
    # The curve really moves, so the comparison is not vacuous.
    assert curve.loss.max() - curve.loss.min() > 1e-3
    if mode == "zero":
        assert curve.accuracy.max() - curve.accuracy.min() > 0.1


def _stats_for(model, x, y, layers, method, mode="zero", moments=None, sets=None, **kw):
    sizes = layer_sizes(model, layers, x)
    keep = masks_from_sets(sets, sizes)
    pert = PerturbationBatch(len(sets), keep, ablation_fill(mode, moments, layers))
    stats = {}
    loss, acc = evaluate_perturbations(model, x, y, pert, options=EngineOptions(method=method, **kw), stats=stats)
    return loss.numpy(), acc.numpy(), stats


@pytest.mark.parametrize("family", ["mlp", "convnet_bn"])
def test_both_paths_equal_reference_on_arbitrary_masks(family):
    """Random, non-nested masks (so the engine mixes 'from full', 'from empty' and
    'from the previous mask'), masks that touch only later layers, and duplicates."""
    model, x, y, layers = _family(family)
    sizes = layer_sizes(model, layers, x)
    total, rng = sum(sizes.values()), np.random.default_rng(0)
    last_start = total - sizes[layers[-1]]
    sets = [rng.choice(total, rng.integers(0, total + 1), replace=False) for _ in range(12)]
    sets += [np.arange(last_start, total)[rng.random(total - last_start) < p] for p in (0.1, 0.5, 0.9)]
    sets += [np.array([last_start - 1]), np.array([total - 1]), sets[3], np.arange(total), np.array([], int)]
    moments = activation_moments(model, x, layers)
    for mode in ("zero", "mean"):
        fill = ablation_fill(mode, moments, layers) if mode == "mean" else None
        ref = [reference_ablation_eval(model, x, y, split_units(s, sizes), fill) for s in sets]
        for method in ("plan", "generic", "reference"):
            loss, acc, stats = _stats_for(model, x, y, layers, method, mode, moments, sets, chunk_size=40)
            assert stats["path"] == method
            if method != "reference":  # duplicates (one on purpose) are evaluated once
                assert stats["unique_perturbations"] == len({tuple(sorted(s)) for s in sets}) < len(sets)
            np.testing.assert_allclose(loss, [r[0] for r in ref], atol=TOL, rtol=0)
            np.testing.assert_allclose(acc, [r[1] for r in ref], atol=TOL, rtol=0)


@pytest.mark.parametrize("family,layers", [("mlp", ["relu2"]), ("convnet_bn", ["relu11"])])
def test_linear_readout_path_equals_reference(family, layers):
    """Only the layer that feeds the final Linear (ConvNet: through global average
    pooling) is ablated: the whole curve is the batched linear read-out."""
    model, x, y, _ = _family(family)
    for mode in ("zero", "mean"):
        moments = activation_moments(model, x, layers)
        curve = cumulative_ablation_curve(model, x, y, layers, n_orderings=2, n_points=6, seed=2, mode=mode,
                                          moments=moments, options=EngineOptions(chunk_size=64, max_rows=8))
        sizes = layer_sizes(model, layers, x)
        ref = reference_curve(model, x, y, sizes, random_orderings(sum(sizes.values()), 2, 2),
                              curve_points(sum(sizes.values()), 6),
                              ablation_fill(mode, moments, layers) if mode == "mean" else None)
        _check_rows(curve, ref)


@pytest.mark.parametrize("family", ["mlp", "convnet_bn"])
def test_single_unit_impact_equals_reference(family):
    model, x, y, _ = _family(family)
    layers = model.unit_layers if family == "mlp" else ["relu1", "relu10", "relu11"]
    df = single_unit_impact(model, x, y, layers, options=EngineOptions(chunk_size=64))
    base = reference_ablation_eval(model, x, y, {})
    assert df["base_loss"].iloc[0] == pytest.approx(base[0], abs=TOL)
    assert len(df) == sum(layer_sizes(model, layers, x).values())
    step = 1 if family == "mlp" else 4  # every unit of the MLP, every 4th feature map of the ConvNet
    for row in df.iloc[::step].itertuples():
        loss, acc = reference_ablation_eval(model, x, y, {row.layer: [row.unit]})
        assert row.loss == pytest.approx(loss, abs=TOL) and row.accuracy == pytest.approx(acc, abs=TOL)


def test_path_choice_and_flop_accounting():
    model, x, y, layers = _family("mlp")
    sets = [np.arange(k) for k in (0, 10, 20, 40, 72)]
    _, _, stats = _stats_for(model, x, y, layers, "auto", sets=sets)
    assert stats["path"] == "plan" and stats["flops_suffix"] > 0 and stats["flops_base"] > 0
    # The incremental first mixing stage costs far less than dense recomputation:
    # dense would be 4 masks x (fc2 + output) per example.
    dense = 4 * 2 * len(x) * (40 * 32 + 32 * 10)
    assert stats["flops_suffix"] < 0.6 * dense
    model_r, xr, yr, layers_r = _family("resnet18")
    _, _, stats = _stats_for(model_r, xr, yr, layers_r, "auto", sets=[np.array([0, 1])])
    assert stats["path"] == "generic" and "not an nn.Sequential" in stats["fallback_reason"]
    with pytest.raises(ValueError, match="channel plan does not apply"):
        _stats_for(model_r, xr, yr, layers_r, "plan", sets=[np.array([0, 1])])


def test_noise_takes_the_generic_path_and_is_deterministic():
    model, x, y, layers = _family("convnet_bn")
    std = {n: torch.full((3, c), 0.5) for n, c in layer_sizes(model, layers, x).items()}
    runs = []
    for _ in range(2):
        stats = {}
        runs.append(evaluate_perturbations(model, x, y, PerturbationBatch(3, noise_std=std), noise=NoiseSource(4),
                                           stats=stats, options=EngineOptions(chunk_size=32)))
        assert stats["path"] == "generic"
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_reference_method_noise_is_the_plain_definition():
    """method="reference" adds each perturbation's noise with a hook in a full forward
    pass: no noise gives the clean numbers, the same seed the same numbers, loss rises
    with the noise, and the engine's fast path adds the very same noise (equal to 1e-5)."""
    model, x, y, layers = _family("mlp")
    sizes = layer_sizes(model, layers, x)
    clean = reference_ablation_eval(model, x, y, {n: [] for n in layers})
    scales = [0.0, 0.5, 2.0]
    std = {n: torch.tensor([[s] * c for s in scales]) for n, c in sizes.items()}
    runs = [evaluate_perturbations(model, x, y, PerturbationBatch(3, noise_std=std),
                                   noise=NoiseSource(seed),
                                   options=EngineOptions(method="reference", chunk_size=64))
            for seed in (1, 1, 2)]
    assert torch.equal(runs[0][0], runs[1][0]) and not torch.equal(runs[0][0], runs[2][0])
    loss, acc = runs[0]
    assert float(loss[0]) == pytest.approx(clean[0], abs=TOL) and float(acc[0]) == pytest.approx(clean[1], abs=TOL)
    assert float(loss[0]) < float(loss[1]) < float(loss[2])
    engine = evaluate_perturbations(model, x, y, PerturbationBatch(3, noise_std=std),
                                    noise=NoiseSource(1), options=EngineOptions(chunk_size=48))
    np.testing.assert_allclose(engine[0].numpy(), loss.numpy(), atol=TOL)
    np.testing.assert_allclose(engine[1].numpy(), acc.numpy(), atol=TOL)


def test_reduced_precision_is_measured_against_fp32():
    model, x, y, layers = _family("mlp")
    sets = [np.arange(k) for k in (0, 20, 50)]
    loss32, acc32, _ = _stats_for(model, x, y, layers, "plan", sets=sets)
    loss16, acc16, stats = _stats_for(model, x, y, layers, "plan", sets=sets, precision="bf16")
    check = stats["precision_check"]
    assert check["precision"] == "bf16" and check["examples"] == len(x) and check["perturbations"] == 3
    assert 0 < check["max_abs_loss_diff"] < 0.05
    np.testing.assert_allclose(loss16, loss32, atol=0.05)
    with pytest.raises(PrecisionError, match="use precision fp32"):
        _stats_for(model, x, y, layers, "plan", sets=sets, precision="bf16", check_tol=0.0)
    with pytest.raises(ValueError, match="tf32 needs a CUDA device"):
        _stats_for(model, x, y, layers, "plan", sets=sets, precision="tf32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_cuda_matches_cpu(precision):
    model, x, y, layers = _family("convnet_bn")
    sets = [np.arange(k) for k in (0, 30, 90, 150)]
    loss_c, acc_c, _ = _stats_for(model, x, y, layers, "plan", sets=sets)
    loss_g, acc_g, _ = _stats_for(model.cuda(), x.cuda(), y.cuda(), layers, "plan", sets=sets, precision=precision)
    tol = TOL if precision == "fp32" else 0.02
    np.testing.assert_allclose(loss_g, loss_c, atol=tol)


def test_plan_handles_inplace_activations_and_other_stage_types():
    """A Sequential with in-place ReLUs, max-pooling, a Linear head without bias and
    LeakyReLU: the channel plan applies and equals the reference."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(12, 16, 3, padding=1), nn.LeakyReLU(0.1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10, bias=False)).eval()
    _randomize_bn(model, 4)
    x = torch.randn(30, 3, 8, 8)
    y = torch.randint(0, 10, (30,))
    layers = ["2", "4", "7"]
    sizes = layer_sizes(model, layers, x)
    rng = np.random.default_rng(1)
    sets = [rng.choice(36, k, replace=False) for k in (0, 5, 12, 20, 30, 36)] + [np.arange(20, 36)]
    loss, acc, stats = _stats_for(model, x, y, layers, "plan", sets=sets, chunk_size=16)
    ref = [reference_ablation_eval(model, x, y, split_units(s, sizes)) for s in sets]
    np.testing.assert_allclose(loss, [r[0] for r in ref], atol=TOL, rtol=0)
    np.testing.assert_allclose(acc, [r[1] for r in ref], atol=TOL, rtol=0)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_unit_major_linear_chain_through_batch_norm_gathers_and_deeper_layers(mode):
    """A deeper MLP whose chain after the first perturbed layer is unit-major (Linear ->
    BatchNorm1d -> in-place ReLU -> Linear restricted to the kept units of the perturbed
    LeakyReLU -> Linear without bias): cumulative curves and random masks equal the
    reference, with chunks that leave a one-example remainder (a (1, C) tensor, which is
    not treated as unit-major)."""
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(20, 24), nn.ReLU(), nn.Linear(24, 18), nn.BatchNorm1d(18), nn.ReLU(inplace=True),
        nn.Linear(18, 16), nn.LeakyReLU(0.1), nn.Linear(16, 10, bias=False)).eval()
    bn = model[4]
    g = torch.Generator().manual_seed(6)
    bn.running_mean.copy_(torch.randn(18, generator=g) * 0.2)
    bn.running_var.copy_(torch.rand(18, generator=g) + 0.5)
    bn.weight.data.copy_(torch.rand(18, generator=g) + 0.5)
    bn.bias.data.copy_(torch.randn(18, generator=g) * 0.2)
    x = torch.randn(41, 20)
    y = torch.randint(0, 10, (41,))
    layers = ["2", "7"]
    sizes = layer_sizes(model, layers, x)
    total = sum(sizes.values())
    rng = np.random.default_rng(2)
    order = rng.permutation(total)
    sets = [order[:k] for k in (0, 3, 9, 17, 26, 33, total)]
    sets += [rng.choice(total, k, replace=False) for k in (4, 20, 35)] + [np.arange(24, total)]
    moments = activation_moments(model, x, layers) if mode == "mean" else None
    loss, acc, stats = _stats_for(model, x, y, layers, "plan", mode=mode, moments=moments, sets=sets, chunk_size=20)
    assert stats["path"] == "plan"
    fill = ablation_fill(mode, moments, layers) if mode == "mean" else None
    ref = [reference_ablation_eval(model, x, y, split_units(s, sizes), fill) for s in sets]
    np.testing.assert_allclose(loss, [r[0] for r in ref], atol=TOL, rtol=0)
    np.testing.assert_allclose(acc, [r[1] for r in ref], atol=TOL, rtol=0)


@pytest.mark.parametrize("topk", [1, 3])
def test_class_major_scores_equal_cross_entropy_and_topk(topk):
    """The engine's scorer equals F.cross_entropy and topk_correct, ties included (a
    fully ablated network gives every class the same logit: the first class wins)."""
    from singledir.engine.batch import class_major_scores, topk_correct
    torch.manual_seed(0)
    logits = torch.randn(3, 50, 10)
    logits[1] = 0.0  # all classes tie
    logits[2, :, 4] = logits[2, :, 7]  # pairwise ties
    y = torch.randint(0, 10, (50,))
    y[:5] = 0
    loss, hit = class_major_scores(logits, y, topk)
    ref = torch.nn.functional.cross_entropy(logits.reshape(150, 10), y.repeat(3), reduction="none").view(3, 50)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=0)
    yr = y.unsqueeze(0).expand(3, 50)
    assert torch.equal(hit, topk_correct(logits, yr, topk))
    if topk == 1:
        assert hit[1, :5].all() and not hit[1][y != 0].any()


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("into", [False, True])
def test_select_channels_equals_index_select(layout, into):
    """The engine's channel gather (a column gather for channels-last maps) gives exactly
    ``index_select(1, idx)``, in the layout the engine's buffers use, into a buffer or not."""
    from singledir.engine.clamp_stages import select_channels
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(7, 12, 4, 4).contiguous(memory_format=fmt)
    idx = torch.tensor([11, 0, 5, 5, 3])
    out = (torch.full((7, 5, 4, 4), float("nan")).contiguous(memory_format=fmt) if into else None)
    got = select_channels(x, idx, out=out)
    assert torch.equal(got, x.index_select(1, idx))
    if into:
        assert got.data_ptr() == out.data_ptr()
    one = torch.randn(3, 6, 1, 1).contiguous(memory_format=torch.channels_last)  # both layouts at once
    assert torch.equal(select_channels(one, idx[1:3]), one.index_select(1, idx[1:3]))
