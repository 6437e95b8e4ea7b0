"""Step-based data-parallel training (DDP) over all GPUs of a job and several nodes.

This module owns the step loop (:func:`train_steps`), its data order and worker shards,
the process group and the launch (:func:`launch`). The config (``train.steps``), learning-rate
schedule (warmup, cosine) and optimizer are the training core's
(:mod:`singledir.training.core`), the checkpoint and the stop signals
:mod:`singledir.training.checkpoint`'s, shared with the single and fused loops.

The paper trained its ResNet-50 with 32 workers x batch 32 for 200,000 steps (appendix
A.2). Here that is ``train.workers`` *logical* workers of ``train.batch_size`` images each,
independent of the hardware: with P training processes (GPUs) every process handles
``workers / P`` worker shards per step one after another, accumulating gradients
(DistributedDataParallel averages them over processes). So a step is the same SGD step
on 32, 8 or 1 GPUs, and batch-norm statistics are always those of one worker's 32 images,
as with 32 workers. Running batch-norm statistics are averaged over the worker shards of a
step (instead of DDP's default of taking rank 0's), which keeps them independent of P too.

Determinism and resumption come from deriving everything random from (seed, step):

- the global batch of step t is a slice of a seeded permutation of the training set for
  t's epoch (:func:`global_batch`); worker shard s is the s-th slice of it;
- each image draw gets its own augmentation seed from (seed, step, position);
- weights are initialized from ``train.seed`` on every process.

A checkpoint (model, optimizer, grad scaler, step, history) is written atomically every
``checkpoint_every`` steps; a rerun resumes from it (from the one before, or from scratch,
if it does not load: :mod:`singledir.training.checkpoint`), and on the CPU the result equals an
uninterrupted run. SIGTERM or SIGUSR1 (what SLURM sends before a time limit or
preemption) makes every process finish the current step, write a checkpoint and exit
non-zero (the processes agree on stopping through an all-reduce each step). The same
all-reduce carries a divergence check: a NaN or inf training loss on any process ends
training at that step with a history row holding it and a log line, and the checkpoint
records ``diverged`` (a rerun trains no further); the net then counts as failed
(:func:`singledir.stats.net_tables.training_failed`).

The training accuracy the figures and claims read (the final history row's
``train_accuracy``, e.g. the memorization gate of Fig. 1c's corruption claims) is an
eval-mode measurement (:func:`evaluate_train_subset`): after the last step, the model in
eval mode (batch norm on its running statistics) classifies a fixed, seeded,
class-balanced subset of the training images (:func:`train_eval_subset`,
``train.eval_train_per_class`` per class, 10 unless set) without augmentation, against the
labels the net was trained on. Every row also keeps the train-mode numbers of its logging
window (``train_window_loss``, ``train_window_accuracy``, ``train_window_top5``: augmented
batches, batch norm on batch statistics, weights changing over the window), for the logs.
The job's time budget (its ``deadline``, :mod:`singledir.training.walltime`) stops training
like a signal. Data-loader worker processes ignore the stop signals
(:func:`_ignore_stop_signals`): SLURM signals every process of the job, and a worker that
died of it would make the main process fail with "DataLoader worker exited unexpectedly"
before its checkpoint; the main process shuts them down as it exits.

:func:`launch` starts the processes with ``torchrun`` (one node: ``--standalone``; several
SLURM nodes: one ``torchrun`` per node through ``srun`` with a c10d rendezvous on the
first node), or trains in the calling process when there is one process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from singledir.training.checkpoint import (STOP_SIGNALS, STOPPED_EXIT_CODE, PieceDone, TrainingInterrupted,
                                           catch_stop_signals, checkpoint_and_stop, load_checkpoint,
                                           save_checkpoint as save_checkpoint_file)
from singledir.training.walltime import Deadline
from singledir.training.cuda_check import resolve_device
from singledir.data.imagenet import IndexedImages, balanced_subset, dataset_transform, read_index, train_labels
from singledir.models.api import build_model
from singledir.training.core import (RunOptions, TrainConfig, configure_torch, history_frame, lr_at, make_optimizer,
                                     set_lr)


def global_batch(n: int, size: int, seed: int, step: int, _cache: dict | None = None) -> np.ndarray:
    """Indices of the global batch of ``step``: slice ``step mod (n // size)`` of the
    seeded permutation of epoch ``step // (n // size)`` (the last partial batch is dropped)."""
    per_epoch = n // size
    if per_epoch < 1:
        raise ValueError(f"train: the global batch (workers x batch_size = {size}) exceeds the {n} training images")
    epoch, pos = divmod(step, per_epoch)
    if _cache is not None and _cache.get("epoch") == epoch:
        perm = _cache["perm"]
    else:
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        if _cache is not None:
            _cache.update(epoch=epoch, perm=perm)
    return perm[pos * size:(pos + 1) * size]


def draw_seeds(seed: int, step: int, size: int) -> np.ndarray:
    """One augmentation seed per position of the global batch of ``step``."""
    return np.random.SeedSequence([seed, step, 7]).generate_state(size).astype(np.int64)


class StepShards:
    """Batch sampler: for each step from ``start_step``, this rank's worker shards, each a
    list of ``(image index, augmentation seed)``."""

    def __init__(self, n: int, cfg: TrainConfig, rank: int, world: int, start_step: int):
        if cfg.workers % world:
            raise ValueError(f"train.workers ({cfg.workers}) must be a multiple of the number of training "
                             f"processes ({world})")
        self.n, self.cfg, self.start = n, cfg, start_step
        self.per_rank = cfg.workers // world
        self.shards = range(rank * self.per_rank, (rank + 1) * self.per_rank)

    def __len__(self):
        return (self.cfg.steps - self.start) * self.per_rank

    def __iter__(self):
        cache: dict = {}
        b = self.cfg.batch_size
        for step in range(self.start, self.cfg.steps):
            idx = global_batch(self.n, self.cfg.global_batch, self.cfg.seed, step, cache)
            seeds = draw_seeds(self.cfg.seed, step, self.cfg.global_batch)
            for s in self.shards:
                yield [(int(idx[j]), int(seeds[j])) for j in range(s * b, (s + 1) * b)]


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group set up by torchrun (env ``WORLD_SIZE`` etc.), or run alone.

    GPUs use NCCL with one device per local rank; CPUs use gloo. The device follows
    :func:`~singledir.training.cuda_check.resolve_device`: ``auto`` falls back to the CPU
    only where no GPU was granted (``SINGLEDIR_GRANTED_GPUS``, inherited from the job).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # a worker of a job granted GPUs stops rather than train on the CPU (cuda_check)
    use_cuda = resolve_device(device).type == "cuda"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world == 1:
        return DistInfo(0, 1, 0, dev)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev)


def _bn_buffers(model: nn.Module) -> list[torch.Tensor]:
    out = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            out += [m.running_mean, m.running_var, m.num_batches_tracked]
    return out


def _all_reduce_mean_(tensors: Sequence[torch.Tensor], world: int) -> None:
    for t in tensors:
        dist.all_reduce(t)
        if t.is_floating_point():
            t.div_(world)
        else:
            t.floor_divide_(world)


def _no_buffer_broadcast() -> dict:
    """DDP keyword that syncs buffers at construction only (we average BN statistics ourselves)."""
    import inspect

    params = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "none" or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)


def _accumulate_worker_shards(net, ddp, batches, per_rank: int, buffers: list[torch.Tensor], scaler,
                              meter: torch.Tensor, cfg: TrainConfig, device: torch.device) -> None:
    """The forward and backward passes of this process's ``per_rank`` worker shards of one
    step, gradients accumulated (DDP syncs on the last only). Every shard starts from the
    same batch-norm running statistics, and they end as the shards' mean, as if the shards
    ran on separate workers. ``meter`` adds (loss sum, top-1 hits, top-5 hits, images)."""
    before = [b.clone() for b in buffers] if per_rank > 1 else None
    summed = [torch.zeros_like(b) for b in buffers] if per_rank > 1 else None
    for k in range(per_rank):
        x, y = next(batches)
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        if before is not None and k > 0:
            for b, v in zip(buffers, before):
                b.copy_(v)
        sync = ddp.no_sync() if ddp is not None and k < per_rank - 1 else contextlib.nullcontext()
        with sync:
            with _autocast(cfg, device):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
            scaler.scale(loss / per_rank).backward()
        if summed is not None:
            for s, b in zip(summed, buffers):
                s.add_(b)
        with torch.no_grad():
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hit = top5 == y[:, None]
            meter += torch.stack([loss.detach().double() * len(y), hit[:, 0].sum().double(),
                                  hit.any(1).sum().double(), torch.tensor(float(len(y)), device=device,
                                                                          dtype=torch.float64)])
    if summed is not None:
        for b, s in zip(buffers, summed):
            b.copy_(s / per_rank if s.is_floating_point() else s // per_rank)


def _load_on_every_process(ckpt_path: Path, info: DistInfo, log) -> dict | None:
    """The resume checkpoint on every process of the group, or None: one process sets a bad
    checkpoint aside (and logs the resume), the others then load what it chose."""
    required = ("model", "optimizer", "scaler", "step", "history", "meter")
    state = None
    if info.main:
        state, loaded = load_checkpoint(ckpt_path, map_location=info.device, required=required, log=log)
        if state is not None:
            log(f"resuming from {loaded} at step {int(state['step'])}")
    if info.world > 1:
        dist.barrier()
    if not info.main:
        state, _ = load_checkpoint(ckpt_path, map_location=info.device, required=required, log=log, move_bad=False)
    return state


def _ignore_stop_signals(worker_id: int) -> None:
    """A data-loader worker's init: ignore the stop signals and SIGINT. The main process
    alone decides to stop (it finishes its step and writes the checkpoint); its workers
    only read images, hold nothing to save, and are shut down by it as it exits (or end
    with it: torch's workers watch their parent)."""
    for s in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)


def _worker_shard_batches(dataset: Dataset, cfg: TrainConfig, info: DistInfo, start: int):
    """An iterator over this process's worker-shard batches from step ``start`` on, and how
    many shards it runs per step (:class:`StepShards`)."""
    sampler = StepShards(len(dataset), cfg, info.rank, info.world, start)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=info.device.type == "cuda", persistent_workers=False,
                        worker_init_fn=_ignore_stop_signals if cfg.num_workers else None)
    return iter(loader), sampler.per_rank


def _history_row(step: int, lr: float, meter: list[float], seconds: float) -> dict:
    """One step-based history row from the logging window's meter (loss sum, top-1, top-5,
    images): the train-mode window columns; the final row adds the eval-mode ones
    (:func:`evaluate_train_subset`)."""
    return {"step": step, "lr": lr, "train_window_loss": meter[0] / meter[3],
            "train_window_accuracy": meter[1] / meter[3], "train_window_top5": meter[2] / meter[3],
            "images_per_s": meter[3] / max(seconds, 1e-9)}


# The seed of the training-accuracy subset: 0, the default analysis.subset_seed, so with
# train.eval_train_per_class equal to the family's analysis.train_per_class the images are
# exactly the analysis's training subset (the same balanced_subset of the same true targets;
# Fig. 1c's curves start from the accuracy recorded here, up to top-1 vs top-5).
TRAIN_EVAL_SEED = 0


def train_eval_subset(true_targets: np.ndarray, per_class: int) -> np.ndarray:
    """Indices (into the training split) of the images the final training accuracy is
    measured on: ``per_class`` images of every true class (0: every image), seeded
    (:data:`TRAIN_EVAL_SEED`), the same for every net of a family whatever its labels or
    seed, in :func:`~singledir.data.imagenet.balanced_subset`'s order."""
    return balanced_subset(true_targets, per_class, TRAIN_EVAL_SEED)["index"].to_numpy()


@torch.no_grad()
def evaluate_train_subset(model: nn.Module, eval_set: Dataset, cfg: TrainConfig, info: DistInfo) -> dict:
    """The eval-mode training loss, top-1 (``train_accuracy``) and top-5 (``train_top5``) of
    ``model`` on ``eval_set`` (:func:`train_eval_subset`'s images with the net's training
    labels, untransformed but for the evaluation resize and center crop).

    The model (not its DDP wrapper: no collective runs per batch, so processes may see
    different numbers of batches) is put in eval mode, so batch norm uses its running
    statistics, and back in train mode after. Each of the ``info.world`` processes takes
    every ``world``-th image, and one all-reduce sums (loss, top-1 hits, top-5 hits,
    images); every process returns the same numbers. The global RNG is left as it was (a
    ``DataLoader`` draws its base seed from it).

    Cost: one forward pass per image, once per run. At paper scale (ResNet-50, 10 images
    of each of the 1,000 classes) 10,000 forward passes of about 4.1 GFLOPs, 41 TFLOPs: the
    forward and backward passes (about 12.3 GFLOPs per image) of 3.3 of the run's 200,000
    steps of 1,024 images, under 0.002 % of training, plus decoding 10,000 JPEGs over the
    job's loader processes.
    """
    device = info.device
    was_training = model.training
    model.eval()
    shard = Subset(eval_set, range(info.rank, len(eval_set), info.world))
    loader = DataLoader(shard, batch_size=cfg.eval_batch_size, shuffle=False, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda",
                        worker_init_fn=_ignore_stop_signals if cfg.num_workers else None)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top-1 hits, top-5 hits, images
    try:
        with torch.random.fork_rng(devices=[]):
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with _autocast(cfg, device):
                    logits = model(x)
                logits = logits.float()
                hit = logits.topk(min(5, logits.shape[1]), dim=1).indices == y[:, None]
                sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                                     hit[:, 0].sum().double(), hit.any(1).sum().double(),
                                     torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
        if info.world > 1:
            dist.all_reduce(sums)
    finally:
        model.train(was_training)
    loss, top1, top5, n = sums.cpu().tolist()
    return {"train_loss": loss / n, "train_accuracy": top1 / n, "train_top5": top5 / n}


def train_steps(model: nn.Module, dataset: Dataset, cfg: TrainConfig, work_dir: str | os.PathLike,
                info: DistInfo | None = None, log=print, deadline: Deadline | None = None,
                eval_set: Dataset | None = None) -> pd.DataFrame:
    """Train ``model`` in place for ``cfg.steps`` steps (resuming from ``work_dir``).

    Every process of the group calls this with the same arguments. Returns the history
    in the one history schema (:data:`~singledir.training.core.HISTORY_COLUMNS`; one row
    per ``log_every`` steps and one at the last: step, lr, images per second and the
    train-mode loss, top-1 and top-5 accuracy of the window's training batches
    (``train_window_*``); the last row adds the eval-mode ``train_loss``,
    ``train_accuracy`` (top-1) and ``train_top5`` on ``eval_set``
    (:func:`evaluate_train_subset`; :func:`run_job` passes :func:`train_eval_subset`'s
    images; without one they stay empty). The final state is ``work_dir/resume.pt``. Past
    the ``deadline`` (the job's time budget) every process checkpoints and
    :class:`~singledir.training.checkpoint.PieceDone` is raised.
    """
    cfg.expect("step", "singledir.training.distributed.train_steps")
    info = info or DistInfo(0, 1, 0, torch.device("cpu"))
    device = info.device
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = work_dir / "resume.pt"
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16" and device.type == "cuda")
    start, history = 0, []
    meter = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top-1, top-5, images since the last log
    state = _load_on_every_process(ckpt_path, info, log)
    if state is not None and state.get("diverged"):  # ended at a non-finite loss: nothing more to train
        return history_frame(state["history"])
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start, history = int(state["step"]), list(state["history"])
        meter.copy_(state["meter"].to(device) if info.main else torch.zeros_like(meter))
    ddp = None
    if info.world > 1:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                                  **_no_buffer_broadcast())
    net = ddp or model
    batches, per_rank = _worker_shard_batches(dataset, cfg, info, start)
    buffers = _bn_buffers(model)

    def meter_total():
        # The partial log window of every process, so a resumed run logs the same rows.
        total = meter.clone()
        if info.world > 1:
            dist.all_reduce(total)
        return total

    def save_checkpoint(step, diverged=False):
        partial = meter_total()  # a collective: every process takes part
        if info.main:
            save_checkpoint_file({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                  "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "step": step,
                                  "history": history, "meter": partial.cpu(), "config": cfg.__dict__,
                                  "diverged": diverged}, ckpt_path)
        if info.world > 1:
            dist.barrier()

    t_window = time.time()
    model.train()
    with catch_stop_signals(deadline) as stop:
        for step in range(start, cfg.steps):
            set_lr(optimizer, lr_at(cfg, step))
            optimizer.zero_grad(set_to_none=True)
            _accumulate_worker_shards(net, ddp, batches, per_rank, buffers, scaler, meter, cfg, device)
            if ddp is not None:
                _all_reduce_mean_(buffers, info.world)
            scaler.step(optimizer)
            scaler.update()
            done = step + 1
            # One collective for both: a stop signal on any process, and a NaN or inf loss in
            # the window's loss sum on any process (cross-entropy is never negative, so a
            # non-finite step loss stays in the sum until the window is logged).
            flag = torch.stack([torch.tensor(float(stop.requested), device=device),
                                (~torch.isfinite(meter[0])).to(torch.float32)])
            if ddp is not None:
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stopping, diverged = (bool(v) for v in flag.tolist())
            if diverged:
                if ddp is not None:
                    dist.all_reduce(meter)
                history.append(_history_row(done, lr_at(cfg, step), meter.cpu().tolist(), time.time() - t_window))
                # the non-finite loss itself, where failure_reason looks (the final train_loss)
                history[-1]["train_loss"] = history[-1]["train_window_loss"]
                if info.main:
                    log(f"DIVERGED: the training loss became {history[-1]['train_loss']} at step {done} of "
                        f"{cfg.steps} (lr {lr_at(cfg, step):g}). Training ends here (last history row: train_loss "
                        f"{history[-1]['train_loss']}) and the net counts as failed: figures and claims exclude it "
                        "and say so. A smaller train.lr or a longer warmup avoids it.")
                save_checkpoint(done, diverged=True)
                break
            if done % cfg.log_every == 0 or done == cfg.steps:
                if ddp is not None:
                    dist.all_reduce(meter)
                row = _history_row(done, lr_at(cfg, step), meter.cpu().tolist(), time.time() - t_window)
                if info.main:
                    log(f"step {done}/{cfg.steps} window (train mode) loss={row['train_window_loss']:.4f} "
                        f"top1={row['train_window_accuracy']:.4f} top5={row['train_window_top5']:.4f} "
                        f"lr={row['lr']:.4g} {row['images_per_s']:.1f} images/s")
                if done == cfg.steps and eval_set is not None:  # every process takes part
                    row.update(evaluate_train_subset(model, eval_set, cfg, info))
                    if info.main:
                        log(f"step {done}/{cfg.steps} eval mode, {len(eval_set)} fixed training images with their "
                            f"training labels: loss={row['train_loss']:.4f} top1={row['train_accuracy']:.4f} "
                            f"top5={row['train_top5']:.4f}")
                history.append(row)
                meter.zero_()
                t_window = time.time()
            if stopping:  # every process takes part in writing the checkpoint
                checkpoint_and_stop(lambda: save_checkpoint(done), ckpt_path, f"step {done}",
                                    stop if stop.requested else None, f"{cfg.steps} steps")
            if cfg.checkpoint_due(done):
                save_checkpoint(done)
    return history_frame(history)


# --------------------------------------------------------------------------- jobs

def write_job(job: dict, path: str | os.PathLike) -> Path:
    """A training job (everything :func:`run_job` needs) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job, indent=1, sort_keys=True))
    return path


def run_job(job_path: str | os.PathLike, log=print) -> pd.DataFrame:
    """Train the job of ``job_path`` in this process (one rank of the group, or alone).

    The job names the model section, the train section, the dataset section, the index
    and labels files, the work directory and the run options (written by
    :func:`singledir.training.api.train`).
    """
    job = json.loads(Path(job_path).read_text())
    info = init_distributed(job.get("device", "auto"))
    configure_torch(job.get("threads", 1), deterministic=info.device.type == "cpu")
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # the job's run options; a hand-written job may keep them in its train section
    cfg = TrainConfig.from_spec(job["train"], RunOptions.from_mapping({**job["train"], **job.get("run", {})}))
    index = read_index(job["index"])
    labels = train_labels(index, job.get("labels"))
    paths = index.loc[index["split"] == "train", "path"].tolist()
    n_classes = int(index["target"].max()) + 1
    dataset = IndexedImages(job["root"], paths, labels, dataset_transform(job["dataset"], cfg.augment),
                            random_transform=cfg.augment, cache=bool(job["dataset"].get("cache")) and not cfg.augment)
    chosen = train_eval_subset(index.loc[index["split"] == "train", "target"].to_numpy(), cfg.eval_train_per_class)
    eval_set = IndexedImages(job["root"], [paths[i] for i in chosen], labels[chosen],
                             dataset_transform(job["dataset"], False))
    torch.manual_seed(cfg.seed)  # the same initialization on every process
    size = int(job["dataset"].get("image_size", 224))
    model = build_model(job["model"], (3, size, size), n_classes)
    if info.main:
        log(f"training {job.get('id', '')}: {info.world} process(es) on {info.device.type}, "
            f"{cfg.workers} workers x batch {cfg.batch_size}, {cfg.steps} steps, {len(dataset)} images, "
            f"{sum(p.numel() for p in model.parameters())} parameters, augment={cfg.augment}")
    try:
        result = train_steps(model, dataset, cfg, job["work_dir"], info, log=log if info.main else (lambda *a: None),
                             deadline=Deadline.from_dict(job.get("deadline")), eval_set=eval_set)
        if info.world > 1:
            # Tear the group down together: once in CI (2 CPU processes, gloo), the rank that
            # reached destroy_process_group first aborted at exit ("terminate called without
            # an active exception", SIGABRT) after all steps and the checkpoint were done.
            dist.barrier()
        return result
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def slurm_job_hosts(env: dict | None = None) -> list[str]:
    """The host names of the SLURM job this process runs in, in SLURM's order.

    ``SLURM_JOB_NODELIST`` where the job's environment still has it (a plain ``sbatch``
    script); otherwise the job's ``NodeList`` from ``scontrol show job $SLURM_JOB_ID``. The
    second is the usual case under Snakemake: the SLURM job-step plugin runs an ``mpi`` job
    with every ``SLURM_*`` variable removed except the job's id (``SLURM_JOB_ID``,
    ``SLURM_JOBID``, the array ids, the cluster name and the submit dir and host). Either
    list is expanded with ``scontrol show hostnames``.
    """
    env = os.environ if env is None else env
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
        if not job_id:
            raise RuntimeError("no SLURM job here (neither SLURM_JOB_NODELIST nor SLURM_JOB_ID is set)")
        shown = _scontrol(["show", "job", job_id], env)
        found = re.search(r"(?:^|\s)NodeList=(\S+)", shown)
        if not found or found.group(1) in ("(null)", "None"):
            raise RuntimeError(f"`scontrol show job {job_id}` names no NodeList (is the job running?)")
        nodelist = found.group(1)
    hosts = _scontrol(["show", "hostnames", nodelist], env).split()
    if not hosts:
        raise RuntimeError(f"`scontrol show hostnames {nodelist}` printed no host")
    return hosts


def _scontrol(args: list[str], env) -> str:
    try:
        done = subprocess.run(["scontrol", *args], capture_output=True, text=True, env=dict(env), timeout=120)
    except FileNotFoundError:
        raise RuntimeError("scontrol is not on PATH (it finds the nodes of the SLURM job)") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise RuntimeError(f"`scontrol {' '.join(args)}` failed ({done.returncode}): {why}")
    return done.stdout


def launch_command(job_path: str | os.PathLike, nodes: int, procs_per_node: int,
                   env: dict | None = None, cpus_per_node: int | None = None) -> list[str]:
    """The torchrun command line of a job (``srun`` + one torchrun per node for several nodes).

    One node: ``torchrun --standalone`` in this process's own place (under SLURM, the job
    step Snakemake runs the job in: the plugin's ``srun -n1`` step, or the batch step of an
    ``mpi`` job, which holds that node's GPUs and CPUs). Several nodes: one ``srun`` step
    with one task (one ``torchrun``) on each of the first ``nodes`` hosts of the job
    (:func:`slurm_job_hosts`), a c10d rendezvous on the first of them, and ``cpus_per_node``
    CPUs per task (``srun`` no longer inherits the job's ``--cpus-per-task``, and the
    job-step plugin drops the ``SLURM_*`` variables that would carry it). The step gets the
    job's GPUs on each node (a step's default: every generic resource of the job).
    """
    env = os.environ if env is None else env
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs_per_node}"]
    target = ["-m", "singledir.training.distributed", str(job_path)]
    if nodes <= 1:
        return [*torchrun, "--standalone", "--nnodes=1", *target]
    try:
        hosts = slurm_job_hosts(env)
    except RuntimeError as err:
        raise RuntimeError(f"train.nodes = {nodes} needs a SLURM job of {nodes} nodes, and here {err}; run the "
                           "rule through profiles/slurm, or set train.nodes: 1 on one machine") from None
    if len(hosts) < nodes:
        raise RuntimeError(f"train.nodes = {nodes}, but this SLURM job holds {len(hosts)} node(s) "
                           f"({','.join(hosts)}); the rule asks for train.nodes nodes: check that no profile "
                           "set-resources overrides nodes for train_model")
    hosts = hosts[:nodes]
    head = hosts[0]
    port = int(env.get("SINGLEDIR_RDZV_PORT", 29400))
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    step = ["srun", *([f"--jobid={job_id}"] if job_id else []), f"--nodes={nodes}", f"--ntasks={nodes}",
            "--ntasks-per-node=1", f"--nodelist={','.join(hosts)}",
            *([f"--cpus-per-task={cpus_per_node}"] if cpus_per_node else []), "--kill-on-bad-exit=1"]
    return [*step, *torchrun, f"--nnodes={nodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={head}:{port}",
            f"--rdzv_id={job_id or 'singledir'}", *target]


def launch(job_path: str | os.PathLike, nodes: int = 1, procs_per_node: int = 1, log_path=None,
           log=print) -> None:
    """Run a training job: in this process for one process, else through torchrun.

    SIGTERM/SIGUSR1/SIGINT received here are passed on as SIGTERM (torchrun forwards that to
    every worker in all versions), so the workers checkpoint before exiting. A failed or
    interrupted run raises :class:`~singledir.training.checkpoint.TrainingInterrupted`; rerunning resumes.
    """
    if nodes * procs_per_node <= 1:
        run_job(job_path, log=log)
        return
    job = json.loads(Path(job_path).read_text())
    # Check the device here, once, before torchrun starts nodes x procs_per_node workers
    # that would each stop with the same error.
    resolve_device(job.get("device", "auto"))
    cpus = int((job.get("run") or {}).get("threads") or 0) or None
    cmd = launch_command(job_path, nodes, procs_per_node, cpus_per_node=cpus)
    env = dict(os.environ, PET_SHUTDOWN_TIMEOUT=os.environ.get("PET_SHUTDOWN_TIMEOUT", "300"),
               TORCH_ELASTIC_SHUTDOWN_TIMEOUT=os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "300"),
               PYTHONUNBUFFERED="1")
    log("launching: " + " ".join(cmd))
    out = open(log_path, "a") if log_path else None
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None)
        received = []

        def forward(signum, frame):
            received.append(signum)
            proc.send_signal(signal.SIGTERM)

        old = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
        try:
            rc = proc.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    finally:
        if out:
            out.close()
    if rc != 0:
        deadline = Deadline.from_dict(job.get("deadline"))
        # torchrun exits 1 whatever its processes' status: the deadline tells a piece's end
        if not received and deadline is not None and deadline.passed():
            raise PieceDone(f"piece done: the time budget of {deadline.source} is used up; the training processes "
                            f"checkpointed (see {log_path or 'their output'}) and the job's retry resumes")
        why = f"signal {received[0]}" if received else f"exit code {rc}"
        raise TrainingInterrupted(f"distributed training stopped ({why}); rerun to resume from the last "
                                  f"checkpoint in {Path(job['work_dir'])}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m singledir.training.distributed JOB.json")
    try:
        run_job(sys.argv[1])
    except TrainingInterrupted as err:
        print(err, file=sys.stderr)
        raise SystemExit(STOPPED_EXIT_CODE)
