"""The networks of the paper (appendix A.2).

Every model is an :class:`torch.nn.Sequential` with named stages. The *units* the
analyses perturb are the outputs of the named ReLU stages (``relu1``, ``relu2``, ...):
ablation happens in activation space, after the non-linearity (paper section 2.2).
Because the models are sequential, the perturbation engine can cache the activations
up to the first perturbed layer and rerun only the rest (see :mod:`singledir.engine.perturb`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

# Appendix A.2: the 11-layer CIFAR-10 ConvNet.
CONVNET_CHANNELS = (64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512)
CONVNET_STRIDES = (1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1)


class MLP(nn.Sequential):
    """Multi-layer perceptron with ReLU on every layer but the output.

    ``dropout`` (probability of zeroing a unit during training) is applied after each
    hidden ReLU, so in eval mode the analysed unit is exactly the ReLU output.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], n_classes: int, dropout: float = 0.0):
        stages: "OrderedDict[str, nn.Module]" = OrderedDict(flatten=nn.Flatten())
        prev = in_features
        for i, width in enumerate(hidden, start=1):
            stages[f"fc{i}"] = nn.Linear(prev, width)
            stages[f"relu{i}"] = nn.ReLU()
            if dropout > 0:
                stages[f"dropout{i}"] = nn.Dropout(dropout)
            prev = width
        stages["output"] = nn.Linear(prev, n_classes)
        super().__init__(stages)
        self.unit_layers = [f"relu{i}" for i in range(1, len(hidden) + 1)]


class ConvNet(nn.Sequential):
    """The paper's 11-layer CIFAR-10 ConvNet (appendix A.2).

    3x3 kernels (padding 1), channels and strides as in the paper, each scaled by
    ``width`` (1.0 = paper size; small values make it CPU-sized). The paper leaves the
    head unspecified; we use global average pooling followed by one linear layer, so
    the last layer's feature maps feed the logits linearly.

    Initialization (paper silent): He (Kaiming-normal, fan-in) for every convolution,
    with or without batch norm. PyTorch's default init shrinks the signal about
    sqrt(6)-fold per ReLU layer, which leaves the 11-layer net without batch norm
    barely trainable by SGD; He init keeps both variants trainable, so the batch-norm
    comparison (Figs. 5b, 6) compares trained networks.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 10, width: float = 1.0,
                 batch_norm: bool = True, channels: Sequence[int] = CONVNET_CHANNELS,
                 strides: Sequence[int] = CONVNET_STRIDES):
        if len(channels) != len(strides):
            raise ValueError("channels and strides must have the same length")
        stages: "OrderedDict[str, nn.Module]" = OrderedDict()
        prev = in_channels
        for i, (c, s) in enumerate(zip(channels, strides), start=1):
            c = max(1, int(round(c * width)))
            stages[f"conv{i}"] = nn.Conv2d(prev, c, 3, stride=s, padding=1, bias=not batch_norm)
            if batch_norm:
                stages[f"bn{i}"] = nn.BatchNorm2d(c)
            stages[f"relu{i}"] = nn.ReLU()
            prev = c
        stages["pool"] = nn.AdaptiveAvgPool2d(1)
        stages["flatten"] = nn.Flatten()
        stages["output"] = nn.Linear(prev, n_classes)
        super().__init__(stages)
        self.unit_layers = [f"relu{i}" for i in range(1, len(channels) + 1)]
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)


def build_net(arch: dict, in_shape: Sequence[int], n_classes: int) -> nn.Sequential:
    """Build a model from the ``model`` section of a model spec.

    ``in_shape`` is (C, H, W) of one input example.
    """
    kind = arch["arch"]
    if kind == "mlp":
        in_features = 1
        for d in in_shape:
            in_features *= int(d)
        return MLP(in_features, arch["hidden"], n_classes, dropout=arch.get("dropout", 0.0))
    if kind == "convnet":
        return ConvNet(in_channels=int(in_shape[0]), n_classes=n_classes, width=arch.get("width", 1.0),
                       batch_norm=arch.get("batch_norm", True))
    raise ValueError(f"model.arch: unknown architecture {kind!r}; choose 'mlp' or 'convnet'")


def unit_layers(model: nn.Module) -> list[str]:
    """Names of every layer whose output units the analyses may perturb."""
    layers = getattr(model, "unit_layers", None)
    if layers is None:
        raise ValueError("model has no `unit_layers`; pass the layer names explicitly")
    return list(layers)


def resolve_layers(model: nn.Module, layers: Sequence[str] | str | int) -> list[str]:
    """Turn a layer selection from config into module names.

    ``"all"`` selects every unit layer, a negative integer ``-k`` the last k unit layers
    (the paper ablates the last three layers of the ConvNet and ResNet), and a list
    names the layers explicitly. An unknown name is a clear error.
    """
    available = unit_layers(model)
    if layers == "all":
        return available
    if isinstance(layers, int):
        if layers >= 0 or -layers > len(available):
            raise ValueError(f"layers: {layers} must be between -1 and -{len(available)} (last k layers)")
        return available[layers:]
    names = list(layers)
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules:
            raise ValueError(f"layers: unknown layer {name!r}; this model's unit layers are {available}")
    return names
