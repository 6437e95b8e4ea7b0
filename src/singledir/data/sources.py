"""Dataset sources behind one interface.

Every source returns an :class:`ImageData`: uint8 images as (N, C, H, W) and integer
labels, split into train and test. Sources (``dataset.source`` in config):

``torchvision``
    The real torchvision loaders (``name``: ``MNIST`` or ``CIFAR10``), with ``root``
    and ``download``. This is the paper-scale source.
``sklearn_digits``
    scikit-learn's 8x8 handwritten digits, which ship inside scikit-learn, so the
    demo runs offline. Split into train/test with ``test_fraction`` and ``split_seed``
    (stratified). ``channels: 3`` and ``upsample`` turn it into a colour-image
    stand-in for the ConvNet demo.
``npz``
    A NumPy archive with named arrays (``x_train``/``y_train``/``x_test``/``y_test``
    by default). An archive with only one split (``x``/``y``) is split with
    ``test_fraction``.

Images are stored unnormalized (uint8) and normalized at load time with the training
set's per-channel mean and standard deviation.

Validation (rule ``prepare_dataset``, so no inconsistent ``dataset.npz`` is ever
written): an npz archive's pixels must be finite numbers in 0..255 (floats scaled to
0..1 are refused rather than rounded to black and white), every image array must have
as many labels as images, labels must be whole numbers from 0. The number of classes
(the model's outputs) is ``dataset.n_classes`` when set, and every label must be below
it; when not set it is inferred as the largest label + 1 (at least 2: a one-class dataset
is refused, :func:`check_class_count`), and then every class from 0 to
that largest label must occur among the training labels: a gap (labels 0..9 and a stray
12) means the labels are wrong or the class count is not what the labels say, so the
error asks for ``n_classes`` instead of silently building a 13-class model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from singledir.io import atomic_path


class DataError(RuntimeError):
    """A dataset could not be found or read; the message says how to provide it."""


@dataclass
class ImageData:
    x_train: np.ndarray  # uint8 (N, C, H, W)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])


def _to_nchw_uint8(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:  # (N, H, W): grayscale
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # NHWC
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4:
        raise DataError(f"images must have shape (N,H,W), (N,H,W,C) or (N,C,H,W); got {x.shape}")
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x)


def _where(path, name: str) -> str:
    return f"dataset.path: {path}: array {name!r}"


def check_pixels(x: np.ndarray, path, name: str) -> None:
    """Raise :class:`DataError` unless ``x`` holds finite pixel values in 0..255 (and
    floats are not scaled to 0..1, which the uint8 conversion would round away)."""
    x = np.asarray(x)
    where = _where(path, name)
    if x.dtype.kind not in "uif":
        raise DataError(f"{where} has dtype {x.dtype}; images must be numbers (uint8 0..255 preferred)")
    if x.size == 0:
        raise DataError(f"{where} holds no images (shape {x.shape})")
    if x.dtype.kind == "f":
        n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        if n_nan or n_inf:
            bad_images = int((~np.isfinite(x.reshape(len(x), -1))).any(1).sum())
            raise DataError(f"{where} has {n_nan} NaN and {n_inf} infinite values (of {x.size}, in {bad_images} of "
                            f"{len(x)} images). Fix the archive: drop those images (with their labels) or "
                            "replace the values, e.g. np.nan_to_num(x, nan=0.0), and save it again.")
    lo, hi = x.min(), x.max()
    if lo < 0 or hi > 255:
        raise DataError(f"{where} has values from {lo} to {hi}; pixels must lie in 0..255 (uint8). "
                        "Rescale the images and save the archive again.")
    if x.dtype.kind == "f" and 0 < hi <= 1:
        raise DataError(f"{where} is {x.dtype} with values in 0..{hi}: it looks scaled to 0..1, which would round "
                        "to black and white. Store uint8 0..255 instead, e.g. np.rint(x * 255).astype(np.uint8).")


def check_labels(y: np.ndarray, path, name: str) -> np.ndarray:
    """Labels as int64, or :class:`DataError`: a 1-d array of whole numbers from 0."""
    y = np.asarray(y)
    where = _where(path, name)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where} has shape {y.shape}; labels must be one class number per image (shape (N,))")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.rint(y)).any():
            raise DataError(f"{where} has {int((~np.isfinite(y) | (y != np.rint(np.nan_to_num(y)))).sum())} labels "
                            "that are not whole numbers (NaN, inf or fractions); labels must be class numbers 0..K-1")
    elif y.dtype.kind not in "ui":
        raise DataError(f"{where} has dtype {y.dtype}; labels must be integer class numbers 0..K-1")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(f"{where} has {int((y < 0).sum())} negative labels (smallest {int(y.min())}); labels must "
                        "be class numbers 0..K-1. Fix the labels in the archive.")
    return y


def check_pair(x: np.ndarray, y: np.ndarray, path, x_name: str, y_name: str) -> None:
    """Images and labels must be equally many (else some images would silently lose their labels)."""
    if len(x) != len(y):
        raise DataError(f"dataset.path: {path}: arrays {x_name!r} and {y_name!r} differ in length: {len(x)} images "
                        f"but {len(y)} labels. Every image needs exactly one label: fix the archive "
                        "(or point dataset.arrays at the right pair).")


def check_class_count(n_classes: int, where: str) -> None:
    """A classifier needs at least 2 classes: with 1, every net is trivially "100 % accurate"
    and chance is 1, so nothing downstream means anything. ``where`` names the path and key."""
    if int(n_classes) < 2:
        raise DataError(f"{where}: the data have {int(n_classes)} class; this pipeline trains classifiers and needs "
                        "at least 2 classes (with 1, every net is trivially 100 % accurate). Point the dataset at data "
                        "with all their classes, or fix the labels.")


def class_count(y_train: np.ndarray, y_test: np.ndarray, spec: dict, path, names: tuple[str, str]) -> int:
    """The number of classes: ``dataset.n_classes`` (every label must be below it), or the
    largest label + 1 when every class below it occurs in the training labels (see the
    module docstring); else :class:`DataError`."""
    given = spec.get("n_classes")
    if given is not None:
        given = int(given)
        for y, name in ((y_train, names[0]), (y_test, names[1])):
            if len(y) and y.max() >= given:
                raise DataError(f"{_where(path, name)} has {int((y >= given).sum())} labels >= dataset.n_classes "
                                f"= {given} (largest {int(y.max())}); labels must be 0..{given - 1}. Fix the labels, "
                                "or set dataset.n_classes to the true number of classes.")
        return given
    inferred = int(max(y_train.max(), y_test.max() if len(y_test) else 0)) + 1
    check_class_count(inferred, _where(path, names[0]))
    missing = sorted(set(range(inferred)) - set(np.unique(y_train).tolist()))
    if missing:
        shown = missing[:10] + (["..."] if len(missing) > 10 else [])
        raise DataError(f"{_where(path, names[0])}: labels go up to {inferred - 1} but classes {shown} never occur "
                        f"in the training labels, so the number of classes is unclear (a model would get {inferred} "
                        "outputs). Set dataset.n_classes to the true number of classes (labels at or above it are "
                        "then reported), or fix the labels.")
    return inferred


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a class-stratified train/test split (seeded)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _split(x, y, spec, name):
    frac = float(spec.get("test_fraction", 0.2))
    tr, te = stratified_split(y, frac, int(spec.get("split_seed", 0)))
    return x[tr], y[tr], x[te], y[te]


def load_sklearn_digits(spec: dict) -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    # Pixel values are 0..16; map them onto 0..255 like the other image sources.
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    up = int(spec.get("upsample", 1))
    if up > 1:
        x = x.repeat(up, axis=2).repeat(up, axis=3)
    ch = int(spec.get("channels", 1))
    if ch == 3:
        # A colour stand-in: each class-independent, seeded random tint per image keeps
        # the digit shape as the only label signal while giving 3 distinct channels.
        rng = np.random.default_rng(int(spec.get("split_seed", 0)) + 1)
        tint = rng.uniform(0.4, 1.0, size=(len(x), 3, 1, 1))
        x = np.rint(x.astype(np.float64) * tint).astype(np.uint8)
    elif ch != 1:
        raise DataError("dataset.channels: sklearn_digits supports 1 or 3 channels")
    xtr, ytr, xte, yte = _split(x, y, spec, "digits")
    return ImageData(xtr, ytr, xte, yte, 10, "sklearn_digits")


def load_npz(spec: dict) -> ImageData:
    path = spec.get("path")
    if not path:
        raise DataError("dataset.path: the npz source needs a path to a .npz file")
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise DataError(f"dataset.path: npz file not found: {path}. Put the archive there or point "
                        "dataset.path at it (arrays x_train, y_train, x_test, y_test, or x, y).")
    expected = spec.get("content_sha256")  # added by the workflow (with_source_digest)
    if expected and file_sha256(path) != expected:
        raise DataError(f"dataset.path: {path} changed after the workflow planned this job (its content digest "
                        "differs); run the workflow again so everything made from it is remade")
    arrays = spec.get("arrays", {}) or {}
    try:
        f = np.load(path)
    except Exception as err:
        raise DataError(f"dataset.path: {path} is not a readable npz archive ({type(err).__name__}: {err}); "
                        "write it with numpy.savez (arrays x_train, y_train, x_test, y_test, or x, y)") from err
    with f:
        keys = set(f.files)
        names = {k: arrays.get(k, k) for k in ("x_train", "y_train", "x_test", "y_test")}
        if names["x_train"] in keys:
            missing = [v for v in names.values() if v not in keys]
            if missing:
                raise DataError(f"dataset.arrays: {path} lacks arrays {missing}; it has {sorted(keys)}")
            split = {}
            for xk, yk in (("x_train", "y_train"), ("x_test", "y_test")):
                x, y = f[names[xk]], f[names[yk]]
                check_pixels(x, path, names[xk])
                y = check_labels(y, path, names[yk])
                check_pair(x, y, path, names[xk], names[yk])
                split[xk], split[yk] = _to_nchw_uint8(x), y
            xtr, ytr, xte, yte = split["x_train"], split["y_train"], split["x_test"], split["y_test"]
            label_names = (names["y_train"], names["y_test"])
        else:
            xn, yn = arrays.get("x", "x"), arrays.get("y", "y")
            if xn not in keys or yn not in keys:
                raise DataError(f"dataset.arrays: {path} has arrays {sorted(keys)}; expected "
                                f"x_train/y_train/x_test/y_test or {xn}/{yn} (set dataset.arrays)")
            x, y = f[xn], f[yn]
            check_pixels(x, path, xn)
            y = check_labels(y, path, yn)
            check_pair(x, y, path, xn, yn)
            xtr, ytr, xte, yte = _split(_to_nchw_uint8(x), y, spec, path.name)
            label_names = (yn, yn)
    n_classes = class_count(ytr, yte, spec, path, label_names)
    limit = spec.get("train_limit")
    if limit:
        xtr, ytr = xtr[: int(limit)], ytr[: int(limit)]
    return ImageData(xtr, ytr, xte, yte, n_classes, path.stem)


TORCHVISION_DATASETS = {"MNIST": 10, "CIFAR10": 10}
# The login-node step that prepares every dataset of a cluster run (rule `data`, docs/cluster.md).
DATA_STEP = "snakemake --profile profiles/slurm data"


def compute_node_job() -> str | None:
    """The SLURM job id when this process runs inside a SLURM job (a compute node), else None.
    SLURM_JOB_ID is one of the variables the SLURM job-step plugin keeps for its job steps."""
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID") or None


def load_torchvision(spec: dict) -> ImageData:
    import torchvision

    name = spec.get("name")
    if name not in TORCHVISION_DATASETS:
        raise DataError(f"dataset.name: {name!r} is not supported for source torchvision; "
                        f"choose one of {sorted(TORCHVISION_DATASETS)}")
    root = Path(os.path.expanduser(str(spec.get("root", "data"))))
    slurm_job = compute_node_job()
    # A SLURM job runs on a compute node, which usually cannot reach the internet: it never
    # downloads (a download there would fail, or hang until the time limit). The data step
    # on the login node fetches the files first.
    download = bool(spec.get("download", False)) and slurm_job is None
    cls = getattr(torchvision.datasets, name)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except (RuntimeError, OSError) as err:
        if slurm_job is not None:
            raise DataError(f"dataset.root: {name} is not in {root}; run `{DATA_STEP}` on the login node first "
                            f"(this is SLURM job {slurm_job} on a compute node, which never downloads)") from err
        hint = ("set dataset.download: true on a machine with internet access"
                if not download else "the download failed (no network?); download it elsewhere and copy it")
        raise DataError(f"dataset.root: {name} not found under {root} ({err}). Either {hint} (on a cluster: "
                        f"`{DATA_STEP}` on the login node), or place torchvision's {name} files under {root}/, "
                        "or use the npz source.") from err
    x_train, y_train = np.asarray(train.data), np.asarray(train.targets, dtype=np.int64)
    x_test, y_test = np.asarray(test.data), np.asarray(test.targets, dtype=np.int64)
    limit = spec.get("train_limit")
    if limit:
        x_train, y_train = x_train[: int(limit)], y_train[: int(limit)]
    return ImageData(_to_nchw_uint8(x_train), y_train, _to_nchw_uint8(x_test), y_test,
                     TORCHVISION_DATASETS[name], name)


SOURCES = {"torchvision": load_torchvision, "sklearn_digits": load_sklearn_digits, "npz": load_npz}


def check_dataset_spec(spec: dict) -> None:
    """Cheap checks before any work starts: a known source, an existing npz file, a
    supported torchvision dataset. Raises :class:`DataError` naming the key."""
    source = spec.get("source")
    if source == "npz":
        path = spec.get("path")
        if not path:
            raise DataError("dataset.path: the npz source needs a path to a .npz file")
        if not Path(os.path.expanduser(str(path))).is_file():
            raise DataError(f"dataset.path: npz file not found: {path}. Put the archive there or point "
                            "dataset.path at it (arrays x_train, y_train, x_test, y_test, or x, y).")
    elif source == "torchvision":
        if spec.get("name") not in TORCHVISION_DATASETS:
            raise DataError(f"dataset.name: {spec.get('name')!r} is not supported for source torchvision; "
                            f"choose one of {sorted(TORCHVISION_DATASETS)}")
    elif source not in SOURCES and source not in EXTRA_SOURCES:
        raise DataError(f"dataset.source: unknown source {source!r}; choose one of {sorted(set(SOURCES) | set(EXTRA_SOURCES))}")


def file_sha256(path: str | os.PathLike, cache_path: str | os.PathLike | None = None) -> str:
    """SHA-256 of a file's content, remembered in the JSON file ``cache_path`` under the
    file's identity (path, size, mtime, ctime, inode): the file is read again only when
    one of those changed, so building the DAG costs a ``stat`` per source file, not a read
    of a multi-gigabyte archive. ctime cannot be set by users (``cp -p`` and ``touch -r``
    set mtime only), so a replaced file is always read again."""
    import hashlib
    import json

    path = Path(os.path.expanduser(str(path))).resolve()
    st = path.stat()
    ident = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    cache = {}
    if cache_path is not None and Path(cache_path).is_file():
        try:
            cache = json.loads(Path(cache_path).read_text())
        except ValueError:
            cache = {}  # a damaged cache is only a cache: hash again
    hit = cache.get(str(path))
    if hit and hit.get("stat") == ident:
        return hit["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as fh:  # hashlib.file_digest needs Python 3.11; 3.10 is supported
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if cache_path is not None:
        cache[str(path)] = {"stat": ident, "sha256": digest}
        with atomic_path(cache_path) as tmp:
            tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
    return digest


def with_source_digest(spec: dict, cache_path: str | os.PathLike | None = None) -> dict:
    """The dataset section as ``prepare_dataset`` receives it: for the npz source with the
    archive's content digest added (``content_sha256``), so that replacing the file at the
    same path changes the rule's parameters and Snakemake reruns ``prepare_dataset`` and
    everything trained on it. Other sources are returned unchanged (torchvision's files
    are fixed releases; scikit-learn's digits ship with the package)."""
    if spec.get("source") != "npz" or not spec.get("path"):
        return spec
    path = Path(os.path.expanduser(str(spec["path"])))
    if not path.is_file():
        return spec  # the config check reports it; a dry run still plans
    return dict(spec, content_sha256=file_sha256(path, cache_path))


# Sources provided by other modules (e.g. ImageNet folders), registered by name so
# that config checks know them; they are loaded by their own workflow rules.
EXTRA_SOURCES: set[str] = {"imagefolder", "imagenet"}


def load_dataset(spec: dict) -> ImageData:
    """Load the dataset described by a ``dataset`` config section."""
    source = spec.get("source")
    if source not in SOURCES:
        raise DataError(f"dataset.source: unknown source {source!r}; choose one of {sorted(SOURCES)}")
    return SOURCES[source](spec)


def check_prepared(data: ImageData) -> None:
    """The invariants every consumer of ``dataset.npz`` relies on (whatever the source):
    uint8 NCHW images, one label per image, labels in 0..n_classes-1, images of one shape."""
    where = f"dataset {data.name!r}"
    check_class_count(data.n_classes, f"{where} (n_classes)")
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if x.dtype != np.uint8 or x.ndim != 4:
            raise DataError(f"{where}: x_{split} must be uint8 (N, C, H, W); got {x.dtype} {x.shape}")
        if len(x) == 0:
            raise DataError(f"{where}: the {split} split has no images")
        if len(x) != len(y):
            raise DataError(f"{where}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        if y.min() < 0 or y.max() >= data.n_classes:
            raise DataError(f"{where}: y_{split} has labels from {int(y.min())} to {int(y.max())}, outside "
                            f"0..{data.n_classes - 1} ({data.n_classes} classes)")
    if data.x_train.shape[1:] != data.x_test.shape[1:]:
        raise DataError(f"{where}: train images are {data.x_train.shape[1:]} but test images {data.x_test.shape[1:]}")


def save_prepared(data: ImageData, path: str | os.PathLike) -> None:
    """Write a dataset as one npz (the output of the ``prepare_dataset`` rule), after
    :func:`check_prepared`: no inconsistent dataset is ever written."""
    check_prepared(data)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
                     y_test=data.y_test, n_classes=np.int64(data.n_classes), name=np.str_(data.name))


def load_prepared(path: str | os.PathLike) -> ImageData:
    with np.load(path) as f:
        return ImageData(f["x_train"], f["y_train"], f["x_test"], f["y_test"], int(f["n_classes"]), str(f["name"]))


@dataclass
class Tensors:
    """Normalized float tensors, loaded once onto the device (airbench style)."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int


def to_tensors(data: ImageData, y_train: np.ndarray | None = None, device: str | torch.device = "cpu") -> Tensors:
    """Normalize with the training set's per-channel mean/std and move to ``device``.

    ``y_train`` replaces the training labels (e.g. with corrupted ones); test labels are
    never replaced.
    """
    xtr = torch.as_tensor(data.x_train, dtype=torch.float32) / 255.0
    xte = torch.as_tensor(data.x_test, dtype=torch.float32) / 255.0
    mean = xtr.mean(dim=(0, 2, 3), keepdim=True)
    std = xtr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    ytr = data.y_train if y_train is None else y_train
    return Tensors(((xtr - mean) / std).to(device), torch.as_tensor(ytr, dtype=torch.long).to(device),
                   ((xte - mean) / std).to(device), torch.as_tensor(data.y_test, dtype=torch.long).to(device),
                   data.n_classes)


def load_labels(path: str | os.PathLike) -> np.ndarray:
    """The training labels a net is trained on (``labels_*.npz`` of rule ``corrupt_labels``)."""
    with np.load(path) as f:
        return f["labels"]


def load_data(dataset_path, labels_path=None, device="cpu") -> Tensors:
    """Prepared dataset as normalized tensors, with the (possibly corrupted) training labels."""
    data = load_prepared(dataset_path)
    labels = load_labels(labels_path) if labels_path else None
    return to_tensors(data, labels, device)
