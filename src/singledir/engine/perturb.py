"""The perturbation engine: one code path for every ablation and noise analysis.

A *perturbation* acts on the outputs of named unit layers (post-ReLU activations); a
batch of M of them (ablation masks, fill values, noise) is a
:class:`singledir.engine.batch.PerturbationBatch`. How the engine computes (path, precision,
chunking, top-k) is one :class:`singledir.engine.options.EngineOptions`.

:func:`evaluate_perturbations` returns the loss and accuracy under each perturbation.
It picks one of two exact paths (``stats["path"]`` says which ran); the tests compare
both with the plain definition, :func:`singledir.engine.reference.reference_ablation_eval`
(a forward hook that clamps the units, one full forward pass per point):

*The channel plan* (:mod:`singledir.engine.clamp_plan`) for batches of ablation masks on an
``nn.Sequential`` of understood stages (Linear, Conv2d, BatchNorm, activations,
dropout, pooling, flatten): prefix caching (one unperturbed pass per chunk; each mask
starts at its first perturbed layer), the linear read-out (the first mixing stage after
that layer is updated by the removed units' contributions only, so a cumulative curve
is a running sum and a single unit a rank-one update; masks touching only the layer
before the final Linear share one batched matrix product), and channel sparsity
(ablated channels are constants, so later mixing stages use only kept channels).

*The generic path* for everything else (noise, non-Sequential models such as
torchvision ResNets, unknown stage types): forward hooks on the named modules.
*Prefix caching*: for an ``nn.Sequential`` model the stages up to the first perturbed
layer run once per data chunk; in eval mode (batch norm uses running statistics) the
prefix does not depend on the perturbation, so this is exact. *Masks as data*: M
perturbations are applied in one forward pass: the cached prefix activation of B
examples is repeated M times into a batch of M*B rows, and each hook views its input as
(M, B, ...) to apply the m-th mask to the m-th block. Rows per forward pass are bounded
by ``max_rows``.

Identical ablation masks (e.g. "nothing ablated" at the start of every ordering) are
evaluated once.

*Precision.* ``precision="fp32"`` (default) is exact float32 (TF32 switched off on
CUDA). On CUDA, ``"tf32"`` (TF32 matrix products) and ``"bf16"`` (bfloat16 operands,
float32 accumulation and loss) are faster; before using them the engine measures the
accuracy and loss of a subset (``options.check_examples`` examples, up to
``options.check_masks`` perturbations) in both precisions and refuses
(:class:`PrecisionError`) when they differ by more than ``options.check_tol``; the
measured differences go into ``stats``.
``"bf16"`` also runs on the CPU (slowly), so its code path is tested without a GPU.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from singledir.engine.batch import PerturbationBatch, PerturbationHooks, apply_perturbation, topk_correct
from singledir.engine.noise_source import NoiseSource
from singledir.engine.clamp_plan import ClampPlan
from singledir.engine.options import PRECISIONS, EngineOptions
from singledir.engine.reference import reference_ablation_eval


def split_sequential(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module] | None:
    """(prefix, suffix) of a Sequential model split after top-level stage ``layer``.

    Returns None for models that are not Sequential or whose layer is nested; the
    engine then runs the whole model for every perturbation.
    """
    if not isinstance(model, nn.Sequential):
        return None
    names = [n for n, _ in model.named_children()]
    if layer not in names:
        return None
    i = names.index(layer) + 1
    children = list(model.named_children())
    # Plain Sequential containers share the modules (and so the hooks) of ``model``.
    return nn.Sequential(OrderedDict(children[:i])), nn.Sequential(OrderedDict(children[i:]))


def _first_layer(model: nn.Module, layers: set[str]) -> str:
    order = [n for n, _ in model.named_modules()]
    return min(layers, key=order.index)


class PrecisionError(RuntimeError):
    """A reduced precision changed accuracy or loss by more than the allowed tolerance."""


@contextmanager
def precision_mode(precision: str, device: torch.device):
    """Matrix-product precision for the duration: exact fp32 (TF32 off) unless asked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "tf32" and device.type != "cuda":
        raise ValueError("precision: tf32 needs a CUDA device; use fp32 (exact) or bf16 on the CPU")
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def unique_masks(pert: PerturbationBatch) -> tuple[np.ndarray, np.ndarray]:
    """(first index of each distinct mask in order of appearance, inverse map (M,))."""
    layers = sorted(pert.keep)
    rows = np.concatenate([(pert.keep[n] != 0).cpu().numpy() for n in layers], axis=1)
    packed = np.packbits(rows, axis=1) if rows.shape[1] else np.zeros((len(rows), 1), np.uint8)
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[np.asarray(inverse).reshape(-1)]


@torch.no_grad()
def evaluate_perturbations(model: nn.Module, x: torch.Tensor, y: torch.Tensor, pert: PerturbationBatch, *,
                           noise: NoiseSource | None = None, options: EngineOptions = EngineOptions(),
                           stats: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy loss and accuracy under each of the M perturbations.

    Returns two float64 tensors of shape (M,) on the CPU. The model is put in eval mode.
    Noise (if any) comes from ``noise``: the draw for perturbation m and example i
    depends on neither ``options.chunk_size``, ``options.max_rows``, the path nor the
    precision (:mod:`singledir.engine.noise_source`). ``options.method`` forces a path
    (``"plan"`` raises when the channel plan does not apply; ``"reference"`` is the plain
    definition, one full forward pass per perturbation, for checking results); ``stats``,
    when given, receives the path taken, the FLOPs and time of the base and suffix work,
    and the precision check.
    """
    stats = {} if stats is None else stats
    device = x.device
    was_training = model.training
    model.eval()
    try:
        if options.precision != "fp32":
            with precision_mode(options.precision, device):  # validates before any work
                pass
            _check_precision(model, x, y, pert, noise, options, stats)
        with precision_mode(options.precision, device):
            loss_sum, correct = _evaluate(model, x, y, pert, noise, options, stats)
    finally:
        model.train(was_training)
    return (loss_sum / len(x)).cpu(), (correct / len(x)).cpu()


def _check_precision(model, x, y, pert, noise, options: EngineOptions, stats: dict) -> None:
    """Measure a reduced precision against fp32 on a subset; refuse it when too far off.
    The subset's rows keep their perturbation and example indices, so both precisions
    see the noise the full evaluation adds to them."""
    precision, tol = options.precision, options.check_tol
    n = min(len(x), max(1, options.check_examples))
    idx = np.unique(np.linspace(0, pert.n - 1, min(pert.n, max(1, options.check_masks))).round().astype(int))
    sub = pert.select(idx)
    results = {}
    for prec in ("fp32", precision):
        with precision_mode(prec, x.device):
            ls, cs = _evaluate(model, x[:n], y[:n], sub, noise, replace(options, precision=prec), {})
        results[prec] = (ls / n).cpu(), (cs / n).cpu()
    dacc = float((results[precision][1] - results["fp32"][1]).abs().max())
    dloss = float((results[precision][0] - results["fp32"][0]).abs().max())
    rel = float(((results[precision][0] - results["fp32"][0]).abs()
                 / results["fp32"][0].abs().clamp_min(1e-6)).max())
    stats["precision_check"] = {"precision": precision, "examples": n, "perturbations": len(idx),
                                "max_abs_accuracy_diff": dacc, "max_abs_loss_diff": dloss,
                                "max_rel_loss_diff": rel, "tolerance": tol}
    if dacc > tol or rel > tol:
        raise PrecisionError(f"precision {precision}: on {n} examples x {len(idx)} perturbations the accuracy "
                             f"differs from fp32 by up to {dacc:.4g} and the loss by up to {rel:.3g} (relative), "
                             f"more than the tolerance {tol}; use precision fp32")


def _evaluate(model, x, y, pert, noise, options: EngineOptions, stats: dict):
    """Summed loss and number correct per perturbation (float64, on x's device)."""
    device = x.device
    method, chunk_size, topk = options.method, options.chunk_size, options.topk
    bf16 = options.precision == "bf16"
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else None
    stats.setdefault("perturbations", pert.n)
    if method == "reference":
        stats["path"] = "reference"
        return _evaluate_reference(model, x, y, pert, noise, chunk_size, topk, autocast)
    if pert.noise_std or not pert.keep:
        stats["path"] = "generic"
        return _evaluate_generic(model, x, y, pert, noise, options, autocast)
    first, inverse = unique_masks(pert)
    stats["unique_perturbations"] = len(first)
    uniq = pert.select(first)
    plan = ClampPlan.build(model, list(uniq.keep), x[:1]) if method != "generic" else "method 'generic' was asked for"
    if isinstance(plan, str):
        if method == "plan":
            raise ValueError(f"method: the channel plan does not apply ({plan}); use method 'auto' or 'generic'")
        stats["path"], stats["fallback_reason"] = "generic", plan
        loss_sum, correct = _evaluate_generic(model, x, y, uniq, noise, options, autocast)
    else:
        stats["path"] = "plan"
        keep = {k: (v != 0).to(device) for k, v in uniq.keep.items()}
        loss_sum, correct = plan.evaluate(x, y, keep, uniq.fill, options, stats=stats)
    inv = torch.as_tensor(inverse, device=loss_sum.device)
    return loss_sum.index_select(0, inv), correct.index_select(0, inv)


def _evaluate_reference(model, x, y, pert, noise, chunk_size, topk, autocast):
    """The plain definition, one perturbation at a time: ablation masks through
    :func:`singledir.engine.reference.reference_ablation_eval` (a forward hook clamps the units,
    the whole network runs on every example); noise through a forward hook that adds
    this perturbation's noise. Slow by design (``method="reference"``)."""
    device = x.device
    loss_sum = torch.zeros(pert.n, dtype=torch.float64, device=device)
    correct = torch.zeros(pert.n, dtype=torch.float64, device=device)
    ctx = autocast if autocast is not None else contextlib.nullcontext
    n = len(x)
    if not pert.noise_std:
        fill = {name: pert.fill.get(name) for name in pert.keep}
        for m in range(pert.n):
            units = {name: (k[m] == 0).nonzero().flatten().tolist() for name, k in pert.keep.items()}
            with ctx():
                loss, acc = reference_ablation_eval(model, x, y, units, fill, batch_size=chunk_size, topk=topk)
            loss_sum[m], correct[m] = loss * n, acc * n
        return loss_sum, correct
    hooks = PerturbationHooks(model, sorted(pert.layers()), noise)
    try:
        for m in range(pert.n):
            hooks.pert = pert.slice(m, m + 1)
            for i in range(0, n, chunk_size):
                hooks.start = i
                with ctx():
                    logits = model(x[i:i + chunk_size]).float()
                yb = y[i:i + chunk_size]
                loss_sum[m] += F.cross_entropy(logits, yb, reduction="sum").double()
                correct[m] += topk_correct(logits, yb, topk).sum(dtype=torch.float64)
    finally:
        hooks.pert = None
        hooks.remove()
    return loss_sum, correct


def _evaluate_generic(model, x, y, pert, noise, options: EngineOptions, autocast):
    """Forward hooks; prefix caching for Sequential models; masks folded into the batch."""
    device = x.device
    chunk_size, max_rows, topk = options.chunk_size, options.max_rows, options.topk
    layers = pert.layers()
    loss_sum = torch.zeros(pert.n, dtype=torch.float64, device=device)
    correct = torch.zeros(pert.n, dtype=torch.float64, device=device)
    first = _first_layer(model, layers) if layers else None
    split = split_sequential(model, first) if first else None
    hooks = PerturbationHooks(model, sorted(layers), noise)
    ctx = autocast if autocast is not None else contextlib.nullcontext
    try:
        for i in range(0, len(x), chunk_size):
            xb, yb = x[i:i + chunk_size], y[i:i + chunk_size]
            b = len(xb)
            hooks.start = i  # the chunk's examples keep their indices: the noise follows them
            hooks.pert = None  # the prefix runs unperturbed, once per chunk
            with ctx():
                prefix_out = split[0](xb) if split is not None else None
            group = max(1, max_rows // b)
            for m0 in range(0, pert.n, group):
                sub = pert.slice(m0, min(pert.n, m0 + group))
                with ctx():
                    if split is not None:
                        # The prefix ends with the first perturbed layer: apply its
                        # perturbation to the cached output here; the suffix's hooks
                        # handle every later layer.
                        h = prefix_out.repeat(sub.n, *([1] * (prefix_out.dim() - 1)))
                        h = apply_perturbation(h, first, sub, noise, i)
                        hooks.pert = sub
                        logits = split[1](h)
                        hooks.pert = None
                    else:
                        hooks.pert = sub
                        logits = model(xb.repeat(sub.n, *([1] * (xb.dim() - 1))))
                        hooks.pert = None
                logits = logits.float().view(sub.n, b, -1)
                yr = yb.unsqueeze(0).expand(sub.n, b)
                loss = F.cross_entropy(logits.reshape(sub.n * b, -1), yr.reshape(-1), reduction="none")
                loss_sum[m0:m0 + sub.n] += loss.view(sub.n, b).sum(1, dtype=torch.float64)
                correct[m0:m0 + sub.n] += topk_correct(logits, yr, topk).sum(1, dtype=torch.float64)
    finally:
        hooks.pert = None
        hooks.remove()
    return loss_sum, correct
