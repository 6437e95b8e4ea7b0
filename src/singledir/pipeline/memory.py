"""Peak-memory estimate (host RAM, MB) of every job kind of the workflow, from the model's
shapes and the data's size; each rule's ``mem_mb`` resource is :func:`mem_mb` of its job's
estimate (wired in ``workflow/rules/common.smk``: ``estimated_mem_mb``), and the plan prints
both (``python -m singledir.pipeline.plan CONFIG [--json]``).

What is counted (float32 everywhere, 4 bytes per number; :data:`RUNTIME_MB` for the
interpreter, torch and a CUDA context on top of every torch job):

* **training** (``train_model``, fused ``train_group_*``): the in-memory data set (training
  and test arrays, once as loaded and once as tensors), per member the weights, their
  gradients, the optimizer's momentum and a checkpoint copy (4 x parameters), and the
  activations of one training batch kept for the backward pass (every stage's output
  and its gradient: 2 x) times the members of a fused group. An image family instead holds
  per GPU process one batch of decoded images in each data-loader worker (``num_workers``,
  with their prefetch) plus the model state.
* **ablation and noise curves, training AUC, probes** (what the engine caches,
  :mod:`singledir.engine.perturb`): the data set, the cached unperturbed activations of one
  chunk (``chunk_size`` examples, every stage), and one forward pass of ``max_rows`` rows
  (the M perturbations x B examples block: the largest stage output three times: input,
  output and the perturbed copy), the layer means/variances (one example's activations).
  An image family holds its recorded analysis subset as decoded tensors.
* **unit analysis** (``unit_analysis``/``unit_shard``): :func:`unit_analysis_peak_bytes`,
  the streaming analysis (one chunk's activations, per-unit per-class sums, per-unit
  histograms; independent of the number of images) plus the single-unit impacts' engine
  block as above.
* **data, label and figure rules**: the data set three times (raw, float, normalized) for
  ``prepare_dataset``; :data:`SMALL_MB` for the rest.

The estimate is an upper bound in intent (every cached tensor alive at once); :func:`mem_mb`
adds a margin of 1.5x and 1 GB, rounded up to whole GB.
"""

from __future__ import annotations

import json
import math

from singledir.pipeline import cost

FLOAT = 4
MB = 1 << 20
# The interpreter with torch and numpy loaded, and a CUDA context's host memory (~1-2 GB
# with the pinned torch's kernels), measured on no cluster: a deliberate round number.
RUNTIME_MB = 2500
# Figures, tables, label corruption: pandas and matplotlib on small tables.
SMALL_MB = 1000
# One decoded ImageNet training batch per data-loader worker is kept in flight `prefetch`
# times (torch's DataLoader default prefetch_factor = 2), plus the worker's own interpreter.
LOADER_PREFETCH = 2
LOADER_WORKER_MB = 400


def mem_mb(peak_mb: float) -> int:
    """The ``mem_mb`` a job asks for: 1.5 x its estimated peak plus 1 GB, in whole GB."""
    return int(math.ceil((1.5 * peak_mb + 1000) / 1000.0) * 1000)


_SHAPES_CACHE: dict = {}


def model_shapes(model_spec: dict, shape, n_classes: int) -> dict:
    """Per example: ``params`` (parameter count), ``acts`` (numbers output by every leaf
    module of one forward pass), ``largest`` (the largest single output), counted on
    torch's meta device (nothing allocated)."""
    key = json.dumps([model_spec, list(shape), n_classes], sort_keys=True, default=str)
    if key in _SHAPES_CACHE:
        return _SHAPES_CACHE[key]
    import torch  # the memory model needs torch only when asked for a model's shapes

    from singledir.models.nets import resolve_layers  # torch, as above

    sizes, unit_sizes, unit_shapes = [], [], []
    with torch.device("meta"), torch.no_grad():
        model = cost._build_meta(model_spec, shape, n_classes).eval()
        modules = dict(model.named_modules())
        leaves = [m for m in model.modules() if not list(m.children())]
        hooks = [m.register_forward_hook(lambda mod, i, o: sizes.append(o.numel() if hasattr(o, "numel") else 0))
                 for m in leaves]

        def unit_output(mod, i, o):  # returns None: a hook's return value would replace the output
            unit_sizes.append(o.numel())
            unit_shapes.append(tuple(int(d) for d in o.shape[1:]))

        hooks += [modules[n].register_forward_hook(unit_output) for n in resolve_layers(model, "all")]
        model(torch.zeros((1, *shape)))
        for h in hooks:
            h.remove()
        params = sum(p.numel() for p in model.parameters())
    out = {"params": int(params), "acts": int(sum(sizes)), "largest": int(max(sizes or [0])),
           "unit_acts": int(sum(unit_sizes)), "unit_shapes": unit_shapes}
    _SHAPES_CACHE[key] = out
    return out


def data_bytes(data: cost.DataSize) -> float:
    """An in-memory data set as float32 tensors (training and test examples, labels)."""
    return (data.n_train + data.n_test) * (math.prod(data.shape) * FLOAT + 8)


def training_peak_bytes(specs: list[dict], data: cost.DataSize, images: bool = False,
                        run_options: dict | None = None) -> float:
    """Peak host memory of one training job of ``specs`` (one model, or a fused group)."""
    opts = run_options or {}
    first = specs[0]
    s = model_shapes(first["model"], data.shape, data.n_classes)
    state = len(specs) * 4 * s["params"] * FLOAT
    if images:
        procs = int(opts.get("gpus_per_node", 1) or 1)
        per_gpu_batch = int(first["train"].get("batch_size", 32)) * max(
            1, int(first["train"].get("workers", procs)) // procs)
        image = math.prod(data.shape) * FLOAT
        workers = int(opts.get("num_workers", 4))
        loaders = workers * (LOADER_WORKER_MB * MB + LOADER_PREFETCH * per_gpu_batch * image)
        return procs * (RUNTIME_MB * MB + state + loaders)
    batch = int(first["train"].get("batch_size", 128))
    eval_batch = int(first["train"].get("eval_batch_size", 1024))
    acts = len(specs) * max(2 * batch * s["acts"], eval_batch * 2 * s["largest"]) * FLOAT
    return RUNTIME_MB * MB + 2 * data_bytes(data) + state + acts


def _engine_block_bytes(s: dict, analysis: dict) -> float:
    """The engine's working set: one chunk's cached prefix activation (at most the largest
    stage output per example), one forward pass of ``max_rows`` rows (the largest stage
    output three times: input, output, perturbed copy) and the per-element means/variances."""
    chunk = int(analysis.get("chunk_size", 1024))
    rows = int(analysis.get("max_rows", 262144))
    return (chunk * s["largest"] + 3 * rows * s["largest"] + 2 * s["unit_acts"]) * FLOAT


def analysis_data_bytes(data: cost.DataSize, analysis: dict, images: bool) -> float:
    """The examples an analysis job holds: the whole in-memory data set, or an image
    family's decoded analysis subset (the curves' training images and the impact images)."""
    if not images:
        return data_bytes(data)
    n = cost.analysis_examples(data, analysis)
    return (n["curves"] + n["impact"]) * math.prod(data.shape) * FLOAT


def curve_peak_bytes(spec: dict, data: cost.DataSize, analysis: dict, images: bool = False) -> float:
    """Peak of an ablation-curve, noise-curve, training-AUC or probe job (module docstring)."""
    s = model_shapes(spec["model"], data.shape, data.n_classes)
    return (RUNTIME_MB * MB + analysis_data_bytes(data, analysis, images) + 2 * s["params"] * FLOAT
            + _engine_block_bytes(s, analysis))


def unit_analysis_peak_bytes(spec: dict, data: cost.DataSize, analysis: dict, images: bool = False) -> float:
    """Peak of one streaming unit-analysis job, whatever the number of test images:
    :func:`singledir.analysis.unit_stream.unit_analysis_peak_bytes` (calibrated on the
    paper-width CIFAR-10 ConvNet) of the model's analysed layers, the larger of its CPU and
    GPU values (the job runs where the profile sends it), plus the data the job holds."""
    from singledir.analysis.unit_stream import unit_analysis_peak_bytes as streamed_peak  # torch: only when asked

    s = model_shapes(spec["model"], data.shape, data.n_classes)
    common = dict(layer_shapes=s["unit_shapes"], n_params=s["params"],
                  batch_size=int(analysis.get("chunk_size", 1024)), n_classes=data.n_classes,
                  n_bins=int(analysis.get("mi_bins", 10)), max_rows=int(analysis.get("max_rows", 65536)),
                  data_bytes=int(analysis_data_bytes(data, analysis, images)))
    return float(max(streamed_peak(device=d, **common) for d in ("cpu", "cuda")))

def prepare_dataset_peak_bytes(data: cost.DataSize) -> float:
    """Loading and converting a data set: raw, float and normalized copies at once."""
    return RUNTIME_MB * MB + 3 * data_bytes(data)


def small_peak_bytes() -> float:
    return SMALL_MB * MB
