import numpy as np
import pytest

from singledir.data import DataError, load_dataset, load_prepared, save_prepared, to_tensors


def test_sklearn_digits_split_is_stratified_and_seeded():
    d = load_dataset({"source": "sklearn_digits", "test_fraction": 0.25, "split_seed": 0})
    assert d.x_train.dtype == np.uint8 and d.x_train.shape[1:] == (1, 8, 8)
    assert len(d.x_train) + len(d.x_test) == 1797
    assert set(np.unique(d.y_test)) == set(range(10))
    assert abs(len(d.x_test) / 1797 - 0.25) < 0.01
    again = load_dataset({"source": "sklearn_digits", "test_fraction": 0.25, "split_seed": 0})
    assert np.array_equal(d.y_train, again.y_train)


def test_digits_colour_stand_in():
    d = load_dataset({"source": "sklearn_digits", "channels": 3, "upsample": 2})
    assert d.x_train.shape[1:] == (3, 16, 16)


def test_npz_with_explicit_splits(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "d.npz"
    np.savez(p, x_train=rng.integers(0, 255, (20, 4, 4, 3), dtype=np.uint8), y_train=np.arange(20) % 4,
             x_test=rng.integers(0, 255, (8, 4, 4, 3), dtype=np.uint8), y_test=np.arange(8) % 4)
    d = load_dataset({"source": "npz", "path": str(p)})
    assert d.x_train.shape == (20, 3, 4, 4) and d.n_classes == 4  # NHWC -> NCHW


def test_npz_single_split_and_roundtrip(tmp_path):
    p = tmp_path / "one.npz"
    np.savez(p, x=np.zeros((50, 6, 6), np.uint8), y=np.arange(50) % 5)
    d = load_dataset({"source": "npz", "path": str(p), "test_fraction": 0.2})
    assert len(d.x_test) == 10 and d.x_train.shape[1:] == (1, 6, 6)
    save_prepared(d, tmp_path / "prep.npz")
    back = load_prepared(tmp_path / "prep.npz")
    assert np.array_equal(back.x_train, d.x_train) and back.n_classes == 5


def test_missing_npz_names_the_path(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(DataError, match=f"dataset.path: npz file not found: {missing}"):
        load_dataset({"source": "npz", "path": str(missing)})


def test_unknown_source():
    with pytest.raises(DataError, match="dataset.source: unknown source 'ftp'"):
        load_dataset({"source": "ftp"})


def test_torchvision_missing_data_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"dataset.root: MNIST not found under .*download: true"):
        load_dataset({"source": "torchvision", "name": "MNIST", "root": str(tmp_path), "download": False})


def test_normalization_uses_training_statistics_and_keeps_test_labels():
    d = load_dataset({"source": "sklearn_digits"})
    fake = (d.y_train + 1) % 10
    t = to_tensors(d, fake)
    assert abs(float(t.x_train.mean())) < 1e-4 and abs(float(t.x_train.std()) - 1) < 1e-2
    assert np.array_equal(t.y_train.numpy(), fake)
    assert np.array_equal(t.y_test.numpy(), d.y_test)
