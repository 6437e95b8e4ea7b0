"""One eval-mode forward pass of one example with forward hooks: how the model's shapes and
call structure are read (unit-layer sizes, how often each module runs)."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn


@torch.no_grad()
def probe_forward(model: nn.Module, example: torch.Tensor, modules: Mapping[str, nn.Module],
                  on_output: Callable[[str, torch.Tensor], None]) -> None:
    """Run ``example[:1]`` through ``model`` in eval mode, calling ``on_output(name, output)``
    each time a module of ``modules`` (name -> module) runs; hooks and the train/eval mode are
    restored afterwards, even on error."""
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: on_output(n, o)) for n, m in modules.items()]
    was = model.training
    model.eval()
    try:
        model(example[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was)
