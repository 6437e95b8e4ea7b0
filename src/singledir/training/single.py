"""Deterministic, resumable training of one model (one readable loop, airbench style).

The whole training set lives on the device as one tensor; each epoch draws a
permutation from a seeded generator and slices minibatches from it (no DataLoader).

Nothing is lost when a job dies:

- a resume checkpoint (model, optimizer, RNG states, position in the epoch, history)
  is written atomically every ``checkpoint_every`` epochs to ``work_dir`` (which is not
  a Snakemake output, so Snakemake never deletes it), keeping the one before it; a
  checkpoint that does not load is reported and set aside, and training resumes from the
  previous one or from scratch (:mod:`singledir.training.checkpoint`);
- on SIGTERM or SIGUSR1 (what SLURM sends before a time limit or preemption) the loop
  finishes the current minibatch, writes a checkpoint and raises
  :class:`TrainingInterrupted` (the job exits non-zero; a retry resumes);
- a rerun resumes from the checkpoint and ends with exactly the weights of an
  uninterrupted run (CPU, same seed), because every source of randomness is either
  saved or re-derived from the seed.
"""

from __future__ import annotations

import math
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
import torch.nn.functional as F

from singledir.training.checkpoint import load_checkpoint, load_snapshot, save_checkpoint as write_checkpoint
from singledir.data.sources import Tensors
from singledir.io import save_torch
from singledir.training import regularizers
class TrainingInterrupted(RuntimeError):
    """Training was asked to stop by a signal; a checkpoint was written first."""


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    augment: bool = False
    seed: int = 0
    eval_batch_size: int = 1024
    checkpoint_every: int = 1
    snapshot_epochs: list[int] = field(default_factory=list)
    # regularizers aimed at single-direction reliance (singledir.training.regularizers)
    regularizer: str = "none"
    reg_strength: float = 0.0
    reg_q_max: float = 0.5
    reg_layers: object = "all"

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        cfg = cls(**known)
        if cfg.epochs < 1:
            raise ValueError(f"train.epochs must be at least 1; got {cfg.epochs}")
        if cfg.batch_size < 1:
            raise ValueError(f"train.batch_size must be at least 1; got {cfg.batch_size}")
        return cfg


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """SGD (momentum) or Adam from a config with ``optimizer``, ``lr``, ``momentum`` and
    ``weight_decay`` (a :class:`TrainConfig` or a distributed ``StepConfig``)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer: unknown optimizer {cfg.optimizer!r}; choose 'sgd' or 'adam'")


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / cfg.epochs))
    raise ValueError(f"train.lr_schedule: unknown schedule {cfg.lr_schedule!r}; choose 'constant' or 'cosine'")


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and random crop with ``pad`` pixels of zero padding."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen, device=gen.device) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen, device=gen.device).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    h, w = x.shape[2:]
    out = torch.empty_like(x)
    for dy, dx in torch.unique(shifts, dim=0).tolist():
        sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
        out[sel] = padded[sel, :, dy:dy + h, dx:dx + w]
    return out


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy in eval mode."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size])
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return loss / len(x), correct / len(x)


class _StopFlag:
    """Records SIGTERM/SIGUSR1 so the loop can checkpoint before exiting."""

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        self.signum = signum


@contextmanager
def _catch_stop_signals():
    flag = _StopFlag()
    old = {}
    for s in (signal.SIGTERM, signal.SIGUSR1):
        try:
            old[s] = signal.signal(s, flag)
        except ValueError:  # not in the main thread: leave signals alone
            pass
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train(model: nn.Module, data: Tensors, cfg: TrainConfig, work_dir: str | os.PathLike,
          log=print) -> tuple[pd.DataFrame, dict[int, dict]]:
    """Train ``model`` in place; return (per-epoch history, {epoch: state_dict} snapshots).

    ``work_dir`` holds the resume checkpoint and the snapshots taken so far. If it
    already holds a checkpoint, training resumes from it.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = work_dir / "resume.pt"
    device = data.x_train.device
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    optimizer = make_optimizer(model.parameters(), cfg)
    step_loss = regularizers.from_train_config(model, cfg).loss
    start_epoch, start_step, perm, history = 0, 0, None, []
    state, loaded = load_checkpoint(ckpt_path, map_location=device, log=log,
                                    required=("model", "optimizer", "epoch", "step", "perm", "history"))
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["gen_state"].to("cpu") if device.type == "cpu" else state["gen_state"])
        torch.set_rng_state(state["torch_rng_state"])
        if device.type == "cuda" and state.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(state["cuda_rng_state"], device)
        start_epoch, start_step, perm, history = state["epoch"], state["step"], state["perm"], state["history"]
        log(f"resuming from {loaded} at epoch {start_epoch}, step {start_step}")

    def save_checkpoint(epoch, step, perm):
        write_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                          "step": step, "perm": perm, "history": history, "gen_state": gen.get_state(),
                          "torch_rng_state": torch.get_rng_state(),
                          "cuda_rng_state": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                         ckpt_path)

    n = len(data.x_train)
    x_rows, x_shape = data.x_train.reshape(n, -1), tuple(data.x_train.shape[1:])
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    snapshot_epochs = set(cfg.snapshot_epochs)
    if 0 in snapshot_epochs and not (work_dir / "snapshot_0.pt").exists():
        save_torch(model.state_dict(), work_dir / "snapshot_0.pt")
    if not history:  # the state before any training, for curves over training
        tr_loss, tr_acc = evaluate(model, data.x_train, data.y_train, cfg.eval_batch_size)
        te_loss, te_acc = evaluate(model, data.x_test, data.y_test, cfg.eval_batch_size)
        history.append({"epoch": 0, "train_loss": tr_loss, "train_accuracy": tr_acc,
                        "test_loss": te_loss, "test_accuracy": te_acc})
    with _catch_stop_signals() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, epoch)
            model.train()
            if perm is None:
                perm = torch.randperm(n, generator=gen, device=device)
            for step in range(start_step, steps_per_epoch):
                idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                # index_select on rows: far faster than advanced indexing of a 4-d tensor
                xb = x_rows.index_select(0, idx).view(len(idx), *x_shape)
                yb = data.y_train.index_select(0, idx)
                if cfg.augment:
                    xb = augment_batch(xb, gen)
                loss = step_loss(model, xb, yb, gen)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if stop.signum is not None:
                    save_checkpoint(epoch, step + 1, perm)
                    raise TrainingInterrupted(f"signal {stop.signum} received at epoch {epoch}, step {step + 1}; "
                                              f"checkpoint written to {ckpt_path}")
            start_step, perm = 0, None
            tr_loss, tr_acc = evaluate(model, data.x_train, data.y_train, cfg.eval_batch_size)
            te_loss, te_acc = evaluate(model, data.x_test, data.y_test, cfg.eval_batch_size)
            history.append({"epoch": epoch + 1, "train_loss": tr_loss, "train_accuracy": tr_acc,
                            "test_loss": te_loss, "test_accuracy": te_acc})
            if epoch + 1 in snapshot_epochs:
                save_torch(model.state_dict(), work_dir / f"snapshot_{epoch + 1}.pt")
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                save_checkpoint(epoch + 1, 0, None)
            log(f"epoch {epoch + 1}/{cfg.epochs} train_loss={tr_loss:.4f} train_acc={tr_acc:.4f} "
                f"test_loss={te_loss:.4f} test_acc={te_acc:.4f}")
    snapshots = {e: load_snapshot(work_dir / f"snapshot_{e}.pt", work_dir)
                 for e in sorted(snapshot_epochs) if (work_dir / f"snapshot_{e}.pt").exists()}
    return pd.DataFrame(history), snapshots
