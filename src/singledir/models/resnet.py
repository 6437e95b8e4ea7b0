"""Torchvision classification models with analysable unit layers (paper section 3.4, appendix A.2).

The analyses perturb the outputs of *unit layers* through forward hooks on named modules
(:mod:`singledir.engine.perturb`), so every unit layer must be its own module, called exactly
once per forward pass. Any torchvision classification model can be used (``model.name``
in config); this module makes its unit layers hookable.

ResNets: which module outputs are a layer, and why
--------------------------------------------------
The paper analyses 49 layers of its 50-layer ResNet: every convolution's output after its
ReLU (the 50th layer is the linear classifier, which has no ReLU). For torchvision's
ResNet-50 (blocks 3, 4, 6, 3 of :class:`torchvision.models.resnet.Bottleneck`) these are

- ``relu``: the stem (7x7 convolution, batch norm, ReLU), before the max-pool. Zeroing a
  feature map before the max-pool is the same as zeroing it after (the max of zeros is
  zero), so the choice does not change any ablation.
- for each of the 16 bottleneck blocks ``layer{s}.{b}``: ``relu1`` (after conv1/bn1, the
  1x1 reduction), ``relu2`` (after conv2/bn2, the 3x3 convolution) and ``relu3`` (after
  conv3/bn3 *plus the residual connection*: the block's output, which is what the next
  block and the skip path see).

1 + 16 x 3 = 49 layers, in forward order (:func:`resnet_unit_layers`). Torchvision's
blocks call one ``relu`` module three times, so a hook on it would fire three times per
block; :func:`make_analysable` gives each block three separate ReLU modules ``relu1``,
``relu2``, ``relu3`` (two for :class:`~torchvision.models.resnet.BasicBlock`:
``relu1``, ``relu2``) and leaves every parameter and buffer name unchanged, so
torchvision's pretrained weights load as they are. All ReLUs become out-of-place, so a
stored activation is never overwritten.

The L1 norm of a unit's filter (appendix A.4) is taken over the weights of the
convolution that produces it: ``conv1`` for the stem, ``conv1/2/3`` of the block for
``relu1/2/3`` (for ``relu3`` this is the residual branch's last convolution; the skip
path has no filter of its own for most blocks).

Torchvision's block layout differs from the paper's text in one detail: torchvision
("ResNet v1.5") strides in the 3x3 convolution of the *first* block of stages 2-4, the
paper's (TF-slim v1) layout in the *last* block of stages 1-3. Depth, widths and the 49
unit layers are the same.

Other models
------------
For a non-ResNet model the unit layers are its ``nn.ReLU``/``nn.ReLU6`` modules that run
exactly once per forward pass (found with one probe forward). The analyses take "all" of
them, the last k (``-k``), or any list of module names (``analysis.unit_layers`` and
``analysis.ablation_layers`` in config); :func:`check_unit_layers` rejects a named module
that runs more than once per forward pass (its hook could not tell the calls apart).

Width
-----
``model.width`` scales every ResNet stage width (stem and the four stages); the narrow
networks keep torchvision's block structure and forward, which is how the demo's
CPU-sized stand-in is built.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

# ModelError and the unit-layer check live in a torchvision-free module: importing
# torchvision costs 1.7 s (it loads torch._dynamo), which jobs on MLPs and ConvNets skip.
from singledir.models.layer_check import ModelError, call_counts, check_unit_layers  # noqa: F401


class AnalysableBottleneck(Bottleneck):
    """torchvision's Bottleneck with a separate ReLU module after each convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


class AnalysableBasicBlock(BasicBlock):
    """torchvision's BasicBlock with a separate ReLU module after each convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


_BLOCK_RELUS = {Bottleneck: ("relu1", "relu2", "relu3"), BasicBlock: ("relu1", "relu2")}
_ANALYSABLE = {Bottleneck: AnalysableBottleneck, BasicBlock: AnalysableBasicBlock}
# Module order of the analysable blocks (forward order, so printing the model reads
# like its forward pass); parameter and buffer names are unchanged.
_ORDER = {Bottleneck: ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "downsample", "relu3"),
          BasicBlock: ("conv1", "bn1", "relu1", "conv2", "bn2", "downsample", "relu2")}


def _reorder(block: nn.Module, base: type) -> None:
    mods = block._modules
    order = [k for k in _ORDER[base] if k in mods] + [k for k in mods if k not in _ORDER[base]]
    block._modules = OrderedDict((k, mods[k]) for k in order)


def resnet_unit_layers(model: ResNet) -> list[str]:
    """The documented unit layers of a ResNet, in forward order (49 for ResNet-50)."""
    names = ["relu"]
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for b, block in enumerate(getattr(model, stage)):
            base = next(k for k in _BLOCK_RELUS if isinstance(block, k))
            names += [f"{stage}.{b}.{r}" for r in _BLOCK_RELUS[base]]
    return names


def _resnet_unit_weights(model: ResNet) -> dict[str, str]:
    """Unit layer -> the convolution that produces it (for the filter L1 norm)."""
    out = {"relu": "conv1"}
    for name in resnet_unit_layers(model)[1:]:
        block, relu = name.rsplit(".", 1)
        out[name] = f"{block}.conv{relu[-1]}"
    return out


def make_analysable(model: nn.Module, example: torch.Tensor | None = None,
                    unit_layers: Sequence[str] | None = None) -> nn.Module:
    """Give ``model`` hookable unit layers (in place) and set ``model.unit_layers``.

    ResNets get the 49-layer (ResNet-50) convention documented above. Other models use
    ``unit_layers`` if given, else every ReLU module called exactly once by a forward
    pass of ``example`` (needed for them). All ReLUs become out-of-place.
    """
    for m in model.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            m.inplace = False
    if isinstance(model, ResNet):
        for m in list(model.modules()):
            base = type(m)
            if base in _ANALYSABLE:
                m.__class__ = _ANALYSABLE[base]
                for r in _BLOCK_RELUS[base]:
                    m.add_module(r, nn.ReLU())
                del m.relu
                _reorder(m, base)
            elif isinstance(m, (Bottleneck, BasicBlock)) and base not in _ANALYSABLE.values():
                raise ModelError(f"unsupported residual block type {base.__name__}")
        model.unit_layers = list(unit_layers) if unit_layers else resnet_unit_layers(model)
        model.unit_weights = _resnet_unit_weights(model)
    else:
        if unit_layers:
            model.unit_layers = list(unit_layers)
        else:
            if example is None:
                raise ModelError("finding the unit layers of a non-ResNet model needs an example input")
            calls = call_counts(model, example)
            # May be empty (e.g. SiLU networks): the analyses then need explicit module names.
            model.unit_layers = [n for n, m in model.named_modules()
                                 if isinstance(m, (nn.ReLU, nn.ReLU6)) and calls.get(n) == 1]
    if example is not None:
        check_unit_layers(model, model.unit_layers, example)
    return model


class ScaledResNet(ResNet):
    """torchvision's ResNet with every stage width multiplied by ``width``.

    Same blocks, stem, forward and initialization as torchvision's; only the channel
    counts (stem 64 and stages 64/128/256/512 before the block expansion) are scaled.
    """

    def __init__(self, block, layers: Sequence[int], num_classes: int, width: float,
                 groups: int = 1, width_per_group: int = 64):
        nn.Module.__init__(self)
        w = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = w[0], 1, groups, width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, w[0], layers[0])
        self.layer2 = self._make_layer(block, w[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, w[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, w[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w[3] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def classification_models() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def _is_checkpoint(weights: str, name: str) -> bool:
    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return True
    return weights not in enum.__members__


def checkpoint_file(spec: dict) -> str | None:
    """The checkpoint path named by ``model.weights``, or None (no weights, or torchvision's)."""
    weights = spec.get("weights")
    if not weights or not _is_checkpoint(str(weights), spec.get("name", "resnet50")):
        return None
    return str(weights)


def _state_dict_of(obj) -> dict:
    """The weights inside a checkpoint: ours (``state_dict``), a resume file (``model``) or a raw one."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError("model.weights: the checkpoint holds no state_dict (a dict of tensors, or a dict "
                         "with a 'state_dict' or 'model' entry)")
    # DistributedDataParallel prefixes every name with "module."
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def build_torchvision(spec: dict, n_classes: int, example: torch.Tensor | None = None) -> nn.Module:
    """Build the model of a ``model`` config section with ``arch: torchvision``.

    ``name``: any torchvision classification model (``torchvision.models.list_models``).
    ``weights``: null (random init from the global torch seed), a torchvision weights
    name (``DEFAULT``, ``IMAGENET1K_V1``, ...: downloaded through torchvision into the
    torch hub cache) or the path of a checkpoint file (our ``model.pt``, a training
    ``resume.pt``, or a plain state_dict). ``width`` (ResNets only) scales the stage
    widths.
    """
    name = spec.get("name", "resnet50")
    if name not in classification_models():
        raise ModelError(f"model.name: {name!r} is not a torchvision classification model; choose one of "
                         f"{classification_models()}")
    weights = spec.get("weights")
    width = float(spec.get("width", 1.0))
    if weights and not _is_checkpoint(str(weights), name):
        if width != 1.0:
            raise ModelError("model.width: pretrained torchvision weights need width 1.0")
        enum = torchvision.models.get_model_weights(name)[str(weights)]
        classes = len(enum.meta["categories"])
        if classes != n_classes:
            raise ModelError(f"model.weights: {name} {weights} predicts {classes} classes but the dataset has "
                             f"{n_classes}; use a dataset with those classes or train the model (weights: null)")
        model = torchvision.models.get_model(name, weights=str(weights))
    else:
        model = torchvision.models.get_model(name, weights=None, num_classes=n_classes)
        if width != 1.0:
            if not isinstance(model, ResNet):
                raise ModelError(f"model.width: only ResNets can be scaled; {name} cannot")
            block = type(model.layer1[0])
            counts = [len(getattr(model, f"layer{i}")) for i in range(1, 5)]
            model = ScaledResNet(block, counts, n_classes, width, model.groups, model.base_width)
        if weights:
            path = Path(os.path.expanduser(str(weights)))
            if not path.is_file():
                raise ModelError(f"model.weights: {weights!r} is neither a weights name of {name} "
                                 f"({list(torchvision.models.get_model_weights(name).__members__)}) nor an "
                                 "existing checkpoint file")
            state = _state_dict_of(torch.load(path, map_location="cpu", weights_only=False))
            try:
                missing, unexpected = model.load_state_dict(state, strict=False)
            except RuntimeError as err:  # shapes differ
                raise ModelError(f"model.weights: {path} does not fit {name} (width {width}) with {n_classes} "
                                 f"classes: {str(err).splitlines()[1].strip()}") from None
            if missing or unexpected:
                raise ModelError(f"model.weights: {path} does not fit {name} with {n_classes} classes "
                                 f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return make_analysable(model, example)


def unit_layer_names(spec: dict, image_size: int = 224) -> list[str]:
    """Unit layers of a model spec, found on the meta device (no weights, no download, no compute)."""
    light = {k: v for k, v in spec.items() if k != "weights"}
    with torch.device("meta"):
        model = build_torchvision(light, n_classes=1000, example=torch.zeros(1, 3, image_size, image_size))
    return list(model.unit_layers)
