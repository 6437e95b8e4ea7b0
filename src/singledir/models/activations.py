"""Unperturbed activations of named layers: the one place that hooks layers to read them.

:func:`iter_activations` runs the model (eval mode, no gradients) over in-memory examples
in chunks or over an iterable of ``(inputs, labels)`` batches (a DataLoader) and yields
each batch's layer outputs; :func:`collect_activations` gathers them (optionally averaged
over each feature map, which is all class selectivity and mutual information use, so a
whole validation set fits in memory); :func:`activation_moments` reduces them to the
training-set statistics that mean-ablation and the noise analysis use.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

Batches = torch.Tensor | Iterable[tuple[torch.Tensor, torch.Tensor]]


def _batches(data: Batches, chunk_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(inputs, labels)`` per batch: chunks of a tensor (no labels), or the given batches."""
    if isinstance(data, torch.Tensor):
        for i in range(0, len(data), chunk_size):
            yield data[i:i + chunk_size], None
    else:
        for x, y in data:
            yield x, y


def copy(out: torch.Tensor) -> torch.Tensor:
    """A layer output as it is when the layer returns it (later in-place operations of the
    model, such as a residual ``out += identity``, must not change what was read)."""
    return out.clone()


def spatial_mean(out: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) -> (N, C) float32: each unit's activation averaged over its feature map."""
    o = out.float()
    return o.flatten(2).mean(2) if o.dim() > 2 else o.clone()


@torch.no_grad()
def iter_activations(model: nn.Module, data: Batches, layers: Sequence[str], *, chunk_size: int = 1024,
                     device: str | torch.device | None = None, read: Callable[[torch.Tensor], torch.Tensor] = copy
                     ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor | None]]:
    """Per batch: ``({layer: read(output)}, labels)``, on the model's device.

    ``data``: a tensor of examples (run in chunks of ``chunk_size``; labels None) or an
    iterable of ``(inputs, labels)`` batches (inputs moved to ``device`` when given).
    ``read`` runs inside the hook, when the layer returns: :func:`copy` (default),
    :func:`spatial_mean` (keeps only (N, C) per batch), or any reduction to a tensor or a
    tuple of tensors with the batch first. A layer called
    more than once per forward pass gives its outputs concatenated along the batch
    dimension. The model runs in eval mode; its mode is restored afterwards."""
    was_training = model.training
    model.eval()
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    if missing:
        raise KeyError(f"layers: {missing} are not modules of the model; choose among {list(modules)[:10]} ...")
    current: dict[str, list[torch.Tensor]] = {}
    handles = [modules[name].register_forward_hook(
        lambda mod, inp, out, name=name: current.setdefault(name, []).append(read(out.detach()))) for name in layers]
    try:
        for x, y in _batches(data, chunk_size):
            current.clear()
            model(x if device is None else x.to(device))
            yield {name: _join(v) for name, v in current.items()}, y
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def _join(reads: list):
    """One layer's reads of one batch: the read itself, or (a layer called more than once)
    the reads concatenated along the batch dimension, element by element when ``read``
    returns a tuple of tensors."""
    if len(reads) == 1:
        return reads[0]
    if isinstance(reads[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*reads))
    return torch.cat(reads)


def collect_activations(model: nn.Module, data: Batches, layers: Sequence[str], *, chunk_size: int = 1024,
                        spatial: bool = False, device: str | torch.device | None = None
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """``({layer: activations of every example}, labels)`` on the CPU, in data order.

    ``spatial=True`` keeps only each unit's spatial mean, (N, C) float32
    (:func:`spatial_mean`). ``labels`` are the batches' labels concatenated, None when
    ``data`` is a tensor. See :func:`iter_activations` for ``data`` and ``device``."""
    store: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    labels: list[torch.Tensor] = []
    read = spatial_mean if spatial else (lambda out: out.to("cpu", copy=True))  # one copy, straight to the CPU
    for acts, y in iter_activations(model, data, layers, chunk_size=chunk_size, device=device, read=read):
        for name in layers:
            store[name].append(acts[name].cpu())
        if y is not None:
            labels.append(y)
    return {name: torch.cat(v) for name, v in store.items()}, (torch.cat(labels) if labels else None)


def activation_moments(model: nn.Module, x: torch.Tensor, layers: Sequence[str],
                       chunk_size: int = 1024) -> dict[str, dict[str, torch.Tensor]]:
    """Per layer: ``mean`` per element (C, ...) and ``var`` per unit (C,) over ``x``.

    The per-element mean is what mean-ablation clamps to (appendix A.1); the per-unit
    variance (over examples and, for feature maps, spatial positions) scales the noise
    of the noise analysis (section 2.2). Accumulated in float64 chunk by chunk.
    """
    acc = {name: {"n": 0, "sum": 0.0, "unit_sum": 0.0, "unit_sq": 0.0, "count": 0} for name in layers}
    as_float64 = lambda out: out.to(torch.float64, copy=True)  # noqa: E731
    for acts, _ in iter_activations(model, x, layers, chunk_size=chunk_size, read=as_float64):
        for name in layers:
            o, a = acts[name], acc[name]
            a["n"] += o.shape[0]
            a["sum"] = a["sum"] + o.sum(0)
            dims = [0] + list(range(2, o.dim()))
            a["unit_sum"] = a["unit_sum"] + o.sum(dims)
            a["unit_sq"] = a["unit_sq"] + (o * o).sum(dims)
            a["count"] += o.numel() // o.shape[1]
    out = {}
    for name in layers:
        a = acc[name]
        mu = a["unit_sum"] / a["count"]
        var = (a["unit_sq"] / a["count"] - mu * mu).clamp_min(0)
        out[name] = {"mean": (a["sum"] / a["n"]).float(), "var": var.float()}
    return out
