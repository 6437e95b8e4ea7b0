"""Cost model of a config: FLOPs counted from each model's architecture and its data size,
divided by a throughput, with a per-step overhead that makes small batches dear.

* **FLOPs per example** are counted, not guessed: :func:`model_flops` builds the model (on
  torch's ``meta`` device, so nothing is computed or allocated) and runs one forward pass
  and one forward + backward pass of a cross-entropy loss under
  :class:`torch.utils.flop_counter.FlopCounterMode`, the counter the benchmark's training
  FLOP count (:func:`singledir.bench.mlp_training_flops`) is tested against.
  :func:`layer_profile` counts the same forward pass stage by stage: per unit layer its
  units and the FLOPs of everything after it.
* **Training** (:func:`training_flops`), as :func:`singledir.training.loop.fit` does it: per
  epoch a forward + backward pass over the training set, and a forward pass over the
  training and test sets for each history row (the snapshot epochs and the final epoch);
  step-based training (the imagenet family) is steps x global batch forward + backward passes.
* **Analysis** (:func:`curve_flops`, :func:`noise_flops`, :func:`unit_flops`, per job kind
  in :func:`analysis_job_flops`), as the engine (:mod:`singledir.engine.perturb`) computes
  it: one unperturbed forward pass per example (the cached prefix), then per perturbation
  the stages *after its first perturbed layer* (an ``nn.Sequential`` model; ablating a unit
  of layer L recomputes only what follows L) or the whole model (the generic path: the
  torchvision ResNets). A cumulative curve's first perturbed layer is random: its expected
  cost is counted exactly from the hypergeometric law of the first ablated layer; the
  nothing-ablated point is the cached pass and the all-ablated point is evaluated once
  (identical masks). Counted per job: ablation curves (+ one pass over the training set for
  mean ablation's means), noise curves (+ the variance pass), unit analyses (selectivity/MI
  pass over the test examples, then one single-unit ablation per unit on the impact
  examples), training AUC (a curve per snapshot), beyond-the-paper probes (a curve and four
  evaluations per snapshot). Not counted: the engine's further savings (the linear read-out
  of the first stage after the ablated layer, channel sparsity; the benchmark measures a
  20-35x total against naive passes), so analysis counts are an upper bound on the engine's
  arithmetic, but no longer one on naive full passes.
* **Throughputs** (:func:`throughputs`): ``cost.cpu_flops_per_s`` / ``cost.gpu_flops_per_s``
  in the config; else, for the CPU, the sequential-training FLOP/s that
  ``python -m singledir.bench`` measured on this machine (``results/bench.csv``), and for
  the GPU the rate the one-shot GPU check (``python -m singledir.bench --device cuda``)
  measured (:func:`gpu_check_calibration`); else the defaults below. Each estimate says
  where its rate came from.
* **Batch size** (:func:`training_seconds`): a step costs ``FLOPs / rate + overhead``, the
  overhead (kernel launches, the optimizer, Python) fixed per step whatever the batch, so a
  net trained at batch 16 costs far more time than the same FLOPs at batch 2048. GPU:
  :data:`DEFAULT_GPU_STEP_OVERHEAD_S` per step unless the GPU check measured it (one
  ConvNet step and K fused ConvNet steps, K times the FLOPs, give rate and overhead).
  CPU: no overhead (the measured CPU rate already is a sequential-training rate).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from singledir.data.check import npz_headers
from singledir.training.convergence import reference_epoch

# Sustained FLOP/s when no config value or benchmark is available (documented in the
# schema under `cost`): about what sequential training of the paper's small MLPs reaches on
# the 2-core development machine, and about a fifth of an H100's dense TF32 peak (small
# networks keep a GPU far from its peak; measure with the benchmark to do better).
DEFAULT_CPU_FLOPS = 3e10
DEFAULT_GPU_FLOPS = 2e13
# Fixed time of one training step on a GPU, whatever its batch (assumed, not measured here):
# an eager PyTorch step of the 11-layer ConvNet launches ~100 kernels (forward, backward,
# batch norm, SGD) at ~10-20 us each, plus Python, so ~2 ms; at the default rate a batch-128
# ConvNet step computes for 12 ms, a batch-16 step for 1.5 ms (then the overhead dominates).
DEFAULT_GPU_STEP_OVERHEAD_S = 2e-3
# Where the GPU check's CSV is looked for when the plan is not told (the CPU benchmark and
# the GPU check both write results/bench.csv unless given another path).
GPU_CHECK_CSVS = ("results/gpu_check.csv", "results/bench.csv")

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


def eval_rows(train: dict) -> int:
    """History rows of an epoch-based training (each evaluates the training and test sets):
    the snapshot epochs, the final epoch and the convergence reference epoch
    (:func:`singledir.training.loop.fit`, :func:`singledir.training.convergence.reference_epoch`)."""
    epochs = int(train["epochs"])
    return len(set(int(e) for e in train.get("snapshot_epochs", []) or []) | {epochs, reference_epoch(epochs)})


def training_steps(spec: dict, data: DataSize) -> int:
    """Optimizer steps of training one model (for the per-step overhead)."""
    train = spec["train"]
    if "steps" in train:
        return int(train["steps"])
    return int(train["epochs"]) * -(-data.n_train // int(train.get("batch_size", 128)))


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
            + eval_rows(train) * (data.n_train + data.n_test) * fwd)


def training_seconds(spec: dict, data: DataSize, rate: float, step_overhead_s: float) -> float:
    """Time of training one model: its FLOPs at ``rate`` plus ``step_overhead_s`` per step."""
    return training_flops(spec, data) / rate + training_steps(spec, data) * step_overhead_s


@dataclass
class LayerProfile:
    """Forward FLOPs per example of a model and, per unit layer (in forward order), its units
    and the FLOPs of the forward pass after it (what a perturbation there recomputes)."""
    fwd: float
    units: dict
    after: dict
    sequential: bool


_PROFILE_CACHE: dict = {}


def _build_meta(model_spec: dict, shape, n_classes: int):
    spec = dict(model_spec)
    if spec.get("arch") == "torchvision":
        from singledir.models.resnet import build_torchvision  # torchvision: only for its models
        spec["weights"] = None  # the architecture, not the weights, sets the cost
        return build_torchvision(spec, n_classes)
    from singledir.models.nets import build_net  # torch, as in model_flops: importing the cost model needs none
    return build_net(spec, shape, n_classes)


def layer_profile(model_spec: dict, shape, n_classes: int) -> LayerProfile:
    """The :class:`LayerProfile` of a model spec, counted on the meta device stage by stage
    (an ``nn.Sequential``); a model the engine cannot split (generic path) recomputes the
    whole forward pass for every perturbation, so there ``after`` is the full pass."""
    key = json.dumps([model_spec, list(shape), n_classes], sort_keys=True, default=str)
    if key in _PROFILE_CACHE:
        return _PROFILE_CACHE[key]
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from singledir.models.nets import resolve_layers  # torch, as above

    with torch.device("meta"), torch.no_grad():
        model = _build_meta(model_spec, shape, n_classes).eval()
        layers = resolve_layers(model, "all")
        x = torch.zeros((1, *shape))
        units: dict = {}
        if isinstance(model, nn.Sequential):
            done, through = 0.0, {}
            for name, child in model.named_children():
                with FlopCounterMode(display=False) as c:
                    x = child(x)
                done += c.get_total_flops()
                if name in layers:
                    units[name], through[name] = int(x.shape[1]), done
            fwd = done
            after = {n: fwd - through[n] for n in units}
        else:
            modules = dict(model.named_modules())
            hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: units.__setitem__(n, int(o.shape[1])))
                     for n in layers]
            with FlopCounterMode(display=False) as c:
                model(x)
            for h in hooks:
                h.remove()
            fwd = float(c.get_total_flops())
            units = {n: units[n] for n in layers}
            after = {n: fwd for n in layers}
    out = LayerProfile(float(fwd), units, after, isinstance(model, nn.Sequential))
    _PROFILE_CACHE[key] = out
    return out


def selected_layers(profile: LayerProfile, selection) -> list[str]:
    """The unit layers an analysis setting selects (``"all"``, ``-k``, or names), as
    :func:`singledir.models.nets.resolve_layers` resolves them."""
    names = list(profile.units)
    if selection in (None, "all"):
        return names
    if isinstance(selection, int):
        return names[selection:]
    return [n for n in names if n in set(selection)]


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def curve_point_counts(n_units: int, n_points: int) -> list[int]:
    """The curve's numbers of ablated units (:func:`singledir.engine.ablation.curve_points`)."""
    return sorted(set(int(v) for v in np.rint(np.linspace(0, n_units, n_points))))


def curve_flops(profile: LayerProfile, layers: list[str], n_examples: int, orderings: int, points: int) -> float:
    """FLOPs of one cumulative-ablation curve job (module docstring): the cached pass, then
    per ordering and point the expected cost after its first ablated layer."""
    sizes = [profile.units[n] for n in layers]
    after = [profile.after[n] for n in layers]
    total = sum(sizes)
    starts = np.cumsum([0] + sizes[:-1])
    per_example = profile.fwd
    for k in curve_point_counts(total, points):
        if k == 0:
            continue  # nothing ablated: the cached unperturbed pass
        # P(no ablated unit among the first m units of the forward order) = C(N-m, k) / C(N, k)
        q = [math.exp(_log_comb(total - m, k) - _log_comb(total, k)) if total - m >= k else 0.0 for m in starts]
        q.append(0.0)
        expected = sum((q[j] - q[j + 1]) * after[j] for j in range(len(layers)))
        per_example += expected * (1 if k == total else orderings)  # all ablated: one identical mask
    return n_examples * per_example


def noise_flops(profile: LayerProfile, layers: list[str], n_examples: int, n_moments: int, rows: int) -> float:
    """A noise-curve job: the variance pass over the training data, the cached pass, then
    every (scale, repeat) row from the first noised layer on."""
    return n_moments * profile.fwd + n_examples * (profile.fwd + rows * profile.after[layers[0]])


def unit_flops(profile: LayerProfile, layers: list[str], n_selectivity: int, n_impact: int) -> float:
    """A unit-analysis job: one pass over the selectivity/MI test examples, the cached pass
    over the impact examples, then each unit ablated alone from its layer on."""
    per_unit = sum(profile.units[n] * profile.after[n] for n in layers)
    return n_selectivity * profile.fwd + n_impact * (profile.fwd + per_unit)


def analysis_examples(data: DataSize, analysis: dict) -> dict:
    """Examples per analysis: ``curves`` (training examples of the curves), ``moments`` (the
    mean/variance pass), ``selectivity`` and ``impact`` (test examples), as
    :mod:`singledir.data.access` picks them for in-memory data and for an image family."""
    if "train_per_class" in analysis:  # an image family: the recorded class-balanced subset
        per = data.n_classes
        curves = int(analysis.get("train_per_class") or 0) * per or data.n_train
        return {"curves": curves, "moments": curves,
                "selectivity": int(analysis.get("test_per_class") or 0) * per or data.n_test,
                "impact": int(analysis.get("impact_per_class") or 0) * per or data.n_test}
    n_eval = min(int(analysis.get("eval_examples") or 0) or data.n_train, data.n_train)
    return {"curves": n_eval, "moments": data.n_train, "selectivity": data.n_test, "impact": data.n_test}


def analysis_job_flops(kind: str, spec: dict, data: DataSize, analysis: dict) -> float:
    """FLOPs of one per-model analysis job of figure-input ``kind`` (the registry's
    :data:`singledir.figures.registry.KIND_PATHS`: ablation_zero, ablation_mean, noise,
    units, training_auc, probes/probe_curve) on model ``spec``."""
    prof = layer_profile(spec["model"], data.shape, data.n_classes)
    n = analysis_examples(data, analysis)
    o, p = int(analysis.get("orderings", 10)), int(analysis.get("curve_points", 21))
    key = "fig3_ablation_layers" if spec.get("experiment") == "generalization" and "fig3_ablation_layers" in analysis \
        else "ablation_layers"
    ablated = selected_layers(prof, analysis.get(key, "all"))
    snapshots = len(spec["train"].get("snapshot_epochs", []) or []) or 1
    if kind in ("ablation_zero", "ablation_mean"):
        means = n["moments"] * prof.fwd if kind == "ablation_mean" else 0.0
        return means + curve_flops(prof, ablated, n["curves"], o, p)
    if kind == "noise":
        rows = len(analysis.get("noise_scales", [])) * int(analysis.get("noise_repeats", 10))
        return noise_flops(prof, selected_layers(prof, analysis.get("noise_layers", "all")), n["curves"],
                           n["moments"], rows)
    if kind == "units":
        return unit_flops(prof, selected_layers(prof, analysis.get("unit_layers", "all")), n["selectivity"],
                          n["impact"])
    if kind == "training_auc":
        return snapshots * curve_flops(prof, selected_layers(prof, analysis.get("ablation_layers", "all")),
                                       n["curves"], o, p)
    if kind in ("probes", "probe_curve"):  # one job writes both (workflow/rules/beyond.smk)
        evals = (data.n_train + 3 * data.n_test) * prof.fwd  # train, test, its two halves, the selectivity pass
        return snapshots * (curve_flops(prof, selected_layers(prof, analysis.get("ablation_layers", "all")),
                                        n["curves"], o, p) + evals)
    raise ValueError(f"analysis_job_flops: unknown kind {kind!r}")


def analysis_flops(spec: dict, data: DataSize, analysis: dict) -> float:
    """FLOPs of one zero-ablation curve job of one model (kept for callers of the former
    single-curve estimate; the plan counts every job with :func:`analysis_job_flops`)."""
    return analysis_job_flops("ablation_zero", spec, data, analysis)


def _bench_training_rate(path) -> float | None:
    try:
        import pandas as pd

        table = pd.read_csv(path)
    except (OSError, ValueError, ImportError):
        return None
    rows = table[(table.benchmark == "fused_training") & (table.metric == "sequential_flops_per_s")]
    return float(rows.value.iloc[0]) if len(rows) else None


def gpu_check_calibration(path) -> dict | None:
    """GPU rate and per-step overhead from the GPU check's CSV (``python -m singledir.bench
    --device cuda``, :mod:`singledir.bench.gpu_check`), or None when the file holds no such
    measurement. It times one ConvNet step at batch 128 (``gpu_fused_convnet``:
    ``one_step_s``) and one step of K fused ConvNets, K times the FLOPs (``fused_step_s``), at
    the width of ``gpu_convnet_epoch``'s ``width``: two times, two unknowns
    (time = FLOPs / rate + overhead). Where they do not separate (the fused step no slower,
    or a negative overhead) the rate is the single step's FLOPs / time and the overhead 0.

    Returns {"rate": FLOP/s, "overhead_s": s, "source": text}."""
    try:
        import pandas as pd

        table = pd.read_csv(path)
    except (OSError, ValueError, ImportError):
        return None
    if not {"benchmark", "metric", "value"} <= set(table.columns):
        return None

    def value(bench, metric):
        rows = table[(table.benchmark == bench) & (table.metric == metric)]
        return float(rows.value.iloc[0]) if len(rows) else None

    t_one, t_k, k = (value("gpu_fused_convnet", m) for m in ("one_step_s", "fused_step_s", "k"))
    if not t_one or t_one <= 0:
        return None
    width = value("gpu_convnet_epoch", "width") or 1.0
    _, step = model_flops({"arch": "convnet", "width": width, "batch_norm": True}, (3, 32, 32), 10)
    f_one = 128 * step  # the check's batch (singledir.bench.gpu_check._fused_convnet_part)
    where = f"measured by the GPU check ({path}: ConvNet width {width:g}, batch 128"
    if t_k and k and k > 1 and t_k > t_one:
        rate = (k - 1) * f_one / (t_k - t_one)
        overhead = t_one - f_one / rate
        if overhead >= 0:
            return {"rate": rate, "overhead_s": overhead,
                    "source": f"{where}, one and {k:g} fused steps: rate and per-step overhead)"}
    return {"rate": f_one / t_one, "overhead_s": 0.0,
            "source": f"{where}, one step; overhead not separable, taken as 0)"}


def _gpu_check_found(gpu_csvs) -> tuple[str, dict] | None:
    for path in gpu_csvs:
        if Path(path).is_file():
            cal = gpu_check_calibration(path)
            if cal is not None:
                return str(path), cal
    return None


def throughputs(config: dict, bench_csv="results/bench.csv", gpu_csvs=GPU_CHECK_CSVS) -> dict:
    """{'cpu': (FLOP/s, where from), 'gpu': (FLOP/s, where from)}: the config's value, else
    a measurement (the CPU benchmark's, the GPU check's), else the default, which says so."""
    cost = config.get("cost", {}) or {}
    out = {}
    if cost.get("cpu_flops_per_s"):
        out["cpu"] = (float(cost["cpu_flops_per_s"]), "cost.cpu_flops_per_s")
    else:
        rate = _bench_training_rate(bench_csv) if Path(bench_csv).is_file() else None
        out["cpu"] = ((rate, f"measured by python -m singledir.bench ({bench_csv})") if rate
                      else (DEFAULT_CPU_FLOPS, "default (set cost.cpu_flops_per_s, or run python -m singledir.bench)"))
    found = _gpu_check_found(gpu_csvs)
    if cost.get("gpu_flops_per_s"):
        out["gpu"] = (float(cost["gpu_flops_per_s"]), "cost.gpu_flops_per_s")
    elif found:
        out["gpu"] = (found[1]["rate"], found[1]["source"])
    else:
        out["gpu"] = (DEFAULT_GPU_FLOPS, "default (set cost.gpu_flops_per_s, or run the GPU check into "
                                         "results/gpu_check.csv)")
    return out


def gpu_step_overhead(config: dict, gpu_csvs=GPU_CHECK_CSVS) -> tuple[float, str]:
    """(seconds per training step on a GPU whatever its batch, where from): the config's
    ``cost.gpu_step_overhead_s``, else the GPU check's measurement, else the default."""
    cost = config.get("cost", {}) or {}
    if cost.get("gpu_step_overhead_s") is not None:
        return float(cost["gpu_step_overhead_s"]), "cost.gpu_step_overhead_s"
    found = _gpu_check_found(gpu_csvs)
    if found:
        return found[1]["overhead_s"], found[1]["source"]
    return DEFAULT_GPU_STEP_OVERHEAD_S, "default, assumed (set cost.gpu_step_overhead_s, or run the GPU check)"
