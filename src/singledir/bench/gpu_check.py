"""The one-shot device check (``python -m singledir.bench --device cuda``): within a
wall-time budget, the engine's images/s in fp32/TF32/bf16, K fused ConvNets against one,
one ConvNet epoch at the config's width, and the paper-scale projection of training
GPU-hours. Each part asks the budget for its share and is skipped (and says so) when
too little is left."""

from __future__ import annotations

import math
import time

import torch
import yaml

from singledir.bench.synthetic import BenchNet, cumulative_sets, labelled_data, variance_preserving
from singledir.bench.timing import sync
from singledir.engine.ablation import masks_from_sets
from singledir.engine.batch import PerturbationBatch
from singledir.engine.options import EngineOptions
from singledir.engine.perturb import evaluate_perturbations
from singledir.models.nets import MLP, ConvNet
from singledir.pipeline.plan import enabled_experiments, enabled_families, experiment_models, experiment_specs
from singledir.training.core import TrainConfig
from singledir.training.fused import FusedNet, FusedOptimizer, MemberRNG

# Training-set sizes of the paper's data sets (the projection's epochs are of these).
_TRAIN_SIZES = {"MNIST": 60000, "CIFAR10": 50000}


def cuda_device() -> torch.device | None:
    """The GPU the device check runs on, or None without one (the one device query; the
    tests replace it to run the check's code on CPU tensors)."""
    return torch.device("cuda") if torch.cuda.is_available() else None


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type} (stand-in)"


class Budget:
    """Wall-clock budget of the device check: ``total`` seconds from now."""

    def __init__(self, seconds: float):
        self.total = seconds
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def gpu_engine_benchmark(net: BenchNet, device, log, n_orderings: int = 10, n_points: int = 21,
                         chunk_size: int = 2048) -> list[dict]:
    """One full cumulative-ablation analysis of ``net`` on the device in each precision:
    images/s (examples x points per second) and the difference from fp32. A precision the
    device refuses is reported with its reason."""
    name = net.name
    model = net.model.to(device)
    x, y = net.x.to(device), net.y.to(device)
    sizes, sets = cumulative_sets(BenchNet(name, model, x, y, net.layers), n_orderings, n_points)
    keep = masks_from_sets(sets, sizes)
    pert = PerturbationBatch(len(sets), {k: v.to(device) for k, v in keep.items()}, {n: None for n in net.layers})
    rows, ref = [], None
    for precision in ("fp32", "tf32", "bf16"):
        try:
            # check_tol=1: measure the difference from fp32 and report it, never refuse
            options = EngineOptions(chunk_size=chunk_size, precision=precision, check_tol=1.0)
            evaluate_perturbations(model, x[:64], y[:64], pert, options=options)  # warm-up
            sync(device)
            t = time.perf_counter()
            loss, acc = evaluate_perturbations(model, x, y, pert, options=options)
            sync(device)
        except (ValueError, RuntimeError) as e:  # e.g. tf32 off a CUDA device, a refused precision
            log(f"[gpu] {name} {precision}: not run ({e})")
            rows.append({"model": name, "precision": precision, "error": str(e)})
            continue
        dt = time.perf_counter() - t
        ref = (loss, acc) if ref is None else ref
        row = {"model": name, "precision": precision, "seconds": dt, "images_per_s": len(x) * len(sets) / dt,
               "max_abs_accuracy_diff": float((acc - ref[1]).abs().max()),
               "max_abs_loss_diff": float((loss - ref[0]).abs().max())}
        log(f"[gpu] {name} engine {precision}: {dt:.3f} s, {row['images_per_s']:,.0f} image-points/s, "
            f"|d accuracy| <= {row['max_abs_accuracy_diff']:.1e}, |d loss| <= {row['max_abs_loss_diff']:.1e} vs fp32")
        rows.append(row)
    return rows


def _train_steps(step, budget_s: float, max_steps: int, device) -> tuple[float, int]:
    """Seconds per call of ``step`` (after two warm-up calls), over at most ``max_steps``
    calls or ``budget_s`` seconds, whichever comes first."""
    step(), step()
    sync(device)
    t0 = time.perf_counter()
    n = 0
    while n < max_steps and (n == 0 or time.perf_counter() - t0 < budget_s):
        step()
        n += 1
        if n % 8 == 0:
            sync(device)
    sync(device)
    return (time.perf_counter() - t0) / n, n


def _convnet_step(models, device, batch: int, size: int, k: int):
    """One SGD step of one ConvNet (k == 1) or of k fused ConvNets (singledir.training.fused)."""
    g = torch.Generator().manual_seed(0)
    cfgs = [TrainConfig(epochs=1, batch_size=batch, optimizer="sgd", lr=0.01, momentum=0.9, seed=i) for i in range(k)]
    if k == 1:
        net = models[0].to(device).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        xb = torch.randn(batch, 3, size, size, generator=g).to(device)
        yb = torch.randint(0, 10, (batch,), generator=g).to(device)

        def step():
            loss = torch.nn.functional.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step
    net = FusedNet(models, MemberRNG([c.seed for c in cfgs], device)).to(device).train()
    opt = FusedOptimizer(list(net.parameters()), cfgs)
    xb = torch.randn(k, batch, 3, size, size, generator=g).to(device)
    yb = torch.randint(0, 10, (k, batch), generator=g).to(device)

    def step():
        logits = net(xb)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                                 reduction="none").view(k, -1).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step([0.01] * k)
    return step


def _mlp_step(hidden, device, batch: int):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = MLP(784, hidden, 10).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    xb = torch.randn(batch, 1, 28, 28, generator=g).to(device)
    yb = torch.randint(0, 10, (batch,), generator=g).to(device)

    def step():
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def paper_projection(config: dict, epoch_cost, fused_speedup: dict, log) -> list[dict]:
    """GPU-hours per experiment of ``config``: per model ``epochs x`` the measured cost of
    one epoch of its architecture (``epoch_cost(family, model_spec, n_train)`` in seconds,
    or None when not measured), times the experiment's model count
    (:func:`singledir.pipeline.plan.experiment_models`), divided by the measured fusion speedup of
    the architecture where the experiment sets ``fuse`` (training only; analyses apart)."""
    rows = []
    for family in enabled_families(config):
        fam = config["families"][family]
        n_train = _TRAIN_SIZES.get(str(fam.get("dataset", {}).get("name")))
        for exp in enabled_experiments(config, family):
            ids = experiment_models(config, family, exp)
            specs = experiment_specs(config, family, exp)
            seconds, unmeasured = 0.0, 0
            for mid in ids:
                spec = specs[mid]
                cost = epoch_cost(family, spec, n_train) if n_train else None
                epochs = spec["train"].get("epochs")
                if cost is None or not epochs:
                    unmeasured += 1
                    continue
                seconds += cost * float(epochs)
            fuse = int(fam["experiments"][exp].get("fuse", 1) or 1)
            arch = specs[ids[0]]["model"].get("arch")
            speedup = fused_speedup.get(arch, 1.0) if fuse > 1 else 1.0
            hours = seconds / 3600.0 / speedup
            rows.append({"family": family, "experiment": exp, "models": len(ids), "models_unmeasured": unmeasured,
                         "fuse": fuse, "fused_speedup_applied": speedup, "gpu_hours": hours})
            note = f", {unmeasured} not measured (not included)" if unmeasured else ""
            log(f"[projection] {family}/{exp}: {len(ids)} models x their epochs -> {hours:.1f} GPU-hours"
                f"{f' (fused {speedup:.2f}x)' if speedup != 1.0 else ''}{note}")
    return rows


def gpu_check(budget_s: float, config_path: str, log, quick: bool = False) -> dict:
    """The one-shot device check (``--device cuda``): within ``budget_s`` seconds, the
    engine's images/s in fp32/TF32/bf16, K fused ConvNets against one, one ConvNet epoch
    at the config's width, and the paper-scale projection of training GPU-hours.
    Returns {"summary": {metric: value}, "rows": [one dict per measurement]}."""
    device = cuda_device()
    if device is None:
        raise SystemExit("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)")
    budget = Budget(budget_s)
    log(f"[gpu] device {_device_name(device)}, budget {budget_s:.0f} s")
    config = yaml.safe_load(open(config_path))
    summary: dict = {"device": _device_name(device), "budget_s": budget_s}
    rows: list[dict] = []
    conv_arch = config["families"].get("cifar10", {}).get("model", {"width": 1.0, "batch_norm": True})
    width = 0.0625 if quick else float(conv_arch.get("width", 1.0))
    part_rows, part_summary = _engine_part(device, budget, width, quick, log)
    rows += part_rows
    summary.update(part_summary)
    part_rows, part_summary, fused_speedup = _fused_convnet_part(device, budget, width, quick, log)
    rows += part_rows
    summary.update(part_summary)
    part_rows, part_summary, conv_epoch_s = _convnet_epoch_part(device, budget, width, quick, log)
    rows += part_rows
    summary.update(part_summary)
    epoch_cost = _epoch_cost(device, budget, quick, conv_epoch_s)
    projection = paper_projection(config, epoch_cost, fused_speedup, log)
    for r in projection:
        rows.append({"part": "projection", **r})
        summary[f"gpu_hours_{r['family']}_{r['experiment']}"] = r["gpu_hours"]
    summary["gpu_hours_total_measured"] = sum(r["gpu_hours"] for r in projection)
    summary["gpu_check_s"] = budget_s - budget.left()
    log(f"[gpu] check took {summary['gpu_check_s']:.0f} s of its {budget_s:.0f} s budget")
    return {"summary": summary, "rows": rows}


def _engine_part(device, budget: Budget, width: float, quick: bool, log) -> tuple[list[dict], dict]:
    """1. The engine in each precision on the MLP and the ConvNet (each skipped once half
    the budget is spent)."""
    rows, summary = [], {}
    n_mlp, n_conv = (200, 64) if quick else (10000, 5000)
    mlp = variance_preserving(MLP(784, [64, 64] if quick else [2048, 2048], 10), 0)
    x, y = labelled_data(mlp, n_mlp, (1, 28, 28), 1)
    conv = variance_preserving(ConvNet(3, 10, width=width, batch_norm=True), 1)
    xc, yc = labelled_data(conv, n_conv, (3, 32, 32), 2)
    nets = [BenchNet("mlp", mlp, x, y, ["relu1", "relu2"]),
            BenchNet(f"convnet_w{width:g}", conv, xc, yc, ["relu9", "relu10", "relu11"])]
    for net in nets:
        if budget.left() < 0.5 * budget.total:
            log(f"[gpu] {net.name} engine: skipped (budget)")
            continue
        for row in gpu_engine_benchmark(net, device, log, *((3, 6) if quick else (10, 21))):
            rows.append({"part": "engine", **row})
            if "images_per_s" in row:
                key = f"gpu_{net.name.split('_')[0]}_{row['precision']}"
                summary[f"{key}_images_per_s"] = row["images_per_s"]
                summary[f"{key}_max_abs_accuracy_diff"] = row["max_abs_accuracy_diff"]
    return rows, summary


def _fused_convnet_part(device, budget: Budget, width: float, quick: bool, log) -> tuple[list[dict], dict, dict]:
    """2. K fused ConvNets against one (grouped convolutions), steps of batch 128; also
    the fusion speed-up per architecture for the projection."""
    k = 4 if quick else 8
    batch = 8 if quick else 128
    fused_speedup = {}
    if budget.left() <= 0.3 * budget.total:
        log("[gpu] fused ConvNets: skipped (budget)")
        return [], {}, fused_speedup
    share = min(0.1 * budget.total, budget.left() / 4)
    torch.manual_seed(0)
    t_one, n_one = _train_steps(_convnet_step([ConvNet(3, 10, width=width)], device, batch, 32, 1), share,
                                200, device)
    members = []
    for i in range(k):
        torch.manual_seed(i)
        members.append(ConvNet(3, 10, width=width))
    t_k, n_k = _train_steps(_convnet_step(members, device, batch, 32, k), share, 200, device)
    fused_speedup["convnet"] = k * t_one / t_k
    summary = dict(gpu_fused_convnet_k=k, gpu_fused_convnet_speedup=fused_speedup["convnet"], gpu_convnet_step_s=t_one)
    rows = [{"part": "fused_convnet", "k": k, "one_step_s": t_one, "fused_step_s": t_k,
             "speedup": fused_speedup["convnet"]}]
    log(f"[gpu] {k} fused ConvNets (width {width:g}, batch {batch}): {1e3 * t_k:.1f} ms/step against one "
        f"{1e3 * t_one:.1f} ms/step -> {fused_speedup['convnet']:.2f}x ({n_one} and {n_k} steps)")
    return rows, summary, fused_speedup


def _convnet_epoch_part(device, budget: Budget, width: float, quick: bool,
                        log) -> tuple[list[dict], dict, float | None]:
    """3. One ConvNet epoch at the config's width: a full pass of 50,000 images in batches
    of 128 (391 steps), cut short at its budget share and extrapolated (said so)."""
    batch = 8 if quick else 128
    steps_epoch = 4 if quick else math.ceil(50000 / 128)
    if budget.left() <= 0.15 * budget.total:
        log("[gpu] ConvNet epoch: skipped (budget)")
        return [], {}, None
    torch.manual_seed(0)
    t_step, n = _train_steps(_convnet_step([ConvNet(3, 10, width=width)], device, batch, 32, 1),
                             budget.left() / 2, steps_epoch, device)
    conv_epoch_s = t_step * steps_epoch
    how = "measured" if n >= steps_epoch else f"{n} of {steps_epoch} steps, extrapolated"
    log(f"[gpu] one ConvNet epoch (width {width:g}, 50,000 images, batch {batch}): {conv_epoch_s:.1f} s ({how})")
    return ([{"part": "convnet_epoch", "width": width, "epoch_s": conv_epoch_s, "steps": n}],
            dict(gpu_convnet_epoch_s=conv_epoch_s, gpu_convnet_width=width), conv_epoch_s)


def _epoch_cost(device, budget: Budget, quick: bool, conv_epoch_s: float | None):
    """4. The projection's cost of one epoch per model spec: the ConvNet's measured epoch;
    an MLP's steps measured per width on the fly (cheap); None for what is not measured."""
    mlp_step_s: dict = {}

    def epoch_cost(family, spec, n_train):
        arch = spec["model"]
        if arch.get("arch") == "convnet":
            return None if conv_epoch_s is None else conv_epoch_s * n_train / 50000
        if arch.get("arch") == "mlp":
            key = tuple(arch["hidden"])
            if key not in mlp_step_s and budget.left() > 5:
                hidden = [min(h, 64) for h in key] if quick else list(key)
                mlp_step_s[key] = _train_steps(_mlp_step(hidden, device, 128), min(5.0, budget.left() / 4), 100,
                                               device)[0]
            return mlp_step_s[key] * math.ceil(n_train / 128) if key in mlp_step_s else None
        return None  # ResNets on ImageNet: not measured here

    return epoch_cost
