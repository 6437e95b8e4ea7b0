import pytest
import torch

from singledir.models.api import build_model, unit_weights
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
