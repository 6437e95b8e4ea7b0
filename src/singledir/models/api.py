"""One model API for every family: build, save, load, and the unit layers the analyses use.

The workflow's scripts and the library call only these functions; which architecture a
model has (``model.arch``: ``mlp`` / ``convnet`` from :mod:`singledir.models.nets`,
``torchvision`` from :mod:`singledir.models.resnet`) is decided here, once.

``model.pt`` (one schema for every family; written by :func:`save_trained`)
--------------------------------------------------------------------------
``spec``        the model's spec from the config (``id``, ``experiment``, ``model``, ``train``, ...)
``in_shape``    (C, H, W) of one input example
``n_classes``   number of classes of the output layer
``state_dict``  the final weights, on the CPU
``snapshots``   ``{epoch: state_dict}`` saved during training (``{}`` when none: the
                step-based ImageNet training keeps none)

``history.csv`` (one file per model, written next to ``model.pt``)
--------------------------------------------------------------------
One schema for every mode of training (:data:`singledir.training.core.HISTORY_COLUMNS`):
``epoch``, ``step``, ``lr``, ``train_loss``, ``train_accuracy``, ``train_top5``,
``test_loss``, ``test_accuracy``, ``images_per_s``, ``train_window_loss``,
``train_window_accuracy``, ``train_window_top5``, with empty cells where a mode does not
measure a quantity (``train_accuracy`` is always an eval-mode measurement):

- epoch-based training (mnist, cifar10; :func:`singledir.training.loop.fit`): one row per
  epoch, ``epoch`` (0 = before training), ``step``, ``lr`` and the whole training and test
  sets' loss and accuracy after that epoch; ``training_auc`` joins on ``epoch``.
- step-based distributed training (imagenet; :mod:`singledir.training.distributed`): one
  row per ``train.log_every`` optimizer steps and one at the last step, ``step``, ``lr``,
  ``images_per_s`` and the train-mode means over the interval's augmented training batches
  on every process (``train_window_loss``, ``train_window_accuracy`` = top-1,
  ``train_window_top5``); only the last row has ``train_loss``, ``train_accuracy`` (top-1)
  and ``train_top5``, measured in eval mode on a fixed seeded subset of the training images
  with the net's training labels (``train.eval_train_per_class`` per class; no full-set
  evaluation, which ImageNet cannot afford). A diverged net's last row holds the
  non-finite window loss in ``train_loss``. A model taken from pretrained weights has the
  header and no rows.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from singledir.io import brief, save_torch
from singledir.models.layer_check import ModelError, check_unit_layers
from singledir.models.nets import build_net, resolve_layers

MODEL_KEYS = ("spec", "in_shape", "n_classes", "state_dict", "snapshots")
NET_ARCHS = ("mlp", "convnet")
TORCHVISION_ARCH = "torchvision"


class ModelFileError(RuntimeError):
    """A trained model file does not load; the message names it and the command that retrains it."""


def model_file_error(path: str | os.PathLike, err: BaseException) -> ModelFileError:
    return ModelFileError(
        f"{path} does not load ({brief(err)}); it is truncated or corrupt. Retrain it, and "
        f"remake everything made from it, by adding `--forcerun {path}` to the snakemake command you ran "
        f"(e.g. `snakemake --forcerun {path} all_figures --configfile config/demo.yaml`).")


def build_model(model_cfg: dict, in_shape: Sequence[int], n_classes: int) -> nn.Module:
    """The model of a ``model`` config section for inputs of ``in_shape`` (C, H, W).

    ``arch: mlp | convnet`` builds the paper's nets; ``arch: torchvision`` (the default when
    ``name`` is given) any torchvision classification model with hookable unit layers
    (``model.weights`` may load pretrained weights or a checkpoint file)."""
    arch = model_cfg.get("arch", TORCHVISION_ARCH if "name" in model_cfg else None)
    if arch in NET_ARCHS:
        return build_net(model_cfg, in_shape, n_classes)
    if arch == TORCHVISION_ARCH:
        from singledir.models.resnet import build_torchvision  # torchvision (2-3 s): only for its models

        return build_torchvision(model_cfg, n_classes, example=torch.zeros(1, *[int(d) for d in in_shape]))
    raise ValueError(f"model.arch: unknown architecture {arch!r}; choose one of {[*NET_ARCHS, TORCHVISION_ARCH]}")


def save_trained(path: str | os.PathLike, spec: dict, in_shape: Sequence[int], n_classes: int,
                 state_dict: dict, snapshots: dict | None = None) -> None:
    """Write ``model.pt`` in the one schema (module docstring), atomically; weights on the CPU."""
    save_torch({"spec": spec, "in_shape": tuple(int(d) for d in in_shape), "n_classes": int(n_classes),
                "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
                "snapshots": dict(snapshots or {})}, path)


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu",
                 snapshot: int | None = None) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from ``model.pt``: the final weights, or those of snapshot
    ``epoch``; returns (model in eval mode on ``device``, the file's contents).

    The weights come from the file, never from a download (``model.weights`` is ignored).
    A file that does not load raises :class:`ModelFileError` naming the file and the one
    command that retrains it (the file is not moved or deleted: Snakemake's
    ``--forcerun`` replaces it)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        missing = [k for k in MODEL_KEYS if k not in state]
        if missing:
            raise KeyError(f"no {missing} (keys: {sorted(state)})")
        model = build_model(dict(state["spec"]["model"], weights=None), state["in_shape"], state["n_classes"])
        model.load_state_dict(state["state_dict"] if snapshot is None else state["snapshots"][snapshot])
    except Exception as err:  # any failure here means: this file cannot be used as it is
        raise model_file_error(path, err) from err
    return model.to(device).eval(), state


def unit_layers(model: nn.Module, selection, example: torch.Tensor) -> list[str]:
    """The unit layers an analysis perturbs: ``"all"``, ``-k`` (the last k) or a list of
    module names (:func:`singledir.models.nets.resolve_layers`), each checked to run
    exactly once in a forward pass of ``example`` (:func:`singledir.models.layer_check.check_unit_layers`)."""
    layers = resolve_layers(model, selection)
    if not layers:
        raise ModelError(f"analysis layers: {type(model).__name__} has no ReLU unit layers; list the modules to "
                         "analyse in analysis.unit_layers and analysis.ablation_layers")
    check_unit_layers(model, layers, example[:1])
    return layers


def unit_weights(model: nn.Module, layer: str) -> torch.Tensor:
    """Weights of the convolution/linear module producing unit layer ``layer``, unit first
    (the filter L1 norm of appendix A.4).

    ResNets use their documented mapping (``model.unit_weights``, set by
    :func:`singledir.models.resnet.make_analysable`); other models the last convolution or
    linear module registered before ``layer``."""
    mapping = getattr(model, "unit_weights", None)
    modules = dict(model.named_modules())
    if mapping and layer in mapping:
        return modules[mapping[layer]].weight.detach()
    names = list(modules)
    if layer not in modules:
        raise ValueError(f"unit_weights: no module named {layer!r}")
    for name in reversed(names[:names.index(layer)]):
        if isinstance(modules[name], (nn.Conv2d, nn.Linear)):
            return modules[name].weight.detach()
    raise ValueError(f"unit_weights: no convolution or linear module precedes {layer!r}")
