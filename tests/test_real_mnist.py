"""Real data: MNIST (the official 10k test split from ../shared) through the npz source.

A clean-label MLP relies less on single directions (higher normalized ablation AUC)
than one trained to memorize fully shuffled labels (paper Fig. 1a)."""
import numpy as np
import pytest
import torch

from conftest import shared_file
from singledir.ablation import cumulative_ablation_curve, curve_aucs
from singledir.corruption import corrupt_labels
from singledir.data import load_dataset, to_tensors
from singledir.models import MLP
from singledir.training import TrainConfig, train


@pytest.mark.slow
def test_clean_mlp_has_higher_auc_than_shuffled(tmp_path):
    path = shared_file("mnist_t10k.npz")
    data = load_dataset({"source": "npz", "path": str(path), "test_fraction": 0.2, "split_seed": 0,
                         "train_limit": 1000})
    assert data.x_train.shape == (1000, 1, 28, 28)
    aucs = {}
    for fraction in (0.0, 1.0):
        labels, _ = corrupt_labels(data.y_train, fraction, seed=0)
        t = to_tensors(data, labels)
        torch.manual_seed(0)
        model = MLP(784, [256, 256], 10)
        cfg = TrainConfig.from_dict({"epochs": 80, "batch_size": 100, "optimizer": "adam", "lr": 1e-3, "seed": 0,
                                     "checkpoint_every": 80})
        hist, _ = train(model, t, cfg, tmp_path / f"f{fraction}", log=lambda *_: None)
        assert hist["train_accuracy"].iloc[-1] > 0.9  # both nets fit their training labels
        curve = cumulative_ablation_curve(model, t.x_train, t.y_train, ["relu1", "relu2"], n_orderings=5,
                                          n_points=21, seed=0)
        aucs[fraction] = curve_aucs(curve)["auc"].values
    print(f"real MNIST normalized AUC: clean {aucs[0.0].mean():.3f} +/- {aucs[0.0].std():.3f}, "
          f"shuffled {aucs[1.0].mean():.3f} +/- {aucs[1.0].std():.3f}")
    assert aucs[0.0].min() > aucs[1.0].max()
