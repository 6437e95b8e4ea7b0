import pytest
import torch

from singledir.models.api import (MODEL_KEYS, ModelFileError, build_model, load_trained, save_trained, unit_layers,
                                  unit_weights)
from singledir.models.nets import MLP, ConvNet, resolve_layers


def test_mlp_structure():
    m = MLP(64, [32, 16], 10, dropout=0.2)
    assert m.unit_layers == ["relu1", "relu2"]
    assert m(torch.zeros(5, 1, 8, 8)).shape == (5, 10)
    assert isinstance(m.dropout1, torch.nn.Dropout) and m.dropout1.p == 0.2
    assert unit_weights(m, "relu2").shape == (16, 32)


def test_convnet_paper_shapes_and_strides():
    m = ConvNet(3, 10, width=1.0)
    convs = [m.get_submodule(f"conv{i}") for i in range(1, 12)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1]
    assert all(c.kernel_size == (3, 3) for c in convs)
    sizes = {}
    for i in range(1, 12):
        m.get_submodule(f"relu{i}").register_forward_hook(lambda mod, a, o, i=i: sizes.__setitem__(i, tuple(o.shape[1:])))
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sizes[1] == (64, 32, 32) and sizes[3] == (128, 16, 16) and sizes[6] == (256, 8, 8) and sizes[11] == (512, 4, 4)


def test_convnet_width_and_batchnorm_switch():
    m = ConvNet(3, 10, width=0.125, batch_norm=False)
    assert m.conv1.out_channels == 8 and m.conv11.out_channels == 64
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert m.conv1.bias is not None
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in ConvNet(3, 10, width=0.125).modules())


def test_resolve_layers():
    m = build_model({"arch": "convnet", "width": 0.125}, (3, 16, 16), 10)
    assert resolve_layers(m, -3) == ["relu9", "relu10", "relu11"]
    assert len(resolve_layers(m, "all")) == 11
    with pytest.raises(ValueError, match="unknown layer 'relu99'"):
        resolve_layers(m, ["relu99"])
    with pytest.raises(ValueError, match="unknown architecture 'vit'"):
        build_model({"arch": "vit"}, (3, 8, 8), 10)


# --- singledir.models.api: one model API for every family ---------------------------------


def test_build_model_dispatches_on_the_architecture():
    mlp = build_model({"arch": "mlp", "hidden": [8, 4]}, (1, 8, 8), 10)
    assert isinstance(mlp, MLP) and mlp.unit_layers == ["relu1", "relu2"]
    net = build_model({"arch": "torchvision", "name": "resnet18", "width": 0.125, "weights": None}, (3, 16, 16), 5)
    assert len(net.unit_layers) == 17 and net.fc.out_features == 5
    with pytest.raises(ValueError, match="unknown architecture 'vit'"):
        build_model({"arch": "vit"}, (3, 8, 8), 10)


@pytest.mark.parametrize("model_cfg, in_shape", [
    ({"arch": "mlp", "hidden": [8, 4], "dropout": 0.5}, (1, 8, 8)),
    ({"arch": "convnet", "width": 0.0625}, (3, 8, 8)),
    ({"arch": "torchvision", "name": "resnet18", "width": 0.125, "weights": None}, (3, 16, 16)),
])
def test_save_and_load_trained_round_trip_every_family(tmp_path, model_cfg, in_shape):
    torch.manual_seed(0)
    model = build_model(model_cfg, in_shape, 5).eval()
    early = {k: torch.zeros_like(v) if v.is_floating_point() else v.clone() for k, v in model.state_dict().items()}
    spec = {"id": "m", "model": model_cfg}
    path = tmp_path / "model.pt"
    save_trained(path, spec, in_shape, 5, model.state_dict(), snapshots={3: early})
    state = torch.load(path, weights_only=False)
    assert tuple(state) == MODEL_KEYS and state["in_shape"] == tuple(in_shape) and state["n_classes"] == 5
    loaded, state = load_trained(path)
    x = torch.randn(4, *in_shape)
    assert not loaded.training and torch.equal(loaded(x), model(x))
    snap, _ = load_trained(path, snapshot=3)
    assert all(torch.equal(v, early[k]) for k, v in snap.state_dict().items())


def test_load_trained_names_the_file_and_the_command_that_retrains_it(tmp_path):
    path = tmp_path / "model.pt"
    save_trained(path, {"id": "m", "model": {"arch": "mlp", "hidden": [4]}}, (1, 2, 2), 3,
                 build_model({"arch": "mlp", "hidden": [4]}, (1, 2, 2), 3).state_dict())
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(ModelFileError, match=rf"{path} does not load \(.*`--forcerun {path}`"):
        load_trained(path)
    torch.save({"spec": {"model": {"arch": "mlp", "hidden": [4]}}, "n_classes": 3, "image_size": 2,
                "state_dict": {}}, path)  # not the one schema
    with pytest.raises(ModelFileError, match=r"no \['in_shape', 'snapshots'\]"):
        load_trained(path)


def test_unit_layers_and_unit_weights_for_sequential_nets():
    m = build_model({"arch": "mlp", "hidden": [8, 6], "dropout": 0.2}, (1, 4, 4), 3)
    x = torch.zeros(1, 1, 4, 4)
    assert unit_layers(m, "all", x) == ["relu1", "relu2"] and unit_layers(m, -1, x) == ["relu2"]
    assert torch.equal(unit_weights(m, "relu2"), m.fc2.weight)  # the linear stage that feeds it
    assert unit_weights(m, "relu1").shape == (8, 16)
    c = build_model({"arch": "convnet", "width": 0.0625, "batch_norm": True}, (3, 8, 8), 3)
    assert torch.equal(unit_weights(c, "relu3"), c.conv3.weight)  # through the batch norm
    with pytest.raises(ValueError, match="unknown layer 'relu9'"):
        unit_layers(m, ["relu9"], x)
