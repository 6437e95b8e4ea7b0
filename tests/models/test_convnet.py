"""The CIFAR-10 ConvNet and its feature-map analyses: shapes and strides, a feature-map
ablation is exactly "zero (or clamp) that channel after its ReLU", batch norm runs on
its running statistics at analysis time, and selectivity averages each map over space."""
import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from singledir.engine.ablation import (cumulative_ablation_curve, evaluate_ablations, layer_sizes,
                                reference_ablation_eval, single_unit_impact)
from singledir.models.nets import CONVNET_CHANNELS, CONVNET_STRIDES, ConvNet, build_net, resolve_layers
from singledir.engine.options import EngineOptions
from singledir.engine.batch import PerturbationBatch
from singledir.models.activations import activation_moments, collect_activations
from singledir.engine.perturb import evaluate_perturbations
from singledir.analysis.selectivity import class_selectivity_index, mutual_information


# Small convolutions: one intra-op thread (conftest's fixture) is faster on busy CI cores.
pytestmark = pytest.mark.usefixtures("one_thread")


def _shapes(model, x):
    out = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, tuple(o.shape)))
             for n in model.unit_layers]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    return out, logits


def test_convnet_layers_channels_and_strides():
    model = ConvNet(3, 10, width=1.0).eval()
    assert model.unit_layers == [f"relu{i}" for i in range(1, 12)]
    shapes, logits = _shapes(model, torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    side = 32
    for i, (c, s) in enumerate(zip(CONVNET_CHANNELS, CONVNET_STRIDES), start=1):
        conv = getattr(model, f"conv{i}")
        assert conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.stride == (s, s)
        assert isinstance(getattr(model, f"bn{i}"), nn.BatchNorm2d)
        side = (side + 2 - 3) // s + 1
        assert shapes[f"relu{i}"] == (2, c, side, side)
    assert [shapes[f"relu{i}"][-1] for i in (1, 3, 6, 9, 11)] == [32, 16, 8, 4, 4]
    # The head: global average pooling, then one linear layer on the 512 maps of layer 11.
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d) and model.output.in_features == 512


def test_width_multiplier_and_batch_norm_switch():
    model = build_net({"arch": "convnet", "width": 0.125, "batch_norm": False}, (3, 16, 16), 10)
    widths = [getattr(model, f"conv{i}").out_channels for i in range(1, 12)]
    assert widths == [8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(getattr(model, f"conv{i}").bias is not None for i in range(1, 12))  # no BN: convs keep a bias
    assert resolve_layers(model, -3) == ["relu9", "relu10", "relu11"]
    shapes, _ = _shapes(model.eval(), torch.randn(1, 3, 16, 16))
    assert shapes["relu11"] == (1, 64, 2, 2)


def test_he_initialization_keeps_the_signal_scale_without_batch_norm():
    torch.manual_seed(0)
    model = ConvNet(3, 10, width=0.5, batch_norm=False).eval()
    w = model.conv10.weight
    fan_in = w.shape[1] * 9
    assert w.std().item() == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.03)
    shapes = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, o.pow(2).mean().item()))
             for n in ("relu1", "relu11")]
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))
    for h in hooks:
        h.remove()
    # PyTorch's default init would shrink the second moment ~6-fold per layer (1e-8 over 10 layers).
    assert 0.05 < shapes["relu11"] / shapes["relu1"] < 20


def _trained_like_convnet(batch_norm=True, seed=0):
    """A small ConvNet whose batch-norm running statistics are not the defaults."""
    torch.manual_seed(seed)
    model = ConvNet(3, 10, width=0.125, batch_norm=batch_norm)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(64, 3, 16, 16) * 1.5 + 0.3)
    return model.eval()


def _manual_forward(model, x, ablate: dict, fill: dict | None = None):
    """Run the stages one by one; after each listed ReLU overwrite its channels."""
    h = x
    for name, mod in model.named_children():
        h = mod(h)
        if name in ablate and len(ablate[name]):
            h = h.clone()
            idx = torch.as_tensor(ablate[name])
            h[:, idx] = 0.0 if fill is None else fill[name][idx]
    return h


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_feature_map_ablation_is_clamping_the_channel_after_its_relu(mode):
    model = _trained_like_convnet()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (96,), generator=g)
    layers = ["relu1", "relu5", "relu9", "relu11"]
    sizes = layer_sizes(model, layers, x)
    offsets = np.cumsum([0] + list(sizes.values()))[:-1]
    off = dict(zip(layers, offsets))
    moments = activation_moments(model, x, layers) if mode == "mean" else None
    fill = {n: moments[n]["mean"] for n in layers} if moments else None
    cases = [
        {},
        {"relu1": [0]},
        {"relu11": [3, 17, 63]},
        {"relu1": [1, 5], "relu5": [0, 2, 9], "relu9": [7], "relu11": list(range(0, 64, 3))},
    ]
    sets = [np.array([off[n] + u for n, us in c.items() for u in us], dtype=int) for c in cases]
    loss, acc = evaluate_ablations(model, x, y, sizes, sets, mode=mode, moments=moments,
                                   options=EngineOptions(chunk_size=40, max_rows=200))
    for i, case in enumerate(cases):
        ref_loss, ref_acc = reference_ablation_eval(model, x, y, case, fill=fill, batch_size=32)
        with torch.no_grad():
            logits = _manual_forward(model, x, case, fill)
        man_loss = F.cross_entropy(logits, y).item()
        man_acc = (logits.argmax(1) == y).double().mean().item()
        assert loss[i] == pytest.approx(ref_loss, abs=1e-5) and loss[i] == pytest.approx(man_loss, abs=1e-5)
        assert acc[i] == pytest.approx(ref_acc, abs=1e-9) and acc[i] == pytest.approx(man_acc, abs=1e-9)
    if mode == "mean":
        # The mean is per element of the map: it varies over space (not one scalar per channel).
        assert fill["relu1"].shape == (8, 16, 16) and fill["relu1"][0].std() > 0
    assert len(set(np.round(loss, 6))) == len(cases)  # every ablation changed the loss


def test_single_map_impact_and_curve_match_the_reference():
    model = _trained_like_convnet()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (50,), generator=g)
    imp = single_unit_impact(model, x, y, ["relu2", "relu10"])
    base, _ = reference_ablation_eval(model, x, y, {})
    for _, row in imp.sample(6, random_state=0).iterrows():
        ref, _ = reference_ablation_eval(model, x, y, {row["layer"]: [int(row["unit"])]})
        assert row["impact"] == pytest.approx(ref - base, abs=1e-5)
    curve = cumulative_ablation_curve(model, x, y, resolve_layers(model, -3), n_orderings=2, n_points=5, seed=0)
    full = curve[curve["n_ablated"] == curve["n_ablated"].max()]
    everything = {n: list(range(64)) for n in ("relu9", "relu10", "relu11")}
    ref_loss, ref_acc = reference_ablation_eval(model, x, y, everything)
    assert np.allclose(full["loss"], ref_loss, atol=1e-5) and np.allclose(full["accuracy"], ref_acc)


def test_analyses_use_batch_norm_running_statistics():
    model = _trained_like_convnet()
    model.train()  # as if a caller forgot to switch to eval mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (40,), generator=g)
    keep = {"relu11": torch.ones(1, 64)}
    loss, _ = evaluate_perturbations(model, x, y, PerturbationBatch(1, keep, {"relu11": None}),
                                     options=EngineOptions(chunk_size=16))
    assert model.training  # the caller's mode is restored
    for k, v in model.state_dict().items():  # running statistics untouched
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        eval_loss = F.cross_entropy(model.eval()(x), y).item()
        batch_loss = F.cross_entropy(model.train()(x), y).item()
    model.load_state_dict(before)
    assert loss[0].item() == pytest.approx(eval_loss, abs=1e-5)
    assert abs(batch_loss - eval_loss) > 1e-3  # batch statistics would give another answer
    acts, _ = collect_activations(model.train(), x, ["relu3"])
    with torch.no_grad():
        model.eval()
        h = x
        for name, mod in model.named_children():
            h = mod(h)
            if name == "relu3":
                break
    assert torch.allclose(acts["relu3"], h, atol=1e-6)


def test_selectivity_and_information_average_each_map_over_space():
    rng = np.random.default_rng(0)
    n, classes = 60, 3
    labels = np.repeat(np.arange(classes), n // classes)
    acts = np.zeros((n, 2, 4, 4))
    # Map 0: class 0 lights one pixel (mean 1/16), other classes are silent -> selectivity 1.
    acts[labels == 0, 0, 1, 2] = 1.0
    # Map 1: every class has the same spatial mean, in different places -> selectivity 0.
    for c in range(classes):
        acts[labels == c, 1, c, :] = 2.0
    sel = class_selectivity_index(acts, labels, classes)
    assert sel == pytest.approx([1.0, 0.0])
    # Equal to the index of the spatially averaged activity, for random maps too.
    noisy = rng.random((n, 5, 3, 3))
    assert np.allclose(class_selectivity_index(noisy, labels, classes),
                       class_selectivity_index(noisy.mean((2, 3)), labels, classes))
    assert np.allclose(mutual_information(noisy, labels, classes, n_bins=4),
                       mutual_information(noisy.mean((2, 3)), labels, classes, n_bins=4))
    assert mutual_information(acts, labels, classes, n_bins=4)[1] == pytest.approx(0.0, abs=1e-12)
