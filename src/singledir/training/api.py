"""The one training entry: :func:`train` trains the models of one job, whatever the family.

A training job is one model or a group of same-shaped models (``fuse: K``), on in-memory
data (:class:`TensorData`: MNIST, CIFAR-10, any npz) or on images on disk
(:class:`ImageFolderData`: ImageNet, any image folder). The mode follows from that:

===========================  =========================================================
one model, tensors           the epoch loop, single mode (:func:`singledir.training.loop.fit`)
a group, tensors             fused (the loop's fused mode) or one model at a time, as
                             :func:`singledir.training.fusion_choice.decide_fusion` decides
one model, image folder      step-based data-parallel training over ``nodes x
                             gpus_per_node`` processes (:mod:`singledir.training.distributed`),
                             or no training where ``model.weights`` names pretrained weights
===========================  =========================================================

Every mode writes the same checkpoint protocol (:mod:`singledir.training.checkpoint`) and
the same history schema (:data:`singledir.training.core.HISTORY_COLUMNS`), and takes its
speed settings from :class:`~singledir.training.core.RunOptions`, never from the spec.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from singledir.data.sources import Tensors
from singledir.models.api import build_model
from singledir.training.core import RunOptions, TrainConfig, history_frame
from singledir.training.distributed import launch, write_job
from singledir.training.fusion_choice import decide_fusion
from singledir.training.loop import fit


@dataclass(frozen=True)
class TensorData:
    """In-memory data: the images and test set once (``base``), and each model's own
    (possibly corrupted) training labels, in the order of the specs."""

    base: Tensors
    labels: Sequence[torch.Tensor]

    def member(self, k: int) -> Tensors:
        b = self.base
        return Tensors(b.x_train, self.labels[k], b.x_test, b.y_test, b.n_classes)


@dataclass(frozen=True)
class ImageFolderData:
    """Images on disk: the index of every image (``index.csv.gz``), the model's labels file,
    the image root and the family's ``dataset`` section (transforms, image size)."""

    index: str
    labels: str
    root: str
    dataset: dict
    n_classes: int

    @property
    def in_shape(self) -> tuple[int, int, int]:
        size = int(self.dataset.get("image_size", 224))
        return (3, size, size)


@dataclass
class TrainedModel:
    """What :func:`train` returns per spec: what ``model.pt`` and ``history.csv`` hold."""

    spec: dict
    in_shape: tuple[int, ...]
    n_classes: int
    state_dict: dict
    history: pd.DataFrame
    snapshots: dict


def train(specs: Sequence[dict], data: TensorData | ImageFolderData, work_dir: str | os.PathLike,
          run: RunOptions, fuse: str | bool = "auto", log=print, log_path: str | None = None) -> list[TrainedModel]:
    """Train the models of ``specs`` (one, or a fused group) on ``data``; resumable from
    ``work_dir``. ``fuse`` forces a group's mode (``"auto"``: decide, see the module
    docstring); ``log_path`` receives the output of torchrun's processes."""
    specs = list(specs)
    if not specs:
        raise ValueError("train: no model specs")
    if isinstance(data, ImageFolderData):
        if len(specs) != 1:
            raise ValueError("train: image-folder training takes one model per job")
        return [_train_image_folder(specs[0], data, Path(work_dir), run, log, log_path)]
    cfgs = [TrainConfig.from_spec(s["train"], run) for s in specs]
    datas = [data.member(k) for k in range(len(specs))]
    in_shape = tuple(data.base.x_train.shape[1:])
    models = []
    for spec, cfg in zip(specs, cfgs):
        torch.manual_seed(cfg.seed)  # the seed fixes the initialization
        models.append(build_model(spec["model"], in_shape, data.base.n_classes).to(data.base.x_train.device))
    n_params = sum(p.numel() for p in models[0].parameters())
    log(f"training {[s['id'] for s in specs]} on {data.base.x_train.device}: {n_params} parameters each")
    results, _ = train_members(models, datas, cfgs, work_dir, fuse=fuse, log=log)
    return [TrainedModel(spec, in_shape, data.base.n_classes, model.state_dict(), history, snapshots)
            for spec, model, (history, snapshots) in zip(specs, models, results)]


def train_members(models: list, datas: list[Tensors], cfgs: list[TrainConfig], work_dir: str | os.PathLike,
                  fuse: str | bool = "auto", log=print) -> tuple[list[tuple[pd.DataFrame, dict]], dict | None]:
    """Train freshly built in-memory models in place: one alone, a group fused or one at a
    time (:func:`~singledir.training.fusion_choice.decide_fusion`); returns per member
    (history, snapshots) and the group's decision (None for one model)."""
    work_dir = Path(work_dir)
    if len(models) == 1:
        return fit(models, datas, cfgs, work_dir, log=log), None
    decision = decide_fusion(models, datas, cfgs, work_dir, fuse=fuse, log=log)
    if decision["fuse"]:
        return fit(models, datas, cfgs, work_dir / "fused", fused=True, log=log), decision
    results = []
    for m, (model, d, cfg) in enumerate(zip(models, datas, cfgs)):
        log(f"member {m + 1}/{len(models)} (seed {cfg.seed})")
        results += fit([model], [d], [cfg], work_dir / f"member{m}", log=log)
    return results, decision


def _train_image_folder(spec: dict, data: ImageFolderData, work_dir: Path, run: RunOptions,
                        log, log_path: str | None) -> TrainedModel:
    """Step-based DDP training through torchrun (one process: in this one), or the
    pretrained ``model.weights`` without training (empty history)."""
    if spec["model"].get("weights"):
        model = build_model(spec["model"], data.in_shape, data.n_classes)
        log(f"{spec['id']}: weights {spec['model']['weights']}, no training")
        return TrainedModel(spec, data.in_shape, data.n_classes, {k: v.cpu() for k, v in model.state_dict().items()},
                            history_frame([]), {})
    steps = int(spec["train"]["steps"])
    procs = max(1, int(run.gpus_per_node))
    job = {"id": spec["id"], "model": spec["model"], "train": spec["train"], "dataset": data.dataset,
           "root": str(Path(data.root).expanduser().resolve()), "index": str(Path(data.index).resolve()),
           "labels": str(Path(data.labels).resolve()), "work_dir": str(work_dir.resolve()),
           "device": run.device, "run": {k: getattr(run, k) for k in RunOptions.__dataclass_fields__},
           "threads": max(1, int(run.threads) // procs)}
    launch(write_job(job, work_dir / "job.json"), int(run.nodes), procs, log_path=log_path, log=log)
    state = torch.load(work_dir / "resume.pt", map_location="cpu", weights_only=False)
    if state["step"] != steps and not state.get("diverged"):  # a diverged net ends early, on purpose
        raise RuntimeError(f"training stopped at step {state['step']} of {steps}; rerun to resume")
    return TrainedModel(spec, data.in_shape, data.n_classes, state["model"], history_frame(state["history"]), {})
