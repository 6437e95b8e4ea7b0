"""Checks on the unit layers an analysis hooks, for every family's models, and the error
a wrong model section of the config raises. Kept free of torchvision, whose import costs
1.7 s per job (it loads torch._dynamo): only ResNet jobs need it
(:mod:`singledir.models.resnet`, which re-exports these names)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from singledir.models.probe import probe_forward


class ModelError(ValueError):
    """A model section of the config is wrong; the message names the key and the fix."""


def call_counts(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """How often each named module runs in one forward pass of ``example`` (eval mode)."""
    counts: dict[str, int] = {}
    probe_forward(model, example, {n: m for n, m in model.named_modules() if n},
                  lambda n, out: counts.__setitem__(n, counts.get(n, 0) + 1))
    return counts


def check_unit_layers(model: nn.Module, layers: Sequence[str], example: torch.Tensor) -> None:
    """Each layer must be a module that runs exactly once per forward pass."""
    modules = dict(model.named_modules())
    unknown = [n for n in layers if n not in modules]
    if unknown:
        raise ModelError(f"analysis layers: no module named {unknown}; some of the model's modules: "
                         f"{[n for n, m in modules.items() if isinstance(m, (nn.ReLU, nn.ReLU6))][:20]}")
    calls = call_counts(model, example)
    bad = {n: calls.get(n, 0) for n in layers if calls.get(n, 0) != 1}
    if bad:
        raise ModelError(f"analysis layers: these modules do not run exactly once per forward pass "
                         f"(calls: {bad}); a forward hook on them cannot tell the calls apart. Name modules that "
                         "run once, or give the reused module separate copies as singledir.models.resnet does for ResNets")
