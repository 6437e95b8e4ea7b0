"""Noise draws are a function of (seed, layer, perturbation, example) only: a noise curve
does not change with the engine's chunk_size, max_rows, path or precision check, and the
noise has the specified standard deviation sqrt(scale) * std_u."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from singledir.models.activations import activation_moments
from singledir.engine.batch import PerturbationBatch, apply_perturbation
from singledir.engine.noise import noise_curve
from singledir.engine.noise_source import BLOCK_EXAMPLES, NoiseSource
from singledir.engine.options import EngineOptions
from singledir.engine.perturb import evaluate_perturbations
from singledir.engine.reference import reference_ablation_eval
from singledir.models.nets import MLP, ConvNet

TOL = 1e-5
SCALES = [0.0, 0.1, 1.0, 10.0]


def _mlp():
    torch.manual_seed(0)
    model = MLP(16, [32, 24], 5).eval()
    # More examples than one noise block, so chunks cross block boundaries.
    x = torch.randn(BLOCK_EXAMPLES + 90, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    layers = ["relu1", "relu2"]
    var = {n: m["var"] for n, m in activation_moments(model, x, layers).items()}
    return model, x, y, layers, var


class _Branchy(nn.Module):
    """Not an nn.Sequential: the engine runs it whole, with hooks on every noised layer."""

    def __init__(self):
        super().__init__()
        self.fc1, self.relu1 = nn.Linear(12, 20), nn.ReLU()
        self.fc2, self.relu2 = nn.Linear(20, 20), nn.ReLU()
        self.out = nn.Linear(40, 4)

    def forward(self, x):
        h1 = self.relu1(self.fc1(x.flatten(1)))
        h2 = self.relu2(self.fc2(h1))
        return self.out(torch.cat([h1, h2], 1))


def test_draw_is_indexed_by_perturbation_and_example():
    src, shape = NoiseSource(3), (4, 700, 2, 3)
    full = src.draw("l", [0, 1, 2, 3], 0, shape)
    assert full.shape == shape and full.dtype == torch.float32
    # Any example window and any subset of perturbations sees the same values.
    for start, stop in [(0, 7), (250, 262), (255, 513), (699, 700)]:
        part = src.draw("l", [2, 0], start, (2, stop - start, 2, 3))
        assert torch.equal(part, full[[2, 0], start:stop])
    # Layers, perturbations and seeds get independent draws.
    assert not torch.equal(src.draw("k", [0], 0, (1, 700, 2, 3)), full[:1])
    assert not torch.equal(full[0], full[1])
    assert not torch.equal(NoiseSource(4).draw("l", [0], 0, (1, 700, 2, 3)), full[:1])
    with pytest.raises(ValueError, match="2 perturbation indices for an activation of 3"):
        src.draw("l", [0, 1], 0, (3, 5))


def test_slices_and_subsets_keep_their_noise():
    std = {"l": torch.rand(5, 3) + 0.5}
    pert = PerturbationBatch(5, noise_std=std)
    out = torch.zeros(5 * 40, 3)
    full = apply_perturbation(out, "l", pert, NoiseSource(0), start=100).view(5, 40, 3)
    sub = apply_perturbation(torch.zeros(2 * 40, 3), "l", pert.select([4, 1]), NoiseSource(0), start=100)
    assert torch.equal(sub.view(2, 40, 3), full[[4, 1]])
    sl = apply_perturbation(torch.zeros(2 * 10, 3), "l", pert.slice(2, 4), NoiseSource(0), start=130)
    assert torch.equal(sl.view(2, 10, 3), full[2:4, 30:40])


@pytest.mark.parametrize("options", [EngineOptions(chunk_size=7), EngineOptions(chunk_size=64, max_rows=100),
                                     EngineOptions(chunk_size=10_000, max_rows=5), EngineOptions(max_rows=10**7),
                                     EngineOptions(method="reference", chunk_size=100)],
                         ids=["chunk7", "chunk64-rows100", "chunk10000-rows5", "rows-large", "reference"])
def test_noise_curve_does_not_depend_on_chunking_or_path(options):
    model, x, y, layers, var = _mlp()
    base = noise_curve(model, x, y, layers, var, SCALES, repeats=2, seed=3, options=EngineOptions())
    curve = noise_curve(model, x, y, layers, var, SCALES, repeats=2, seed=3, options=options)
    np.testing.assert_allclose(curve.loss, base.loss, atol=1e-6, rtol=0)
    np.testing.assert_allclose(curve.accuracy, base.accuracy, atol=1e-6, rtol=0)
    # The noise really acts, so the comparison is not vacuous.
    assert base.accuracy.iloc[0] == 1.0 and base.accuracy.iloc[-1] < 0.8


@pytest.mark.parametrize("family", ["convnet", "branchy"])
def test_generic_path_equals_reference_with_noise(family):
    torch.manual_seed(1)
    if family == "convnet":  # Sequential: the first noised layer is applied to the cached prefix
        model = ConvNet(3, 10, width=0.1).eval()
        x, layers = torch.randn(40, 3, 16, 16), ["relu9", "relu10", "relu11"]
    else:
        model = _Branchy().eval()
        x, layers = torch.randn(300, 12), ["relu1", "relu2"]
    with torch.no_grad():
        y = model(x).argmax(1)
    var = {n: m["var"] for n, m in activation_moments(model, x, layers).items()}
    generic = noise_curve(model, x, y, layers, var, SCALES, repeats=2, seed=5,
                          options=EngineOptions(method="generic", chunk_size=16, max_rows=50))
    reference = noise_curve(model, x, y, layers, var, SCALES, repeats=2, seed=5,
                            options=EngineOptions(method="reference", chunk_size=33))
    np.testing.assert_allclose(generic.loss, reference.loss, atol=TOL, rtol=0)
    np.testing.assert_allclose(generic.accuracy, reference.accuracy, atol=TOL, rtol=0)
    assert generic.loss.max() - generic.loss.min() > 1e-2


def test_seeds_differ_and_repeat():
    model, x, y, layers, var = _mlp()
    a, b, c = (noise_curve(model, x, y, layers, var, [1.0], repeats=3, seed=s) for s in (1, 1, 2))
    assert a.equals(b)
    assert not np.allclose(a.loss, c.loss)
    assert a.loss.nunique() == 3  # repeats are independent draws


def test_scale_zero_is_the_clean_model():
    model, x, y, layers, var = _mlp()
    curve = noise_curve(model, x, y, layers, var, [0.0, 1.0], repeats=2, seed=0, options=EngineOptions(chunk_size=50))
    loss, acc = reference_ablation_eval(model, x, y, {n: [] for n in layers})
    clean = curve[curve.scale == 0]
    np.testing.assert_allclose(clean.loss, loss, atol=TOL)
    np.testing.assert_allclose(clean.accuracy, acc, atol=TOL)
    assert acc == 1.0 and (curve[curve.scale == 1.0].accuracy < 1.0).all()


def test_noise_has_the_specified_standard_deviation():
    """A hand-built net whose noised layer is constant 1: what reaches the next stage
    minus 1 is the drawn noise, whose sample std must be sqrt(scale) * std_u."""
    n, unit_var, scales = 4000, torch.tensor([1.0, 4.0, 0.0, 0.25]), [0.0, 0.5, 2.0]
    fc = nn.Linear(1, 4)
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.fill_(1.0)
    model = nn.Sequential(OrderedDict(fc=fc, relu=nn.ReLU(), out=nn.Linear(4, 2))).eval()
    seen = []
    handle = model.out.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].clone()))
    try:
        noise_curve(model, torch.zeros(n, 1), torch.zeros(n, dtype=torch.long), ["relu"], {"relu": unit_var},
                    scales, repeats=1, seed=0, options=EngineOptions(chunk_size=n, max_rows=10 * n))
    finally:
        handle.remove()
    rows = seen[-1]  # the engine's one forward pass of M*n rows, perturbation-major
    assert rows.shape == (len(scales) * n, 4)
    noise = rows.view(len(scales), n, 4) - 1
    expected = np.sqrt(np.outer(scales, unit_var.numpy()))
    sample = noise.std(1).numpy()
    # Sampling error of a std over n draws: sigma / sqrt(2n) ~ 1.1%; allow 5 of them.
    np.testing.assert_allclose(sample, expected, rtol=5 / np.sqrt(2 * n), atol=1e-7)
    assert np.abs(noise.mean(1).numpy()).max() < 5 * np.sqrt(2.0 * 4.0 / n)


def test_precision_check_sees_the_same_noise():
    """The bf16 check re-evaluates a subset: with the same noise as fp32 it differs only
    by rounding, far less than two draws of the noise differ."""
    model, x, y, layers, var = _mlp()
    fp32 = noise_curve(model, x, y, layers, var, [10.0], repeats=4, seed=2)
    other_seed = noise_curve(model, x, y, layers, var, [10.0], repeats=4, seed=9)
    sizes = {n: v.numel() for n, v in var.items()}
    std = {n: (var[n].sqrt() * np.sqrt(10.0)).expand(4, sizes[n]) for n in layers}
    stats = {}
    loss, _ = evaluate_perturbations(model, x, y, PerturbationBatch(4, noise_std=std), noise=NoiseSource(2),
                                     options=EngineOptions(precision="bf16", check_examples=100, check_masks=2),
                                     stats=stats)
    check = stats["precision_check"]
    assert check["perturbations"] == 2 and check["examples"] == 100
    draw_gap = np.abs(fp32.loss.to_numpy() - other_seed.loss.to_numpy()).max()
    assert check["max_abs_loss_diff"] < 0.1 * draw_gap
    assert np.abs(loss.numpy() - fp32.loss.to_numpy()).max() < 0.1 * draw_gap


def test_noise_without_a_source_is_refused():
    model, x, y, layers, var = _mlp()
    pert = PerturbationBatch(1, noise_std={"relu1": torch.ones(1, 32)})
    with pytest.raises(ValueError, match=r"noise: .*'relu1'.*pass noise=NoiseSource\(seed\)"):
        evaluate_perturbations(model, x, y, pert)
