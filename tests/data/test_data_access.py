"""singledir.data.access on the in-memory form (dataset.npz); the image form is tested in
tests/data/test_image_folders.py (test_analysis_data_of_an_image_index_is_the_recorded_subset)."""
import numpy as np
import pytest
import torch

from singledir.data.access import ARRAYS, data_form, eval_subset, open_analysis_data, training_targets
from singledir.data.sources import load_dataset, save_prepared
from singledir.models.activations import collect_activations
from singledir.models.api import build_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    data = load_dataset({"source": "sklearn_digits", "test_fraction": 0.25, "split_seed": 0})
    save_prepared(data, tmp / "dataset.npz")
    labels = (data.y_train + 3) % 10
    np.savez(tmp / "labels.npz", labels=labels)
    return {"dataset": str(tmp / "dataset.npz"), "labels": str(tmp / "labels.npz")}, data, labels


def test_arrays_give_the_training_set_with_the_trained_labels_and_the_test_set(files):
    inputs, raw, labels = files
    assert data_form({"source": "sklearn_digits"}) == ARRAYS
    assert np.array_equal(training_targets(inputs["dataset"]), raw.y_train)
    data = open_analysis_data(inputs, "cpu")
    x_all, y_all = data.all_training_examples()
    assert len(x_all) == len(raw.y_train) and np.array_equal(y_all.numpy(), labels)
    x, y = data.training_examples(eval_examples=50, seed=4)
    sub = eval_subset(len(x_all), 50, 4)
    assert torch.equal(x, x_all[sub]) and torch.equal(y, y_all[sub])
    assert data.training_examples(0, 4)[0] is x_all  # 0 = every example
    x_imp, y_imp = data.impact_examples()
    assert np.array_equal(y_imp.numpy(), raw.y_test) and data.n_classes == 10
    model = build_model({"arch": "mlp", "hidden": [8]}, (1, 8, 8), 10).eval()
    acts, y_test = data.test_activations(model, ["relu1"], 64, "cpu")
    assert np.array_equal(acts["relu1"], collect_activations(model, x_imp, ["relu1"], chunk_size=64)[0]["relu1"].numpy())
    assert np.array_equal(y_test, raw.y_test)
