"""singledir.models.activations: the one activation collector, against plain forward passes."""
import pytest
import torch
from torch import nn

from singledir.models.activations import activation_moments, collect_activations, iter_activations
from singledir.models.nets import MLP


class _InPlaceAfter(nn.Module):
    """A layer whose output the model then changes in place (as a residual ``out += identity``)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 4)

    def forward(self, x):
        h = self.lin(x)
        h += 1.0
        return h


def test_collected_activations_equal_a_plain_forward_pass_in_any_batching():
    torch.manual_seed(0)
    model = MLP(64, [24, 16], 10).eval()
    x, y = torch.randn(23, 1, 8, 8), torch.arange(23) % 10
    with torch.no_grad():
        plain = model.relu2(model.fc2(model.relu1(model.fc1(x.flatten(1)))))
    acts, labels = collect_activations(model, x, ["relu1", "relu2"], chunk_size=5)
    assert labels is None and acts["relu2"].shape == (23, 16)
    torch.testing.assert_close(acts["relu2"], plain, rtol=0, atol=1e-6)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=7)
    from_loader, labels = collect_activations(model, loader, ["relu1", "relu2"])
    assert labels.tolist() == y.tolist()
    for name in ("relu1", "relu2"):
        torch.testing.assert_close(from_loader[name], acts[name], rtol=0, atol=1e-6)  # batch sizes differ


def test_reads_the_output_as_returned_before_later_in_place_changes():
    torch.manual_seed(1)
    model = _InPlaceAfter()
    x = torch.randn(9, 6)
    acts, _ = collect_activations(model, x, ["lin"], chunk_size=4)
    # the same chunks through the layer alone: bitwise (a 1-row product may round unlike a
    # 9-row one on some CPUs, so the reference is chunked as collect_activations chunks)
    expected = torch.cat([model.lin(x[i:i + 4]) for i in range(0, len(x), 4)]).detach()
    torch.testing.assert_close(acts["lin"], expected, rtol=0, atol=0)
    moments = activation_moments(model, x, ["lin"], chunk_size=4)
    torch.testing.assert_close(moments["lin"]["mean"], model.lin(x).detach().mean(0), rtol=1e-6, atol=1e-6)


def test_spatial_means_keep_one_value_per_map_and_mode_is_restored():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU()).train()
    x = torch.randn(6, 3, 7, 7)
    means, _ = collect_activations(model, x, ["1"], chunk_size=4, spatial=True)
    with torch.no_grad():
        plain = model.eval()(x).mean((2, 3))
    model.train()
    torch.testing.assert_close(means["1"], plain, rtol=1e-6, atol=1e-6)
    list(iter_activations(model, x, ["1"], chunk_size=4))
    assert model.training and not model[1]._forward_hooks  # hooks removed, caller's mode restored


def test_unknown_layer_is_one_error_naming_it():
    with pytest.raises(KeyError, match="'nope'"):
        collect_activations(nn.Sequential(nn.Linear(2, 2)), torch.zeros(1, 2), ["nope"])


class _Twice(nn.Module):
    """A layer called twice per forward pass (as a shared ReLU)."""

    def __init__(self):
        super().__init__()
        self.lin, self.act = nn.Linear(3, 3), nn.ReLU()

    def forward(self, x):
        return self.act(self.lin(self.act(x)))


def test_a_read_returning_a_tuple_is_joined_element_by_element_for_a_layer_called_twice():
    """The streamed unit analysis reads (means, sums, sizes) per layer; a layer that runs
    twice gives each element of the tuple concatenated along the batch."""
    torch.manual_seed(3)
    model = _Twice().eval()
    x = torch.randn(4, 3)
    [(acts, _)] = list(iter_activations(model, x, ["act"], read=lambda out: (out.clone(), out.sum(1))))
    first, second = torch.relu(x), torch.relu(model.lin(torch.relu(x))).detach()
    assert isinstance(acts["act"], tuple) and acts["act"][0].shape == (8, 3) and acts["act"][1].shape == (8,)
    torch.testing.assert_close(acts["act"][0], torch.cat([first, second]), rtol=0, atol=0)
    torch.testing.assert_close(acts["act"][1], torch.cat([first.sum(1), second.sum(1)]), rtol=0, atol=0)
