import numpy as np
import pytest
import torch

from singledir.analysis.auc import curve_aucs, normalized_auc
from singledir.engine.ablation import (cumulative_ablation_curve, curve_points, layer_sizes, random_orderings,
                                reference_ablation_eval, single_unit_impact)
from singledir.models.nets import MLP, ConvNet
from singledir.engine.options import EngineOptions
from singledir.models.activations import activation_moments


@pytest.fixture
def mlp_data():
    torch.manual_seed(0)
    model = MLP(64, [24, 16], 10).eval()
    x = torch.randn(200, 1, 8, 8)
    y = torch.randint(0, 10, (200,))
    return model, x, y


def _split_units(units, sizes):
    out, start = {}, 0
    for name, c in sizes.items():
        out[name] = [int(u) - start for u in units if start <= u < start + c]
        start += c
    return out


def test_zeroing_a_unit_equals_removing_its_outgoing_weights(mlp_data):
    model, x, y = mlp_data
    loss, acc = reference_ablation_eval(model, x, y, {"relu1": [3, 7]})
    pruned = MLP(64, [24, 16], 10)
    pruned.load_state_dict(model.state_dict())
    with torch.no_grad():
        pruned.fc2.weight[:, [3, 7]] = 0
    pl, pa = reference_ablation_eval(pruned, x, y, {})
    assert loss == pytest.approx(pl, abs=1e-6) and acc == pa
    # And the engine agrees with both.
    curve = single_unit_impact(model, x, y, ["relu1", "relu2"])
    assert curve.loc[(curve.layer == "relu1") & (curve.unit == 3), "loss"].item() == pytest.approx(
        reference_ablation_eval(model, x, y, {"relu1": [3]})[0], abs=1e-5)


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("arch", ["mlp", "convnet"])
def test_engine_equals_reference(mode, arch, mlp_data):
    if arch == "mlp":
        model, x, y = mlp_data
        layers = ["relu1", "relu2"]
    else:
        torch.manual_seed(1)
        model = ConvNet(3, 10, width=0.1).eval()
        x, y = torch.randn(60, 3, 16, 16), torch.randint(0, 10, (60,))
        layers = ["relu9", "relu10", "relu11"]
    moments = activation_moments(model, x, layers)
    curve = cumulative_ablation_curve(model, x, y, layers, n_orderings=2, n_points=5, seed=3, mode=mode,
                                      moments=moments, options=EngineOptions(chunk_size=37, max_rows=300))
    sizes = layer_sizes(model, layers, x)
    orders = random_orderings(sum(sizes.values()), 2, 3)
    fill = None if mode == "zero" else {n: moments[n]["mean"] for n in layers}
    for row in curve.itertuples():
        units = _split_units(orders[row.ordering, :row.n_ablated], sizes)
        loss, acc = reference_ablation_eval(model, x, y, units, fill)
        assert row.loss == pytest.approx(loss, abs=1e-5)
        assert row.accuracy == pytest.approx(acc, abs=1e-9)


def test_curve_shape_and_endpoints(mlp_data):
    model, x, y = mlp_data
    curve = cumulative_ablation_curve(model, x, y, ["relu1", "relu2"], n_orderings=4, n_points=11, seed=0)
    assert list(curve.columns) == ["ordering", "n_ablated", "fraction", "accuracy", "loss"]
    assert len(curve) == 44
    assert curve.groupby("ordering")["n_ablated"].agg(["min", "max"]).values.tolist() == [[0, 40]] * 4
    # Nothing ablated: the same accuracy for every ordering; everything ablated: a constant output.
    start = curve[curve.n_ablated == 0]["accuracy"]
    assert start.nunique() == 1
    end = curve[curve.n_ablated == 40]["accuracy"]
    assert end.nunique() == 1


def test_curve_points_and_orderings():
    assert curve_points(100, 21).tolist() == list(range(0, 101, 5))
    assert curve_points(3, 21).tolist() == [0, 1, 2, 3]
    o = random_orderings(10, 3, 0)
    assert o.shape == (3, 10) and all(sorted(r) == list(range(10)) for r in o)
    assert np.array_equal(o, random_orderings(10, 3, 0))


def test_normalized_auc_known_values():
    f = np.linspace(0, 1, 11)
    assert normalized_auc(f, np.full(11, 0.9)) == pytest.approx(1.0)  # never drops
    assert normalized_auc(f, 1 - f) == pytest.approx(0.5)  # straight line to zero
    assert normalized_auc(f, np.where(f == 0, 1.0, 0.0)) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="from fraction 0 to fraction 1"):
        normalized_auc(f[1:], f[1:])


def test_curve_aucs_per_ordering():
    import pandas as pd
    df = pd.DataFrame({"model": "m", "ordering": [0, 0, 1, 1], "n_ablated": [0, 2, 0, 2],
                       "fraction": [0.0, 1.0, 0.0, 1.0], "accuracy": [1.0, 1.0, 1.0, 0.0], "loss": 0.0})
    aucs = curve_aucs(df)
    assert aucs["auc"].tolist() == [1.0, 0.5] and aucs["model"].tolist() == ["m", "m"]
