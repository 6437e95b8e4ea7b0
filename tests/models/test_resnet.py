"""Torchvision models with analysable unit layers (singledir.models.resnet)."""
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from singledir.engine.options import EngineOptions
from singledir.engine.ablation import evaluate_ablations, layer_sizes, reference_ablation_eval
from singledir.models.api import unit_layers, unit_weights
from singledir.models.resnet import (ModelError, build_torchvision, call_counts, check_unit_layers, make_analysable,
                                     unit_layer_names)


@pytest.fixture(scope="module")
def resnet50():
    torch.manual_seed(0)
    return build_torchvision({"arch": "torchvision", "name": "resnet50", "weights": None}, 1000).eval()


def test_resnet50_has_the_49_documented_unit_layers(resnet50):
    layers = resnet50.unit_layers
    expected = ["relu"] + [f"layer{s}.{b}.relu{k}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3))
                           for b in range(n) for k in (1, 2, 3)]
    assert layers == expected and len(layers) == 49
    modules = dict(resnet50.named_modules())
    assert all(isinstance(modules[n], nn.ReLU) and not modules[n].inplace for n in layers)
    assert len({id(modules[n]) for n in layers}) == 49  # 49 distinct modules
    x = torch.randn(2, 3, 64, 64)
    counts = call_counts(resnet50, x)
    assert all(counts[n] == 1 for n in layers)  # each hook fires once per forward pass
    # Same parameter names and the same function as torchvision's ResNet-50.
    ref = torchvision.models.resnet50()
    ref.load_state_dict(resnet50.state_dict())
    assert list(ref.state_dict()) == list(resnet50.state_dict())
    with torch.no_grad():
        assert torch.equal(ref.eval()(x), resnet50(x))
    # relu3 is the block's output: after the residual addition.
    seen = {}
    hooks = [resnet50.layer2[1].register_forward_hook(lambda m, i, o: seen.__setitem__("block", o)),
             resnet50.layer2[1].relu3.register_forward_hook(lambda m, i, o: seen.__setitem__("relu3", o))]
    with torch.no_grad():
        resnet50(x)
    for h in hooks:
        h.remove()
    assert seen["block"] is seen["relu3"]
    sizes = layer_sizes(resnet50, layers, x)
    assert sizes["relu"] == 64 and sizes["layer1.0.relu3"] == 256 and sizes["layer4.2.relu3"] == 2048
    assert sum(sizes.values()) == 22720  # feature maps analysed in Fig. 7d
    # The config check finds the same list without weights or compute.
    assert unit_layer_names({"arch": "torchvision", "name": "resnet50"}) == layers
    # Filter L1 norms use the convolution producing each unit.
    assert unit_weights(resnet50, "relu") is not None
    assert torch.equal(unit_weights(resnet50, "layer3.4.relu2"), resnet50.layer3[4].conv2.weight)
    assert torch.equal(unit_weights(resnet50, "layer1.0.relu3"), resnet50.layer1[0].conv3.weight)


def test_basic_block_resnets_and_scaled_widths():
    names = unit_layer_names({"name": "resnet18"})
    assert len(names) == 17 and names[1:3] == ["layer1.0.relu1", "layer1.0.relu2"]
    torch.manual_seed(0)
    narrow = build_torchvision({"name": "resnet50", "width": 1 / 16}, 10)
    assert narrow.unit_layers == unit_layer_names({"name": "resnet50"})
    sizes = layer_sizes(narrow, narrow.unit_layers, torch.zeros(1, 3, 32, 32))
    assert sizes["relu"] == 4 and sizes["layer4.2.relu3"] == 128 and narrow.fc.out_features == 10
    with pytest.raises(ModelError, match="not a torchvision classification model"):
        build_torchvision({"name": "resnet51"}, 10)


class _Reuses(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU()
        self.shared = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = self.shared(self.act(self.conv(x)))
        h = self.shared(h)  # the same module twice: a hook cannot tell the calls apart
        return self.fc(h.mean((2, 3)))


def test_other_models_use_relus_that_run_once():
    x = torch.randn(1, 3, 8, 8)
    model = make_analysable(_Reuses(), x)
    assert model.unit_layers == ["act"]
    with pytest.raises(ModelError, match="exactly once"):
        check_unit_layers(model, ["shared"], x)
    with pytest.raises(ModelError, match="exactly once"):
        unit_layers(model, ["act", "shared"], x)
    assert unit_layers(model, "all", x) == ["act"]


def test_pretrained_weights_mocked_only_at_the_download(monkeypatch, tmp_path):
    torch.manual_seed(123)
    published = torchvision.models.resnet18().state_dict()
    downloads = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        downloads.append(url)
        torch.save(published, dst)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = build_torchvision({"arch": "torchvision", "name": "resnet18", "weights": "IMAGENET1K_V1"}, 1000)
    assert downloads == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url]
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in published.items())
    assert len(model.unit_layers) == 17
    # The file is in torch's hub cache now: a second build downloads nothing.
    build_torchvision({"arch": "torchvision", "name": "resnet18", "weights": "IMAGENET1K_V1"}, 1000)
    assert len(downloads) == 1
    with pytest.raises(ModelError, match="1000 classes but the dataset has 10"):
        build_torchvision({"name": "resnet18", "weights": "IMAGENET1K_V1"}, 10)


def test_checkpoint_file_weights(tmp_path):
    torch.manual_seed(1)
    src = build_torchvision({"name": "resnet18", "width": 0.125}, 10)
    ours = tmp_path / "model.pt"
    torch.save({"spec": {}, "n_classes": 10, "state_dict": src.state_dict()}, ours)
    ddp = tmp_path / "ddp.pth"
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, ddp)
    for path in (ours, ddp):
        torch.manual_seed(2)
        loaded = build_torchvision({"name": "resnet18", "width": 0.125, "weights": str(path)}, 10)
        assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(ModelError, match="does not fit"):
        build_torchvision({"name": "resnet18", "width": 0.25, "weights": str(ours)}, 10)
    with pytest.raises(ModelError, match="neither a weights name"):
        build_torchvision({"name": "resnet18", "weights": str(tmp_path / "missing.pt")}, 10)


def test_engine_is_exact_on_the_resnet_wrapper():
    """The perturbation engine (full forward per perturbation batch for this non-Sequential
    model) against the plain hook definition, for ablations in several layers at once."""
    torch.manual_seed(0)
    model = build_torchvision({"name": "resnet50", "width": 1 / 16}, 10)
    x = torch.randn(48, 3, 32, 32)
    model.train()
    with torch.no_grad():  # non-trivial batch-norm running statistics
        for _ in range(3):
            model(x * 1.5 + 0.2)
    model.eval()
    with torch.no_grad():
        y = model(x).argsort(1, descending=True)[:, 3]  # labels ranked 4th: top-5 hits, top-1 misses
    layers = ["relu", "layer2.0.relu1", "layer3.5.relu3", "layer4.2.relu2", "layer4.2.relu3"]
    sizes = layer_sizes(model, layers, x)
    offsets = np.cumsum([0] + list(sizes.values()))
    rng = np.random.default_rng(0)
    sets = [np.array([], int), np.array([offsets[2] + 3]), np.arange(offsets[4], offsets[5]),
            rng.choice(offsets[-1], 60, replace=False), rng.choice(offsets[-1], 200, replace=False)]
    loss, acc = evaluate_ablations(model, x, y, sizes, sets, options=EngineOptions(chunk_size=20, max_rows=64, topk=5))
    for s, l, a in zip(sets, loss, acc):
        units = {n: [int(u) - offsets[i] for u in s if offsets[i] <= u < offsets[i + 1]]
                 for i, n in enumerate(sizes)}
        ref_loss, ref_acc = reference_ablation_eval(model, x, y, units, batch_size=16, topk=5)
        assert l == pytest.approx(ref_loss, abs=1e-5)
        assert a == ref_acc
    assert acc[0] > 0.9 and loss[4] != pytest.approx(loss[0])  # top-5 counted; ablations change the loss
