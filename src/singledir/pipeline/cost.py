"""Cost model of a config: FLOPs counted from each model's architecture and its data size,
divided by a throughput.

* **FLOPs per example** are counted, not guessed: :func:`model_flops` builds the model (on
  torch's ``meta`` device, so nothing is computed or allocated) and runs one forward pass
  and one forward + backward pass of a cross-entropy loss under
  :class:`torch.utils.flop_counter.FlopCounterMode`, the counter the benchmark's training
  FLOP count (:func:`singledir.bench.mlp_training_flops`) is tested against.
* **Training** (:func:`training_flops`), as :func:`singledir.training.loop.fit` does it: per
  epoch a forward + backward pass over the training set, and a forward pass over the
  training and test sets for each history row (epochs + 1 rows); step-based training
  (the imagenet family) is steps x global batch forward + backward passes.
* **Analysis** (:func:`analysis_flops`): one cumulative-ablation curve per model evaluated
  the naive way (orderings x curve points full forward passes over the evaluation
  examples). It is an upper bound on the largest analysis: the engine reuses cached
  activations (10-30x fewer FLOPs, see the README's benchmark) and the noise and
  single-unit analyses are smaller at the shipped settings.
* **Throughputs** (:func:`throughputs`): ``cost.cpu_flops_per_s`` / ``cost.gpu_flops_per_s``
  in the config; else, for the CPU, the sequential-training FLOP/s that
  ``python -m singledir.bench`` measured on this machine (``results/bench.csv``); else the
  defaults below. Each estimate says where its rate came from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from singledir.data.check import npz_headers

# Sustained FLOP/s when no config value or benchmark is available (documented in the
# schema under `cost`): about what sequential training of the paper's small MLPs reaches on
# the 2-core development machine, and about a fifth of an H100's dense TF32 peak (small
# networks keep a GPU far from its peak; measure with the benchmark to do better).
DEFAULT_CPU_FLOPS = 3e10
DEFAULT_GPU_FLOPS = 2e13

# Sizes of the datasets the workflow can download, without downloading them.
KNOWN_DATASETS = {
    "MNIST": (60000, 10000, (1, 28, 28), 10),
    "CIFAR10": (50000, 10000, (3, 32, 32), 10),
}
SKLEARN_DIGITS = 1797
IMAGENET = (1281167, 50000, 1000)


@dataclass
class DataSize:
    n_train: int
    n_test: int
    shape: tuple
    n_classes: int
    name: str


def _npz_shapes(path) -> dict:
    """Array name -> shape of an .npz file, read from the headers only (by the data check,
    :func:`singledir.data.check.npz_headers`, which the config check has run on it)."""
    return {name: shape for name, (shape, _) in npz_headers(path).items()}


def _image_shape(shape) -> tuple:
    """(C, H, W) of one example from an array's shape (N, H, W), (N, C, H, W) or (N, H, W, C)."""
    rest = tuple(int(d) for d in shape[1:])
    if len(rest) == 2:
        return (1, *rest)
    if len(rest) == 3 and rest[-1] in (1, 3) and rest[0] not in (1, 3):
        return (rest[2], rest[0], rest[1])
    return rest


def _split(n: int, spec: dict) -> tuple[int, int]:
    n_test = int(round(n * float(spec.get("test_fraction", 0.2))))
    return n - n_test, n_test


def dataset_size(spec: dict) -> DataSize:
    """Training/test example counts and the example shape of a ``dataset`` section,
    without loading the images."""
    source = spec.get("source")
    up = int(spec.get("upsample", 1))
    if source == "sklearn_digits" or spec.get("generate") == "sklearn_digits":
        n_train, n_test = _split(SKLEARN_DIGITS, spec)
        if source == "imagefolder":
            size = int(spec.get("image_size", 8 * up))
            out = DataSize(n_train, n_test, (3, size, size), 10, "8x8 digits (image folder)")
        else:
            out = DataSize(n_train, n_test, (int(spec.get("channels", 1)), 8 * up, 8 * up), 10, "sklearn digits")
    elif source == "torchvision":
        n_train, n_test, shape, classes = KNOWN_DATASETS[spec["name"]]
        out = DataSize(n_train, n_test, shape, classes, spec["name"])
    elif source == "npz":
        path = Path(os.path.expanduser(str(spec["path"])))
        shapes = _npz_shapes(path)
        arrays = spec.get("arrays", {}) or {}
        xtr = arrays.get("x_train", "x_train")
        if xtr in shapes:
            xte = arrays.get("x_test", "x_test")
            n_train, n_test, shape = shapes[xtr][0], shapes[xte][0], _image_shape(shapes[xtr])
        else:
            x = shapes[arrays.get("x", "x")]
            (n_train, n_test), shape = _split(x[0], spec), _image_shape(x)
        out = DataSize(int(n_train), int(n_test), shape, int(spec.get("n_classes") or 10), path.name)
    elif source in ("imagenet", "imagefolder"):
        size = int(spec.get("image_size", 224))
        n_train, n_test, classes = IMAGENET
        out = DataSize(n_train, n_test, (3, size, size), classes, "ImageNet" if source == "imagenet" else "image folder")
    else:
        raise ValueError(f"dataset.source: unknown source {source!r}")
    if spec.get("train_limit"):
        out.n_train = min(out.n_train, int(spec["train_limit"]))
    return out


_FLOPS_CACHE: dict = {}


def model_flops(model_spec: dict, shape, n_classes: int) -> tuple[float, float]:
    """(forward FLOPs, forward + backward FLOPs) per example of the model a ``model``
    section builds, counted by torch's FLOP counter on one forward and one training step."""
    key = json.dumps([model_spec, list(shape), n_classes], sort_keys=True, default=str)
    if key in _FLOPS_CACHE:
        return _FLOPS_CACHE[key]
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    batch = 2  # batch norm in training mode needs more than one example
    spec = dict(model_spec)
    with torch.device("meta"):
        if spec.get("arch") == "torchvision":
            from singledir.models.resnet import build_torchvision  # torchvision: only for its models
            spec["weights"] = None  # the architecture, not the weights, sets the cost
            model = build_torchvision(spec, n_classes)
        else:
            from singledir.models.nets import build_net  # torch, as above: importing the cost model needs none
            model = build_net(spec, shape, n_classes)
        x = torch.zeros((batch, *shape))
        y = torch.zeros(batch, dtype=torch.long)
        model.eval()
        with FlopCounterMode(display=False) as fwd, torch.no_grad():
            model(x)
        model.train()
        with FlopCounterMode(display=False) as step:
            F.cross_entropy(model(x), y).backward()
    out = (fwd.get_total_flops() / batch, step.get_total_flops() / batch)
    _FLOPS_CACHE[key] = out
    return out


def training_flops(spec: dict, data: DataSize) -> float:
    """FLOPs of training one model (a model spec from :func:`singledir.pipeline.plan.model_specs`)."""
    fwd, step = model_flops(spec["model"], data.shape, data.n_classes)
    train = spec["train"]
    if "steps" in train:
        batch = int(train.get("workers", 1)) * int(train.get("batch_size", 32))
        return float(train["steps"]) * batch * step
    epochs = int(train["epochs"])
    # The reliance penalty (singledir.training.regularizers) runs one extra forward pass of
    # each batch under a random cumulative ablation; its gradient flows through that pass
    # too, so it costs a second training step's worth of work per batch.
    steps_per_example = 2 if train.get("regularizer") == "reliance" else 1
    return (epochs * data.n_train * step * steps_per_example
            + (epochs + 1) * (data.n_train + data.n_test) * fwd)


def analysis_flops(spec: dict, data: DataSize, analysis: dict) -> float:
    """FLOPs of one naive cumulative-ablation curve of one model (an upper bound on the
    engine's cost of its largest analysis; see the module docstring)."""
    fwd, _ = model_flops(spec["model"], data.shape, data.n_classes)
    n_eval = int(analysis.get("eval_examples") or 0) or data.n_train
    if "train_per_class" in analysis:  # imagenet: the recorded class-balanced subset
        n_eval = int(analysis["train_per_class"] or 0) * data.n_classes or data.n_train
    n_eval = min(n_eval, data.n_train)
    return float(analysis.get("orderings", 10)) * int(analysis.get("curve_points", 21)) * n_eval * fwd


def _bench_training_rate(path) -> float | None:
    try:
        import pandas as pd

        table = pd.read_csv(path)
    except (OSError, ValueError, ImportError):
        return None
    rows = table[(table.benchmark == "fused_training") & (table.metric == "sequential_flops_per_s")]
    return float(rows.value.iloc[0]) if len(rows) else None


def throughputs(config: dict, bench_csv="results/bench.csv") -> dict:
    """{'cpu': (FLOP/s, where from), 'gpu': (FLOP/s, where from)}."""
    cost = config.get("cost", {}) or {}
    out = {}
    if cost.get("cpu_flops_per_s"):
        out["cpu"] = (float(cost["cpu_flops_per_s"]), "cost.cpu_flops_per_s")
    else:
        rate = _bench_training_rate(bench_csv) if Path(bench_csv).is_file() else None
        out["cpu"] = ((rate, f"measured by python -m singledir.bench ({bench_csv})") if rate
                      else (DEFAULT_CPU_FLOPS, "default (set cost.cpu_flops_per_s, or run python -m singledir.bench)"))
    if cost.get("gpu_flops_per_s"):
        out["gpu"] = (float(cost["gpu_flops_per_s"]), "cost.gpu_flops_per_s")
    else:
        out["gpu"] = (DEFAULT_GPU_FLOPS, "default (set cost.gpu_flops_per_s)")
    return out
