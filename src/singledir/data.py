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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .io import atomic_path


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
    arrays = spec.get("arrays", {}) or {}
    with np.load(path) as f:
        keys = set(f.files)
        names = {k: arrays.get(k, k) for k in ("x_train", "y_train", "x_test", "y_test")}
        if names["x_train"] in keys:
            missing = [v for v in names.values() if v not in keys]
            if missing:
                raise DataError(f"dataset.arrays: {path} lacks arrays {missing}; it has {sorted(keys)}")
            xtr, ytr = _to_nchw_uint8(f[names["x_train"]]), f[names["y_train"]].astype(np.int64)
            xte, yte = _to_nchw_uint8(f[names["x_test"]]), f[names["y_test"]].astype(np.int64)
        else:
            xn, yn = arrays.get("x", "x"), arrays.get("y", "y")
            if xn not in keys or yn not in keys:
                raise DataError(f"dataset.arrays: {path} has arrays {sorted(keys)}; expected "
                                f"x_train/y_train/x_test/y_test or {xn}/{yn} (set dataset.arrays)")
            x, y = _to_nchw_uint8(f[xn]), f[yn].astype(np.int64)
            xtr, ytr, xte, yte = _split(x, y, spec, path.name)
    limit = spec.get("train_limit")
    if limit:
        xtr, ytr = xtr[: int(limit)], ytr[: int(limit)]
    n_classes = int(spec.get("n_classes") or int(max(ytr.max(), yte.max())) + 1)
    return ImageData(xtr, ytr, xte, yte, n_classes, path.stem)


TORCHVISION_DATASETS = {"MNIST": 10, "CIFAR10": 10}


def load_torchvision(spec: dict) -> ImageData:
    import torchvision

    name = spec.get("name")
    if name not in TORCHVISION_DATASETS:
        raise DataError(f"dataset.name: {name!r} is not supported for source torchvision; "
                        f"choose one of {sorted(TORCHVISION_DATASETS)}")
    root = Path(os.path.expanduser(str(spec.get("root", "data"))))
    download = bool(spec.get("download", False))
    cls = getattr(torchvision.datasets, name)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except (RuntimeError, OSError) as err:
        hint = ("set dataset.download: true on a machine with internet access"
                if not download else "the download failed (no network?); download it elsewhere and copy it")
        raise DataError(f"dataset.root: {name} not found under {root} ({err}). Either {hint}, "
                        f"or place torchvision's {name} files under {root}/, or use the npz source.") from err
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


# Sources provided by other modules (e.g. ImageNet folders), registered by name so
# that config checks know them; they are loaded by their own workflow rules.
EXTRA_SOURCES: set[str] = {"imagefolder", "imagenet"}


def load_dataset(spec: dict) -> ImageData:
    """Load the dataset described by a ``dataset`` config section."""
    source = spec.get("source")
    if source not in SOURCES:
        raise DataError(f"dataset.source: unknown source {source!r}; choose one of {sorted(SOURCES)}")
    return SOURCES[source](spec)


def save_prepared(data: ImageData, path: str | os.PathLike) -> None:
    """Write a dataset as one npz (the output of the ``prepare_dataset`` rule)."""
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
