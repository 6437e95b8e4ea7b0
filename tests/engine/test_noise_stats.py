import numpy as np
import pytest
import torch

from singledir.models.nets import MLP
from singledir.engine.noise import noise_curve
from singledir.engine.batch import PerturbationBatch, apply_perturbation
from singledir.engine.noise_source import NoiseSource
from singledir.models.activations import activation_moments
from singledir.stats.inference import bootstrap_ci, mean_ci, spearman


def test_noise_std_is_sqrt_scale_times_unit_std():
    out = torch.zeros(2 * 20000, 3)  # M=2 perturbations x B=20000 rows x 3 units
    std = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.5, 0.5]])
    noisy = apply_perturbation(out, "l", PerturbationBatch(2, noise_std={"l": std}), NoiseSource(0)).view(2, 20000, 3)
    assert noisy.std(1).numpy() == pytest.approx(std.numpy(), abs=0.02)


def test_noise_curve_uses_unit_variance_and_is_seeded():
    torch.manual_seed(0)
    m = MLP(16, [32, 32], 4).eval()
    x, y = torch.randn(300, 1, 4, 4), torch.randint(0, 4, (300,))
    mom = activation_moments(m, x, ["relu1", "relu2"])
    var = {n: v["var"] for n, v in mom.items()}
    a = noise_curve(m, x, y, ["relu1", "relu2"], var, [0.0, 0.1, 100.0], repeats=3, seed=1)
    b = noise_curve(m, x, y, ["relu1", "relu2"], var, [0.0, 0.1, 100.0], repeats=3, seed=1)
    assert a.equals(b) and len(a) == 9
    clean = a[a.scale == 0]
    assert clean["accuracy"].nunique() == 1  # scale 0 adds nothing
    assert a[a.scale == 100.0]["loss"].mean() > clean["loss"].mean()


def test_activation_moments_match_numpy():
    torch.manual_seed(0)
    m = MLP(16, [8], 3).eval()
    x = torch.randn(100, 1, 4, 4)
    mom = activation_moments(m, x, ["relu1"], chunk_size=7)
    acts = torch.relu(m.fc1(x.flatten(1))).detach().numpy()
    assert mom["relu1"]["mean"].numpy() == pytest.approx(acts.mean(0), abs=1e-5)
    assert mom["relu1"]["var"].numpy() == pytest.approx(acts.var(0), abs=1e-5)


def test_bootstrap_known_answer():
    # The bootstrap distribution of the mean of n iid values has std sigma/sqrt(n).
    rng = np.random.default_rng(0)
    v = rng.normal(0, 1, 400)
    lo, hi = bootstrap_ci(np.mean, v, n_boot=2000, seed=0)
    half = 1.96 * v.std() / np.sqrt(len(v))
    assert lo == pytest.approx(v.mean() - half, abs=0.02) and hi == pytest.approx(v.mean() + half, abs=0.02)
    r = mean_ci(v, n_boot=500)
    assert r["n"] == 400 and r["ci_low"] < r["value"] < r["ci_high"]


def test_spearman_with_ci():
    x = np.arange(50.0)
    r = spearman(x, x ** 3, n_boot=200)
    assert r["value"] == pytest.approx(1.0) and r["ci_low"] == pytest.approx(1.0) and r["p"] < 1e-10
    r = spearman(x, -x, n_boot=200)
    assert r["value"] == pytest.approx(-1.0)
