import numpy as np
import pytest

from singledir.data.sources import DataError, load_dataset, load_prepared, save_prepared, to_tensors


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


@pytest.mark.parametrize("name", ["MNIST", "CIFAR10"])
def test_a_slurm_job_never_downloads_and_names_the_login_node_data_step(tmp_path, monkeypatch, name):
    """On a compute node (inside a SLURM job) `download: true` is not acted on: the missing
    dataset stops the job with one line naming the root and the data step."""
    import torchvision

    asked = []
    real = getattr(torchvision.datasets, name)

    def recording(root, train=True, download=False, **kw):
        asked.append(download)
        return real(root, train=train, download=download, **kw)

    monkeypatch.setattr(torchvision.datasets, name, recording)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    empty = tmp_path / "data"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        load_dataset({"source": "torchvision", "name": name, "root": str(empty), "download": True})
    msg = str(err.value)
    assert msg.startswith(f"dataset.root: {name} is not in {empty}; run `snakemake --profile profiles/slurm data` "
                          "on the login node first"), msg
    assert "SLURM job 4242" in msg and "\n" not in msg
    assert asked == [False]  # torchvision was asked, without a download
    assert list(empty.iterdir()) == []


def test_outside_slurm_the_missing_dataset_error_names_the_data_step_too(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_JOBID", raising=False)
    with pytest.raises(DataError, match=r"dataset.root: CIFAR10 not found under .*download: true on a machine with "
                                        r"internet access \(on a cluster: `snakemake --profile profiles/slurm data`"):
        load_dataset({"source": "torchvision", "name": "CIFAR10", "root": str(tmp_path), "download": False})


def test_normalization_uses_training_statistics_and_keeps_test_labels():
    d = load_dataset({"source": "sklearn_digits"})
    fake = (d.y_train + 1) % 10
    t = to_tensors(d, fake)
    assert abs(float(t.x_train.mean())) < 1e-4 and abs(float(t.x_train.std()) - 1) < 1e-2
    assert np.array_equal(t.y_train.numpy(), fake)
    assert np.array_equal(t.y_test.numpy(), d.y_test)


# --- bad archives stop prepare_dataset with one error naming the file, the array and the fix

def _prepare(spec, tmp_path):
    """What rule prepare_dataset does: load (validating) and write dataset.npz."""
    save_prepared(load_dataset(spec), tmp_path / "dataset.npz")


def _digits_npz(path, **replace):
    d = load_dataset({"source": "sklearn_digits"})
    arrays = {"x_train": d.x_train, "y_train": d.y_train, "x_test": d.x_test, "y_test": d.y_test}
    arrays.update(replace)
    np.savez(path, **arrays)
    return {"source": "npz", "path": str(path)}


def test_nan_pixels_are_counted_and_named(tmp_path):
    x = load_dataset({"source": "sklearn_digits"}).x_train.astype(np.float32)
    x[3, 0, 2, 2] = np.nan
    x[7, 0, :3, 0] = np.nan
    x[9, 0, 0, 0] = np.inf
    spec = _digits_npz(tmp_path / "nan.npz", x_train=x)
    with pytest.raises(DataError) as err:
        _prepare(spec, tmp_path)
    msg = str(err.value)
    assert f"{tmp_path / 'nan.npz'}: array 'x_train' has 4 NaN and 1 infinite values" in msg
    assert "in 3 of" in msg and "np.nan_to_num" in msg
    assert not (tmp_path / "dataset.npz").exists()


def test_floats_scaled_to_unit_range_are_refused_not_rounded(tmp_path):
    x = load_dataset({"source": "sklearn_digits"}).x_test / 255.0
    with pytest.raises(DataError, match=r"array 'x_test' is float64 with values in 0\.\.1.*\* 255"):
        _prepare(_digits_npz(tmp_path / "unit.npz", x_test=x), tmp_path)
    with pytest.raises(DataError, match=r"array 'x_test' has values from -3.0 to .*must lie in 0\.\.255"):
        _prepare(_digits_npz(tmp_path / "neg.npz", x_test=x * 255 - 3), tmp_path)


def test_single_split_with_fewer_labels_than_images(tmp_path):
    d = load_dataset({"source": "sklearn_digits"})
    x = np.concatenate([d.x_train, d.x_test])
    y = np.concatenate([d.y_train, d.y_test])
    assert len(x) == 1797
    np.savez(tmp_path / "xy.npz", x=x, y=y[:1597])
    with pytest.raises(DataError) as err:
        _prepare({"source": "npz", "path": str(tmp_path / "xy.npz")}, tmp_path)
    assert str(err.value).startswith(f"dataset.path: {tmp_path / 'xy.npz'}: arrays 'x' and 'y' differ in length: "
                                     "1797 images but 1597 labels")
    assert not (tmp_path / "dataset.npz").exists()


def test_train_images_and_labels_differ_in_length(tmp_path):
    rng = np.random.default_rng(0)
    spec = _digits_npz(tmp_path / "tr.npz", x_train=rng.integers(0, 255, (1400, 8, 8), dtype=np.uint8),
                       y_train=np.arange(1300) % 10)
    with pytest.raises(DataError, match=r"tr\.npz: arrays 'x_train' and 'y_train' differ in length: 1400 images "
                                        "but 1300 labels"):
        _prepare(spec, tmp_path)


def test_labels_outside_the_classes(tmp_path):
    d = load_dataset({"source": "sklearn_digits"})
    neg = d.y_train.copy()
    neg[[4, 5]] = -1
    with pytest.raises(DataError, match=r"neg\.npz: array 'y_train' has 2 negative labels \(smallest -1\)"):
        _prepare(_digits_npz(tmp_path / "neg.npz", y_train=neg), tmp_path)
    big = d.y_test.copy()
    big[:3] = 12
    spec = _digits_npz(tmp_path / "big.npz", y_test=big)
    with pytest.raises(DataError, match=r"big\.npz: array 'y_test' has 3 labels >= dataset.n_classes = 10 "
                                        r"\(largest 12\); labels must be 0\.\.9"):
        _prepare(dict(spec, n_classes=10), tmp_path)
    # Without n_classes, a stray 12 would make a 13-class model: refused, asking for n_classes.
    big_train = d.y_train.copy()
    big_train[0] = 12
    spec = _digits_npz(tmp_path / "gap.npz", y_train=big_train)
    with pytest.raises(DataError, match=r"labels go up to 12 but classes \[10, 11\] never occur in the training "
                                        r"labels.*a model would get 13 outputs.*Set dataset.n_classes"):
        _prepare(spec, tmp_path)
    with pytest.raises(DataError, match="'y_train' has 1 labels >= dataset.n_classes = 10"):
        _prepare(dict(spec, n_classes=10), tmp_path)
    # n_classes larger than the labels need is the user's statement, and allowed.
    ok = load_dataset(dict(_digits_npz(tmp_path / "ok.npz"), n_classes=12))
    assert ok.n_classes == 12
    assert not (tmp_path / "dataset.npz").exists()


def test_fractional_labels_are_refused(tmp_path):
    d = load_dataset({"source": "sklearn_digits"})
    y = d.y_train.astype(float)
    y[0] = 2.5
    with pytest.raises(DataError, match="'y_train' has 1 labels that are not whole numbers"):
        _prepare(_digits_npz(tmp_path / "frac.npz", y_train=y), tmp_path)


def test_no_inconsistent_dataset_is_ever_written(tmp_path):
    d = load_dataset({"source": "sklearn_digits"})
    d.y_test = d.y_test.copy()
    d.y_test[0] = 10
    with pytest.raises(DataError, match=r"y_test has labels from 0 to 10, outside 0\.\.9"):
        save_prepared(d, tmp_path / "dataset.npz")
    d.y_test = d.y_test[1:]
    with pytest.raises(DataError, match="x_test has 359 images but y_test has 358 labels"):
        save_prepared(d, tmp_path / "dataset.npz")
    assert list(tmp_path.iterdir()) == []


# --- an npz replaced at the same path is noticed (its digest is a parameter of prepare_dataset)

def test_source_digest_changes_with_the_content_and_is_cached(tmp_path, monkeypatch):
    import hashlib
    import os

    from singledir.data.sources import file_sha256, with_source_digest

    p, cache = tmp_path / "src.npz", tmp_path / "cache" / "digests.json"
    spec = _digits_npz(p)
    first = with_source_digest(spec, cache)
    assert first["content_sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert spec.get("content_sha256") is None  # the config is not modified
    reads = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a, **k: reads.append(1) or real(*a, **k))
    assert with_source_digest(spec, cache) == first and reads == []  # unchanged file: a stat, no read
    os.utime(p)  # touched, same content: read again, same digest
    assert with_source_digest(spec, cache) == first and len(reads) == 1
    # Replaced at the same path with other content and the old modification time (cp -p):
    st = p.stat()
    d = load_dataset({"source": "sklearn_digits"})
    _digits_npz(p, y_test=(d.y_test + 1) % 10)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = with_source_digest(spec, cache)
    assert second["content_sha256"] != first["content_sha256"] and len(reads) == 2
    assert with_source_digest({"source": "sklearn_digits"}, cache) == {"source": "sklearn_digits"}
    # The job checks that the file it reads is the one the workflow planned with.
    with pytest.raises(DataError, match="changed after the workflow planned this job"):
        load_dataset(first)
    assert load_dataset(second).n_classes == 10
    assert file_sha256(p) == second["content_sha256"]
