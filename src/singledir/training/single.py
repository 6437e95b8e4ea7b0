"""Deterministic, resumable training of one model (one readable loop, airbench style).

This module owns the epoch loop of one model (:func:`train`) and its evaluation
(:func:`evaluate`). The config, learning-rate schedule, optimizer and augmentation are the
training core's (:mod:`singledir.training.core`), the checkpoint and the stop signals
:mod:`singledir.training.checkpoint`'s, shared with the fused and distributed loops.

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
  :class:`~singledir.training.checkpoint.TrainingInterrupted` (the job exits non-zero; a retry resumes);
- a rerun resumes from the checkpoint and ends with exactly the weights of an
  uninterrupted run (CPU, same seed), because every source of randomness is either
  saved or re-derived from the seed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import torch
from torch import nn
import torch.nn.functional as F

from singledir.data.sources import Tensors
from singledir.io import save_torch
from singledir.training import regularizers
from singledir.training.checkpoint import (catch_stop_signals, checkpoint_and_stop, load_checkpoint, load_snapshot,
                                           save_checkpoint as write_checkpoint)
from singledir.training.core import TrainConfig, augment_batch, epoch_row, lr_at, make_optimizer, set_lr


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


def train(model: nn.Module, data: Tensors, cfg: TrainConfig, work_dir: str | os.PathLike,
          log=print) -> tuple[pd.DataFrame, dict[int, dict]]:
    """Train ``model`` in place; return (per-epoch history, {epoch: state_dict} snapshots).

    ``work_dir`` holds the resume checkpoint and the snapshots taken so far. If it
    already holds a checkpoint, training resumes from it.
    """
    cfg.expect("epoch", "singledir.training.single.train")
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
    def record(epoch):
        history.append(epoch_row(epoch, evaluate(model, data.x_train, data.y_train, cfg.eval_batch_size),
                                 evaluate(model, data.x_test, data.y_test, cfg.eval_batch_size)))

    if not history:  # the state before any training, for curves over training
        record(0)
    with catch_stop_signals() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            set_lr(optimizer, lr_at(cfg, epoch))
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
                if stop.requested:
                    checkpoint_and_stop(lambda: save_checkpoint(epoch, step + 1, perm), ckpt_path,
                                        f"epoch {epoch}, step {step + 1}", stop.signum)
            start_step, perm = 0, None
            record(epoch + 1)
            if epoch + 1 in snapshot_epochs:
                save_torch(model.state_dict(), work_dir / f"snapshot_{epoch + 1}.pt")
            if cfg.checkpoint_due(epoch + 1):
                save_checkpoint(epoch + 1, 0, None)
            h = history[-1]
            log(f"epoch {epoch + 1}/{cfg.epochs} train_loss={h['train_loss']:.4f} "
                f"train_acc={h['train_accuracy']:.4f} test_loss={h['test_loss']:.4f} test_acc={h['test_accuracy']:.4f}")
    snapshots = {e: load_snapshot(work_dir / f"snapshot_{e}.pt", work_dir)
                 for e in sorted(snapshot_epochs) if (work_dir / f"snapshot_{e}.pt").exists()}
    return pd.DataFrame(history), snapshots
