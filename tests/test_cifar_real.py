"""Real data: a CIFAR-10 subset (../shared/data/cifar10_jpeg_12k.npz) through the npz source.

A small-width 11-layer ConvNet trained on clean labels relies less on the feature maps of
its last three layers (higher normalized ablation AUC) than one trained to memorize fully
shuffled labels (paper Fig. 1b)."""
import pytest
import torch

from conftest import shared_file
from singledir.ablation import cumulative_ablation_curve, curve_aucs
from singledir.corruption import corrupt_labels
from singledir.data import load_dataset, to_tensors
from singledir.models import build_model, resolve_layers
from singledir.training import TrainConfig, train


@pytest.mark.slow
def test_clean_convnet_has_higher_auc_than_shuffled(tmp_path):
    path = shared_file("cifar10_jpeg_12k.npz")
    # 400 of the 10,000 training images keep this under a minute on one CPU core.
    data = load_dataset({"source": "npz", "path": str(path), "train_limit": 400})
    assert data.x_train.shape == (400, 3, 32, 32) and data.x_test.shape[1:] == (3, 32, 32)
    data.x_test, data.y_test = data.x_test[:200], data.y_test[:200]
    aucs, fits = {}, {}
    for fraction in (0.0, 1.0):
        labels, _ = corrupt_labels(data.y_train, fraction, seed=0)
        t = to_tensors(data, labels)
        torch.manual_seed(0)
        model = build_model({"arch": "convnet", "width": 0.0625, "batch_norm": True}, (3, 32, 32), 10)
        cfg = TrainConfig.from_dict({"epochs": 30, "batch_size": 32, "optimizer": "adam", "lr": 1e-3, "seed": 0,
                                     "checkpoint_every": 30, "augment": False})
        hist, _ = train(model, t, cfg, tmp_path / f"f{fraction}", log=lambda *_: None)
        fits[fraction] = hist["train_accuracy"].iloc[-1]
        curve = cumulative_ablation_curve(model, t.x_train, t.y_train, resolve_layers(model, -3), n_orderings=5,
                                          n_points=11, seed=0)
        aucs[fraction] = curve_aucs(curve)["auc"].values
    print(f"real CIFAR-10 subset: train accuracy clean {fits[0.0]:.3f}, shuffled {fits[1.0]:.3f}; normalized AUC "
          f"clean {aucs[0.0].mean():.3f} +/- {aucs[0.0].std():.3f}, shuffled {aucs[1.0].mean():.3f} +/- "
          f"{aucs[1.0].std():.3f}")
    assert fits[0.0] > 0.9 and fits[1.0] > 0.6  # both nets (largely) fit the labels they were trained on
    assert aucs[0.0].min() > aucs[1.0].max()
