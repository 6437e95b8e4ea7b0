"""The data the per-model analyses read, the same way for every family.

A family keeps its data in one of two forms:

- *arrays* (mnist, cifar10): ``results/data/<family>/dataset.npz``, small enough to hold in
  memory (:mod:`singledir.data.sources`);
- *images* (imagenet): images on disk, listed once in ``index.csv.gz`` with the recorded,
  seeded, class-balanced analysis subset ``subset.csv`` (:mod:`singledir.data.imagenet`).

:func:`open_analysis_data` hides the difference: the scripts ask for the training examples
(with the labels the net was trained on), the test activations and the examples of the
single-unit impact, and get tensors either way; the unit analysis streams the test examples
as batches instead (:meth:`AnalysisData.test_batches`). What each form gives:

==========================  =========================================  ==========================================
                            arrays                                     images
==========================  =========================================  ==========================================
training examples           every training example, or a seeded        the subset's training images (every one)
                            ``eval_examples`` of them
activation statistics       every training example                     the subset's training images
test activations            every test example, full maps              the subset's validation images, spatial
                                                                       means (streamed: ImageNet does not fit)
impact examples             every test example                         the first ``impact_per_class`` validation
                                                                       images of each class in the subset
==========================  =========================================  ==========================================
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # annotations only: reading labels needs no torch
    import torch

ARRAYS, IMAGES = "arrays", "images"


def data_form(dataset_cfg: Mapping) -> str:
    """``images`` when the family's dataset stays on disk as an image index, else ``arrays``."""
    from singledir.data.imagenet import LAYOUT  # data.imagenet loads torch; the Snakefile parse calls this

    return IMAGES if dataset_cfg.get("source") in LAYOUT else ARRAYS


def training_targets(path: str | os.PathLike) -> np.ndarray:
    """The true training labels of a family's data file (``dataset.npz`` or ``index.csv.gz``),
    in the order label corruption and training use."""
    if str(path).endswith(".npz"):  # read the one array (no torch import: the label-corruption jobs stay light)
        with np.load(path) as f:
            return f["y_train"]
    from singledir.data.imagenet import read_index, train_labels  # loads torch: only for an image index

    return train_labels(read_index(path), None)


def eval_subset(n: int, limit: int, seed: int) -> np.ndarray | None:
    """Seeded subset of ``limit`` example indices (None = all ``n``)."""
    if not limit or limit >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


class AnalysisData:
    """One family's data for the analyses of one trained model (see the module docstring).
    Each part is read on first use (an image analysis decodes only the images it needs)."""

    def __init__(self, form: str, n_classes: int, load_train, load_impact, test_activations, test_batches):
        self.form, self.n_classes = form, int(n_classes)
        self._load_train, self._load_impact, self._test_activations = load_train, load_impact, test_activations
        self._test_batches = test_batches
        self._train = self._impact = None

    def all_training_examples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every training example the analyses see, with the labels the net was trained on
        (arrays: the whole training set; images: the recorded subset's training images)."""
        if self._train is None:
            self._train = self._load_train()
        return self._train

    def training_examples(self, eval_examples: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The training examples the curves are measured on (arrays: a seeded subset of
        ``eval_examples`` when set; images: the recorded subset, which already is one)."""
        x, y = self.all_training_examples()
        sub = eval_subset(len(x), eval_examples, seed) if self.form == ARRAYS else None
        return (x, y) if sub is None else (x[sub], y[sub])

    def impact_examples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test examples of the single-unit ablation impact (module docstring)."""
        if self._impact is None:
            self._impact = self._load_impact()
        return self._impact

    def example(self) -> torch.Tensor:
        """One input (1, C, H, W), for probing unit layers and their sizes."""
        return self.impact_examples()[0][:1]

    def test_activations(self, model, layers: Sequence[str], chunk_size: int, device) -> tuple[dict, np.ndarray]:
        """Per layer, the unperturbed activations of the test examples as numpy arrays
        (arrays: full (N, C, ...) maps; images: (N, C) spatial means), and their labels."""
        return self._test_activations(model, layers, chunk_size, device)

    def test_batches(self, chunk_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """The test examples of :meth:`test_activations` as ``(inputs, labels)`` batches of
        ``chunk_size``, in the same order (arrays: on the data's device; images: decoded
        batch by batch on the CPU), for analyses that stream the test set
        (:mod:`singledir.analysis.unit_stream`)."""
        return self._test_batches(chunk_size)


def open_analysis_data(inputs: Mapping[str, str], device, *, dataset_cfg: Mapping | None = None,
                       impact_per_class: int = 0, chunk_size: int = 1024, loader_workers: int = 0) -> AnalysisData:
    """The analysis data of a trained model from the rule's input files: ``dataset`` and
    ``labels`` (arrays), or ``index``, ``labels`` and ``subset`` (images, which also need the
    family's ``dataset_cfg`` with its ``root`` for the transform). ``chunk_size`` and
    ``loader_workers`` set only how images are decoded, never which."""
    if "dataset" in inputs:
        return _arrays(inputs["dataset"], inputs.get("labels"), device)
    missing = [k for k in ("index", "labels", "subset") if k not in inputs]
    if missing or dataset_cfg is None:
        raise ValueError(f"analysis data: give either `dataset` (arrays) or `index`, `labels`, `subset` and the "
                         f"dataset config (images); missing {missing or ['dataset_cfg']}")
    return _images(inputs["index"], inputs["labels"], inputs["subset"], dataset_cfg, device, impact_per_class,
                   chunk_size, loader_workers)


def _arrays(dataset_path, labels_path, device) -> AnalysisData:
    # both load torch, which the light importers of this module (label corruption, the
    # Snakefile parse) never need
    from singledir.data.sources import load_data
    from singledir.models.activations import collect_activations

    data = load_data(dataset_path, labels_path, device)

    def test_activations(model, layers, chunk_size, device):
        acts, _ = collect_activations(model, data.x_test, layers, chunk_size=chunk_size)
        return {n: a.numpy() for n, a in acts.items()}, data.y_test.cpu().numpy()

    def test_batches(chunk_size):
        n = len(data.x_test)
        return ((data.x_test[i:i + chunk_size], data.y_test[i:i + chunk_size]) for i in range(0, n, chunk_size))

    return AnalysisData(ARRAYS, data.n_classes, lambda: (data.x_train, data.y_train),
                        lambda: (data.x_test, data.y_test), test_activations, test_batches)


def _images(index_path, labels_path, subset_path, dataset_cfg, device, impact_per_class, chunk_size,
            loader_workers) -> AnalysisData:
    from torch.utils.data import DataLoader

    # torch again, as in _arrays: only an analysis job opens the images
    from singledir.data.imagenet import IndexedImages, dataset_transform, load_images, read_index, train_labels
    from singledir.models.activations import collect_activations

    root = dataset_cfg["root"]
    tf = dataset_transform(dataset_cfg, augment=False)
    index = read_index(index_path)
    subset = pd.read_csv(subset_path)
    test = subset[subset["split"] == "val"]

    def load(paths, targets):
        x, y = load_images(IndexedImages(root, paths, targets, tf), chunk_size, loader_workers)
        return x.to(device), y.to(device)

    def load_train():
        train = subset[subset["split"] == "train"]
        return load(train["path"], train_labels(index, labels_path)[train["index"].to_numpy()])

    def load_impact():
        imp = test[test["rank"] < impact_per_class] if impact_per_class else test
        return load(imp["path"], imp["target"])

    def test_batches(chunk_size):
        return DataLoader(IndexedImages(root, test["path"], test["target"], tf), batch_size=chunk_size,
                          num_workers=loader_workers)

    def test_activations(model, layers, chunk_size, device):
        means, labels = collect_activations(model, test_batches(chunk_size), layers, spatial=True, device=device)
        return {n: m.double().numpy() for n, m in means.items()}, labels.numpy()

    return AnalysisData(IMAGES, int(index["target"].max()) + 1, load_train, load_impact, test_activations,
                        test_batches)
