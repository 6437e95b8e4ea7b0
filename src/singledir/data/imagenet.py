"""ImageNet (or any image folder) as the data of the ``imagenet`` family (appendix A.2).

ImageNet does not fit in memory, so unlike the other families its images stay on disk:

1. :func:`scan` lists every image of the train and val splits once (through torchvision's
   ``ImageNet`` or ``ImageFolder``) into an *index* table (split, path, target). Label
   corruption (:mod:`singledir.data.corruption`) then works on the index's train targets.
2. Training streams images from the index with a ``DataLoader``
   (:class:`IndexedImages`); corrupted-label training uses no augmentation (appendix A.2:
   it would prevent memorization).
3. Analyses run on a seeded, class-balanced subset (:func:`balanced_subset`): N images per
   class of each split, recorded as a table (``results/data/imagenet/subset.csv``).

Dataset sources (``dataset.source``):

``imagenet``
    :class:`torchvision.datasets.ImageNet` under ``dataset.root`` (``train/``, ``val/`` and
    the devkit's ``meta.bin``, or the ILSVRC2012 archives torchvision unpacks itself).
``imagefolder``
    :class:`torchvision.datasets.ImageFolder` trees ``<root>/<train_dir>/<class>/<image>``
    and ``<root>/<val_dir>/<class>/<image>`` with the same class folders.

All images are normalized with the ImageNet channel means and standard deviations, the
convention of torchvision's pretrained weights, so a pretrained model sees its own
input statistics.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from singledir.data.sources import DataError, check_class_count, load_sklearn_digits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITS = ("train", "val")

LAYOUT = {
    "imagenet": """\
  <root>/meta.bin                  (written by torchvision from ILSVRC2012_devkit_t12.tar.gz)
  <root>/train/n01440764/n01440764_10026.JPEG
  <root>/train/n01443537/...       (1000 class folders)
  <root>/val/n01440764/ILSVRC2012_val_00000293.JPEG
  <root>/val/...                   (the same 1000 class folders)
or the archives ILSVRC2012_devkit_t12.tar.gz, ILSVRC2012_img_train.tar and
ILSVRC2012_img_val.tar in <root>, which torchvision.datasets.ImageNet unpacks into that layout.""",
    "imagefolder": """\
  <root>/<train_dir>/<class_a>/<image>.jpg   (any image type torchvision's ImageFolder reads)
  <root>/<train_dir>/<class_b>/...
  <root>/<val_dir>/<class_a>/...             (the same class folders as <train_dir>)""",
}


def _root(spec: dict) -> Path:
    if not spec.get("root"):
        raise DataError("dataset.root: the imagenet family needs the root directory of its images")
    return Path(os.path.expanduser(str(spec["root"])))


def split_dirs(spec: dict) -> dict[str, str]:
    """Folder of each split under the root (``train_dir``/``val_dir`` for image folders)."""
    if spec.get("source") == "imagenet":
        return {"train": "train", "val": "val"}
    return {"train": str(spec.get("train_dir", "train")), "val": str(spec.get("val_dir", "val"))}


def layout_error(spec: dict, problem: str) -> DataError:
    source = spec.get("source", "imagefolder")
    dirs = split_dirs(spec)
    layout = LAYOUT.get(source, LAYOUT["imagefolder"]).replace("<train_dir>", dirs["train"]).replace(
        "<val_dir>", dirs["val"])
    return DataError(f"dataset.root: {problem}. The {source} source expects this layout under "
                     f"dataset.root ({_root(spec)}):\n{layout}\nPoint dataset.root at such a directory (or set the "
                     "family's enabled: false to skip it).")


def check_layout(spec: dict) -> None:
    """Cheap check of the directory layout (no file listing); raises :class:`DataError`."""
    source = spec.get("source")
    if source not in LAYOUT:
        raise DataError(f"dataset.source: {source!r} is not an imagenet-family source; choose one of {sorted(LAYOUT)}")
    root = _root(spec)
    if not root.is_dir():
        raise layout_error(spec, f"{root} does not exist")
    archives = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar"}
    for split, folder in split_dirs(spec).items():
        path = root / folder
        has_archive = source == "imagenet" and (root / archives[split]).is_file()
        if not has_archive and (not path.is_dir() or not any(p.is_dir() for p in path.iterdir())):
            raise layout_error(spec, f"{path} is missing or has no class folders")
    if source == "imagenet" and not ((root / "meta.bin").is_file()
                                     or (root / "ILSVRC2012_devkit_t12.tar.gz").is_file()):
        raise layout_error(spec, f"neither {root / 'meta.bin'} nor the devkit archive is there")


def scan(spec: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """List every image: (index with columns split, path, target; classes with target, folder, name).

    Paths are relative to ``dataset.root``. The index is validated before anything is
    written (:func:`check_index`): train and val have the same class folders, no class
    folder is empty, no image file is empty (one ``stat`` per image; a 0-byte file is what
    an interrupted copy leaves), and every target is a class of the table.
    """
    import torchvision

    check_layout(spec)
    root = _root(spec)
    dirs = split_dirs(spec)
    rows, classes = [], {}
    for split, folder in dirs.items():
        try:
            if spec["source"] == "imagenet":
                ds = torchvision.datasets.ImageNet(str(root), split=split)
                folders = ds.wnids
                names = [", ".join(c) if isinstance(c, tuple) else str(c) for c in ds.classes]
            else:
                ds = torchvision.datasets.ImageFolder(str(root / folder))
                folders = names = ds.classes
        except FileNotFoundError as err:  # torchvision: "Found no valid file for the classes ..."
            raise layout_error(spec, f"{root / folder} has class folders without images ({err}); add the images "
                                     "or remove the empty folders from both splits") from err
        classes[split] = (list(folders), list(names))
        rows.append(pd.DataFrame({"split": split,
                                  "path": [os.path.relpath(p, root) for p, _ in ds.samples],
                                  "target": np.asarray([t for _, t in ds.samples], dtype=np.int64)}))
    if classes["train"][0] != classes["val"][0]:
        only = sorted(set(classes["train"][0]) ^ set(classes["val"][0]))
        raise layout_error(spec, f"{dirs['train']}/ and {dirs['val']}/ have different class folders (e.g. {only[:5]})")
    folders, names = classes["train"]
    table = pd.DataFrame({"target": range(len(folders)), "folder": folders, "name": names})
    index = pd.concat(rows, ignore_index=True)
    check_index(index, table, spec)
    return index, table


def check_index(index: pd.DataFrame, classes: pd.DataFrame, spec: dict) -> None:
    """Raise :class:`DataError` unless every target is a class of ``classes``, every class
    has images in every split, and no image file under ``dataset.root`` is empty."""
    root = _root(spec)
    n = len(classes)
    check_class_count(n, f"dataset.root: {root}")
    bad = index[(index["target"] < 0) | (index["target"] >= n)]
    if len(bad):
        raise DataError(f"dataset.root: {len(bad)} images have targets outside the {n} classes "
                        f"(e.g. {bad['path'].iloc[0]} -> {bad['target'].iloc[0]})")
    for split, rows in index.groupby("split"):
        absent = sorted(set(range(n)) - set(rows["target"].unique().tolist()))
        if absent:
            names = classes.set_index("target").loc[absent[:5], "folder"].tolist()
            raise layout_error(spec, f"the {split} split has no images of {len(absent)} classes "
                               f"(e.g. {names}); every class needs images in both splits")
    empty = [p for p in index["path"] if os.stat(root / p).st_size == 0]
    if empty:
        raise DataError(f"dataset.root: {len(empty)} image files under {root} are empty (0 bytes), e.g. "
                        f"{empty[:3]}; an interrupted copy leaves such files: copy them again, or remove them")


def balanced_subset(targets: np.ndarray, per_class: int, seed: int) -> pd.DataFrame:
    """Seeded class-balanced subset: ``per_class`` indices of every class.

    Returns columns ``index`` (into ``targets``), ``target`` and ``rank`` (the position in
    the class's seeded random order, so ``rank < k`` is a smaller balanced subset). A class
    with fewer images contributes all of them; ``per_class`` 0 takes every image.
    """
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    parts = []
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        if per_class:
            idx = idx[:per_class]
        parts.append(pd.DataFrame({"index": idx, "target": c, "rank": np.arange(len(idx))}))
    return pd.concat(parts, ignore_index=True).sort_values(["target", "rank"], ignore_index=True)


def analysis_subset(index: pd.DataFrame, train_per_class: int, test_per_class: int, seed: int) -> pd.DataFrame:
    """The recorded analysis subset: balanced over true classes in each split.

    Columns: split, index (row of the split in the index), path, target (true class), rank.
    """
    parts = []
    for split, k, s in (("train", train_per_class, seed), ("val", test_per_class, seed + 1)):
        rows = index[index["split"] == split].reset_index(drop=True)
        sub = balanced_subset(rows["target"].to_numpy(), k, s)
        sub.insert(0, "split", split)
        sub.insert(2, "path", rows["path"].to_numpy()[sub["index"].to_numpy()])
        parts.append(sub)
    return pd.concat(parts, ignore_index=True)


def transform(image_size: int, resize_size: int, augment: bool):
    """torchvision transforms: eval = resize + center crop; augment = random resized crop + flip."""
    from torchvision import transforms as T

    norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if augment:
        return T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), *norm])
    return T.Compose([T.Resize(resize_size), T.CenterCrop(image_size), *norm])


def dataset_transform(spec: dict, augment: bool):
    size = int(spec.get("image_size", 224))
    return transform(size, int(spec.get("resize_size", round(size * 256 / 224))), augment)


class IndexedImages(Dataset):
    """Images from paths under ``root`` with given labels.

    An item is an index, or ``(index, seed)``. With ``random_transform`` (augmentation) the
    seed fixes that draw's random crop and flip, so training is reproducible and resumable
    whatever the number of loader processes (see :mod:`singledir.training.distributed`); without,
    the seed is not needed and ignored. ``cache`` keeps every transformed image in memory
    after its first use (deterministic transforms only; per loader process), for image
    sets small enough to hold, like the demo's stand-in.
    """

    def __init__(self, root: str | os.PathLike, paths: Sequence[str], labels: Sequence[int], transform,
                 random_transform: bool = False, cache: bool = False):
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.random_transform = random_transform
        if cache and random_transform:
            raise ValueError("cache: augmented images differ at every draw and cannot be cached")
        self.cache: dict | None = {} if cache else None
        if len(self.paths) != len(self.labels):
            raise ValueError("paths and labels differ in length")

    def __len__(self):
        return len(self.paths)

    def image(self, i: int, seed: int | None = None) -> torch.Tensor:
        from PIL import Image

        if self.cache is not None and i in self.cache:
            return self.cache[i]
        try:
            with Image.open(self.root / self.paths[i]) as img:
                img = img.convert("RGB")
        except Exception as err:  # decoded once by the index job (singledir.data.check): changed since
            raise DataError(f"image {self.root / self.paths[i]} does not decode ({type(err).__name__}: {err}); "
                            "it changed after the image index was made: copy it again, or delete it and "
                            "rerun the image_index job (--forcerun image_index)") from err
        if self.random_transform:
            if seed is None:
                raise ValueError("an augmented image needs a seed: index the dataset with (index, seed)")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                return self.transform(img)
        x = self.transform(img)
        if self.cache is not None:
            self.cache[i] = x
        return x

    def __getitem__(self, item):
        i, seed = item if isinstance(item, tuple) else (item, None)
        return self.image(i, seed), int(self.labels[i])


def load_images(dataset: Dataset, batch_size: int = 256, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item of ``dataset`` as one (N, C, H, W) tensor and one label tensor, in order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def read_index(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"split": str, "path": str, "target": np.int64})


def train_labels(index: pd.DataFrame, labels_path: str | os.PathLike | None) -> np.ndarray:
    """Training labels: the (possibly corrupted) labels file, else the true targets."""
    true = index.loc[index["split"] == "train", "target"].to_numpy()
    if labels_path is None:
        return true
    with np.load(labels_path) as f:
        labels = f["labels"]
    if len(labels) != len(true):
        raise DataError(f"{labels_path} has {len(labels)} labels but the index has {len(true)} training images; "
                        "the labels were made from another index: delete them and rerun")
    return labels


def write_digits_imagefolder(root: str | os.PathLike, spec: dict) -> dict[str, int]:
    """The demo's offline stand-in: scikit-learn's 8x8 digits as an ImageFolder of PNGs.

    Uses :func:`singledir.data.sources.load_sklearn_digits` (stratified, seeded split; ``upsample``
    and ``channels: 3`` give tinted colour images), so the real ImageFolder loader and
    PNG decoding are exercised. Returns the number of images per split.
    """
    from PIL import Image

    data = load_sklearn_digits({"test_fraction": spec.get("test_fraction", 0.25),
                                "split_seed": spec.get("split_seed", 0),
                                "upsample": spec.get("upsample", 4), "channels": 3})
    root = Path(root)
    dirs = split_dirs(spec)
    counts = {}
    for split, x, y in (("train", data.x_train, data.y_train), ("val", data.x_test, data.y_test)):
        for c in range(data.n_classes):
            (root / dirs[split] / f"digit_{c}").mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(x, y)):
            Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(
                root / dirs[split] / f"digit_{label}" / f"{split}_{i:05d}.png")
        counts[split] = len(y)
    return counts


GENERATED = {"sklearn_digits": write_digits_imagefolder}


def processes_per_node(train: dict) -> int:
    """Training processes per node: one per GPU (``train.gpus_per_node``), or one CPU process."""
    return max(1, int(train.get("gpus_per_node", 0) or 0))


def config_problems(config: dict, experiments: dict[str, dict[str, dict]], family: str = "imagenet") -> list[str]:
    """What is wrong with the family's config (an empty list when nothing is).

    ``experiments``: the enabled experiments' model specs, ``{experiment: {model id: spec}}``
    (:func:`singledir.pipeline.plan.experiment_specs`; the plan passes them in)."""
    fam = config["families"][family]
    ds = fam.get("dataset", {})
    problems = []
    if ds.get("source") not in LAYOUT:
        problems.append(f"families.{family}.dataset.source: {ds.get('source')!r} cannot be read by the {family} "
                        f"family; choose one of {sorted(LAYOUT)}")
    if ds.get("generate") is not None and ds["generate"] not in GENERATED:
        problems.append(f"families.{family}.dataset.generate: unknown stand-in {ds['generate']!r}; "
                        f"choose one of {sorted(GENERATED)} or remove the key to read dataset.root")
    if ds.get("generate") is None and not ds.get("root"):
        problems.append(f"families.{family}.dataset.root: set it to the directory holding the images")
    for exp, specs in experiments.items():
        for mid, spec in specs.items():
            where = f"families.{family}.experiments.{exp}"
            model, train = spec["model"], spec["train"]
            if model.get("arch") != "torchvision":
                problems.append(f"{where}.model.arch: the {family} family builds torchvision models; "
                                "set arch: torchvision and model.name")
            if spec["labels"]["fraction"] > 0:
                if train.get("augment"):
                    problems.append(f"{where}: {mid} trains on corrupted labels with train.augment: true; "
                                    "corrupted-label training uses no augmentation (appendix A.2: it would "
                                    "prevent memorization), so set augment: false")
                if model.get("weights"):
                    problems.append(f"{where}: {mid} has corrupted labels but model.weights skips training; "
                                    "use weights only for clean-label experiments")
            # nodes and gpus_per_node are run options: not in the spec, read from the config
            run = {**(fam.get("train") or {}), **(fam["experiments"][exp].get("train") or {})}
            procs = int(run.get("nodes", 1)) * processes_per_node(run)
            if int(train.get("workers", 1)) % procs:
                problems.append(f"{where}.train.workers: {train.get('workers', 1)} logical workers cannot be "
                                f"split over {procs} training processes (nodes x gpus_per_node); make it a multiple")
    return problems
