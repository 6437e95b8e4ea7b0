"""The epoch loop: one readable, deterministic, resumable loop (airbench style) for one
model or for K same-shaped models trained fused.

:func:`fit` trains ``K`` members, each with its own data order, labels and config, in one
of two modes that differ only in how a minibatch step and an evaluation are computed:

- :class:`SingleMode` (K = 1): the model itself, a ``torch.optim`` optimizer and the
  config's regularizer (:mod:`singledir.training.regularizers`);
- :class:`FusedMode` (K >= 1): :class:`~singledir.training.fused.FusedNet`, one batched
  step for all K (see :mod:`singledir.training.fused` for why it is the same function as
  K separate runs, and when it is bitwise equal).

Everything else is this module's, once: the seeded data order (each member draws a
permutation from its own generator, seeded ``seed + 1``, every epoch), augmentation,
learning-rate schedule, evaluation rows (:data:`~singledir.training.core.HISTORY_COLUMNS`; at the snapshot
epochs, the final epoch and the convergence gate's reference epoch,
:func:`~singledir.training.convergence.reference_epoch`, only),
snapshots, the resume checkpoint and the stop signals.

The whole training set lives on the device as one tensor; minibatches are row gathers
from it (no DataLoader).

Nothing is lost when a job dies:

- a resume checkpoint (weights, optimizer, RNG states, position in the epoch, histories)
  is written atomically every ``checkpoint_every`` epochs to ``work_dir`` (which is not a
  Snakemake output, so Snakemake never deletes it), keeping the one before it; a
  checkpoint that does not load is reported and set aside, and training resumes from the
  previous one or from scratch (:mod:`singledir.training.checkpoint`);
- on SIGTERM or SIGUSR1 (what SLURM sends before a time limit or preemption) or SIGINT (Ctrl-C) the loop
  finishes the current minibatch, writes a checkpoint and raises
  :class:`~singledir.training.checkpoint.TrainingInterrupted` (the job exits non-zero; a retry resumes);
- a rerun resumes from the checkpoint and ends with exactly the weights of an
  uninterrupted run (CPU, same seed), because every source of randomness is either saved
  or re-derived from the seed.

A member whose training loss becomes NaN or inf (a learning rate too large for its batch
size, e.g. the paper sweep's lr 0.5 at batch 16) has *diverged* (:func:`diverged_members`,
checked at the end of every epoch): its history ends with one row whose ``train_loss`` is
that non-finite value, a log line names it, and the net counts as failed downstream
(:func:`singledir.stats.net_tables.training_failed`). A single model stops there. In a
fused group only that member ends: the others train on unchanged, because every fused
operation keeps members apart (batched products and grouped convolutions per member,
per-channel batch norm, per-member dropout, element-wise optimizer), so a NaN in one
member's slices never reaches another's; the diverged member's slices are still carried
(it is cheaper than reshaping the group), and its later snapshots and final weights are
its non-finite ones.
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
                                           save_checkpoint)
from singledir.training.convergence import reference_epoch
from singledir.training.core import (TrainConfig, augment_batch, epoch_row, history_frame, lr_at, make_optimizer,
                                     set_lr)
from singledir.training.fused import FusedNet, FusedOptimizer, MemberRNG

# Config fields every member of one fit must share (they shape the loop itself); members
# may differ in seed, lr, weight decay, dropout, labels and snapshot epochs.
SHARED_FIELDS = ("epochs", "batch_size", "optimizer", "momentum", "lr_schedule", "augment", "eval_batch_size",
                 "checkpoint_every")


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


@torch.no_grad()
def evaluate_fused(net: FusedNet, xs: list[torch.Tensor], ys: list[torch.Tensor],
                   batch_size: int) -> list[tuple[float, float]]:
    """Per member (mean loss, accuracy) in eval mode, chunked as :func:`evaluate`."""
    was = net.training
    net.eval()
    k, n = len(xs), len(xs[0])
    loss, correct = [0.0] * k, [0] * k
    shared = all(x is xs[0] for x in xs)
    for i in range(0, n, batch_size):
        if shared:
            logits = net(xs[0][i:i + batch_size], shared=True)
        else:
            logits = net(torch.stack([x[i:i + batch_size] for x in xs]))
        for m in range(k):
            yb = ys[m][i:i + batch_size]
            loss[m] += F.cross_entropy(logits[m], yb, reduction="sum").item()
            correct[m] += (logits[m].argmax(1) == yb).sum().item()
    net.train(was)
    return [(loss[m] / n, correct[m] / n) for m in range(k)]


def check_members(cfgs: list[TrainConfig], datas: list[Tensors]) -> None:
    """One fit's members share :data:`SHARED_FIELDS` and the shape and device of their data."""
    if not cfgs or len(cfgs) != len(datas):
        raise ValueError("fit: need one data set and one TrainConfig per model")
    cfgs[0].expect("epoch", "singledir.training.loop.fit")
    for f in SHARED_FIELDS:
        values = {getattr(c, f) for c in cfgs}
        if len(values) > 1:
            raise ValueError(f"fused training: train.{f} differs between the models ({sorted(map(str, values))}); "
                             f"only seed, lr, weight_decay, dropout and labels may differ within a fused group")
    shapes = {(tuple(d.x_train.shape), tuple(d.x_test.shape), d.x_train.device.type) for d in datas}
    if len(shapes) > 1:
        raise ValueError(f"fused training: the models' datasets differ in shape or device: {shapes}")


class SingleMode:
    """One model: its own forward pass, ``torch.optim`` and the config's regularizer. The
    global RNG (dropout) is seeded ``seed``, as the model's initialization was."""

    name = "single"

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device):
        torch.manual_seed(cfg.seed)
        self.model, self.cfg, self.device = model, cfg, device
        self.optimizer = make_optimizer(model.parameters(), cfg)
        self.step_loss = regularizers.from_train_config(model, cfg).loss

    def begin_epoch(self, epoch: int) -> None:
        set_lr(self.optimizer, lr_at(self.cfg, epoch))
        self.model.train()

    def step(self, xb: torch.Tensor, yb: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        """One minibatch step; returns the minibatch loss, (1,), detached."""
        loss = self.step_loss(self.model, xb[0], yb[0], gens[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach().reshape(1)

    def evaluate(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> list[tuple[float, float]]:
        return [evaluate(self.model, xs[0], ys[0], self.cfg.eval_batch_size)]

    def member_state_dict(self, m: int) -> dict:
        return self.model.state_dict()

    def state_dict(self) -> dict:
        cuda = self.device.type == "cuda"
        return {"weights": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": [torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None]}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        cpu_rng, cuda_rng = state["rng"]
        torch.set_rng_state(cpu_rng)
        if self.device.type == "cuda" and cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, self.device)

    def finish(self, models: list[nn.Module]) -> None:
        """The trained weights are already the model's own."""


class FusedMode:
    """K models as one :class:`~singledir.training.fused.FusedNet` with a per-member
    optimizer; every member keeps its own RNG stream for dropout (:class:`MemberRNG`).
    Plain cross-entropy only (``fusion_groups`` refuses regularized experiments)."""

    name = "fused"

    def __init__(self, models: list[nn.Module], cfgs: list[TrainConfig], device: torch.device):
        if any((c.regularizer or "none") != "none" for c in cfgs):
            raise ValueError("fused training computes plain cross-entropy only; train regularized models one by one")
        self.cfgs, self.k = cfgs, len(models)
        self.rng = MemberRNG([c.seed for c in cfgs], device)
        self.net = FusedNet(models, self.rng).to(device)
        self.optimizer = FusedOptimizer(list(self.net.parameters()), cfgs)
        self.models, self.lrs = models, None

    def begin_epoch(self, epoch: int) -> None:
        self.lrs = [lr_at(c, epoch) for c in self.cfgs]
        self.net.train()

    def step(self, xb: torch.Tensor, yb: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        """One minibatch step of every member; returns the members' minibatch losses, (K,), detached."""
        logits = self.net(xb)
        # Per member the mean over its batch, as F.cross_entropy(reduction="mean"): the
        # gradient each member receives is the same.
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                 reduction="none").view(self.k, -1).mean(1)
        self.optimizer.zero_grad()
        losses.sum().backward()
        self.optimizer.step(self.lrs)
        return losses.detach()

    def evaluate(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> list[tuple[float, float]]:
        return evaluate_fused(self.net, xs, ys, self.cfgs[0].eval_batch_size)

    def member_state_dict(self, m: int) -> dict:
        return self.net.member_state_dict(m, self.models[m])

    def state_dict(self) -> dict:
        return {"weights": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": self.rng.states}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.states = state["rng"]

    def finish(self, models: list[nn.Module]) -> None:
        """Copy each member's trained weights back into its own model."""
        for m, model in enumerate(models):
            model.load_state_dict(self.net.member_state_dict(m, model))


class _Batches:
    """Minibatches of K members from their permutations: (K, B, ...) inputs and (K, B) labels."""

    def __init__(self, datas: list[Tensors], batch_size: int):
        self.datas, self.k, self.b = datas, len(datas), batch_size
        n = len(datas[0].x_train)
        self.shared_x = all(d.x_train is datas[0].x_train for d in datas)
        self.x_shape = tuple(datas[0].x_train.shape[1:])
        self.x_rows = datas[0].x_train.reshape(n, -1)
        # A buffer kept across steps saves the page faults of a fresh multi-megabyte tensor per step.
        self.x_buf = self.x_rows.new_empty(self.k * batch_size, self.x_rows.shape[1]) if self.shared_x else None
        self.y_stack = torch.stack([d.y_train for d in datas])  # (K, n)

    def take(self, perm_stack: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = perm_stack[:, step * self.b:(step + 1) * self.b]  # (K, B)
        yb = self.y_stack.gather(1, idx)
        if self.shared_x:
            # index_select on rows: far faster than advanced indexing of a 4-d tensor
            flat = idx.reshape(-1)
            xb = torch.index_select(self.x_rows, 0, flat, out=self.x_buf[:len(flat)]).view(self.k, -1, *self.x_shape)
        else:
            xb = torch.stack([d.x_train[i] for d, i in zip(self.datas, idx)])
        return xb, yb


def fit(models: list[nn.Module], datas: list[Tensors], cfgs: list[TrainConfig], work_dir: str | os.PathLike,
        fused: bool = False, log=print, deadline=None) -> list[tuple[pd.DataFrame, dict[int, dict]]]:
    """Train ``models`` in place, epoch by epoch; per member (history, {epoch: state_dict}).

    ``models[k]`` must be freshly built from ``cfgs[k].seed`` (the seed fixes the
    initialization); ``datas[k]`` holds its (possibly corrupted) labels. One model trains in
    :class:`SingleMode` unless ``fused``; several models need ``fused=True`` (K models one
    after another are K calls, :func:`singledir.training.api.train`). ``work_dir`` holds the
    resume checkpoint and the snapshots; if it holds a checkpoint, training resumes. With a
    ``deadline`` (:class:`~singledir.training.walltime.Deadline`) training stops once it
    passes, as on a stop signal, raising :class:`~singledir.training.checkpoint.PieceDone`.
    """
    check_members(cfgs, datas)
    k, cfg0 = len(models), cfgs[0]
    if k > 1 and not fused:
        raise ValueError("fit: several models train fused (fused=True) or one call each")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = datas[0].x_train.device
    mode = FusedMode(models, cfgs, device) if fused else SingleMode(models[0], cfg0, device)
    run = _RunState(mode, cfgs, work_dir / "resume.pt", device)
    run.resume(log)
    n = len(datas[0].x_train)
    steps_per_epoch = math.ceil(n / cfg0.batch_size)

    # History rows only where something reads them (evaluating both sets after every
    # epoch was ~30 % of a CIFAR-10 net's FLOPs): the snapshot epochs of any member (the
    # training-AUC table joins them), the final epoch (every figure's final accuracy) and the
    # start of the last 10 % of training (the claims' convergence gate compares its training
    # loss with the final one: singledir.training.convergence).
    # Evaluation is in eval mode and draws no random numbers, so the weights do not change.
    eval_epochs = set().union(*(c.snapshot_epochs for c in cfgs)) | {cfg0.epochs, reference_epoch(cfg0.epochs)}

    def record(epoch):
        lrs = [lr_at(c, epoch - 1) if epoch else None for c in cfgs]
        train = mode.evaluate([d.x_train for d in datas], [d.y_train for d in datas])
        test = mode.evaluate([d.x_test for d in datas], [d.y_test for d in datas])
        for m in range(k):
            if m not in run.diverged:  # a diverged member's history ends with its divergence row
                run.histories[m].append(epoch_row(epoch, epoch * steps_per_epoch, lrs[m], train[m], test[m]))

    batches = _Batches(datas, cfg0.batch_size)
    _take_snapshots(mode, cfgs, work_dir, 0)
    if not run.histories[0] and run.epoch == run.step == 0 and 0 in eval_epochs:  # before any training
        record(0)
    loss_sums = torch.zeros(k, device=device)  # each member's minibatch losses this epoch (diverged_members)
    with catch_stop_signals(deadline) as stop:
        for epoch in range(run.epoch, cfg0.epochs):
            mode.begin_epoch(epoch)
            if run.perms is None:
                run.perms = [torch.randperm(n, generator=g, device=device) for g in run.gens]
            perm_stack = torch.stack(run.perms)  # (K, n)
            for step in range(run.step, steps_per_epoch):
                xb, yb = batches.take(perm_stack, step)
                if cfg0.augment:
                    xb = torch.stack([augment_batch(xb[m], run.gens[m]) for m in range(k)])
                loss_sums += mode.step(xb, yb, run.gens)
                if stop.requested:
                    run.epoch, run.step = epoch, step + 1
                    checkpoint_and_stop(run.save, run.path, f"epoch {epoch}, step {step + 1}", stop,
                                        f"{cfg0.epochs} epochs")
            run.epoch, run.step, run.perms = epoch + 1, 0, None
            if diverged_members(loss_sums, run, epoch, steps_per_epoch, cfgs, log):
                for e in range(epoch + 1, cfg0.epochs + 1):  # every snapshot a later rule reads exists
                    _take_snapshots(mode, cfgs, work_dir, e)
                run.epoch = cfg0.epochs
                run.save()
                break
            if epoch + 1 in eval_epochs:
                record(epoch + 1)
            _take_snapshots(mode, cfgs, work_dir, epoch + 1)
            if cfg0.checkpoint_due(epoch + 1):
                run.save()
            shown = min(set(range(k)) - run.diverged)
            rows = run.histories[shown]
            h = rows[-1] if rows and rows[-1]["epoch"] == epoch + 1 else None
            who = f" ({k} models) member {shown}:" if k > 1 else ""
            log(f"epoch {epoch + 1}/{cfg0.epochs}{who} " + ("(not evaluated: no snapshot)" if h is None else
                f"train_loss={h['train_loss']:.4f} train_acc={h['train_accuracy']:.4f} "
                f"test_loss={h['test_loss']:.4f} test_acc={h['test_accuracy']:.4f}"))
    mode.finish(models)
    return [(history_frame(run.histories[m]), _load_snapshots(cfgs[m], work_dir, m)) for m in range(k)]


def diverged_members(loss_sums: torch.Tensor, run: "_RunState", epoch: int, steps_per_epoch: int,
                     cfgs: list[TrainConfig], log) -> bool:
    """The divergence check at the end of ``epoch`` (from 0): a member whose sum of
    minibatch losses over the epoch (``loss_sums``, added on the device every step, so the
    check costs one synchronization per epoch) is NaN or inf has diverged (cross-entropy is
    never negative, so a NaN or inf in any step stays in the sum). Each newly diverged
    member joins ``run.diverged`` (saved in the checkpoint) and gets its last history row,
    ``train_loss`` = that sum and NaN accuracies and test values, and a log line. Resets the
    sums; True when every member has diverged (training ends)."""
    sums = loss_sums.tolist()
    loss_sums.zero_()
    nan = float("nan")
    for m, total in enumerate(sums):
        if m in run.diverged or math.isfinite(total):
            continue
        run.diverged.add(m)
        cfg = cfgs[m]
        run.histories[m].append(epoch_row(epoch + 1, (epoch + 1) * steps_per_epoch, lr_at(cfg, epoch), (total, nan),
                                          (nan, nan)))
        who = f"member {m} (seed {cfg.seed}, lr {cfg.lr:g}, batch {cfg.batch_size})" if len(cfgs) > 1 else \
            f"the model (seed {cfg.seed}, lr {cfg.lr:g}, batch {cfg.batch_size})"
        rest = "; the other members train on" if len(cfgs) > 1 else ""
        log(f"DIVERGED: {who}: the training loss became {total} in epoch {epoch + 1}. Its training ends here "
            f"(last history row: train_loss {total}) and the net counts as failed: figures and claims exclude it "
            f"and say so{rest}. A smaller train.lr or a larger batch_size avoids it.")
    return len(run.diverged) == len(sums)


class _RunState:
    """What the resume checkpoint holds besides the weights and optimizer (the mode's own
    state): the position (epoch, step within it), the epoch's permutations, the histories
    so far and every member's data-order generator."""

    KEYS = ("mode", "members", "epoch", "step", "perms", "histories", "gen_states", "seeds")  # and "diverged"

    def __init__(self, mode, cfgs: list[TrainConfig], path: Path, device: torch.device):
        self.mode, self.path, self.device = mode, path, device
        self.seeds = [c.seed for c in cfgs]
        self.gens = [torch.Generator(device=device).manual_seed(c.seed + 1) for c in cfgs]
        self.epoch, self.step, self.perms = 0, 0, None
        self.histories: list[list[dict]] = [[] for _ in cfgs]
        self.diverged: set[int] = set()  # members whose training loss became NaN or inf (diverged_members)

    def resume(self, log) -> None:
        """Load the checkpoint, if one loads (:func:`load_checkpoint`), into the mode and here."""
        state, loaded = load_checkpoint(self.path, map_location=self.device, log=log, required=self.KEYS)
        if state is None:
            return
        if state["seeds"] != self.seeds or state["mode"] != self.mode.name:
            raise ValueError(f"{self.path} belongs to {state['mode']} training with seeds {state['seeds']}, not "
                             f"{self.mode.name} training with seeds {self.seeds}; remove it to start over")
        self.mode.load_state_dict(state["members"])
        for g, s in zip(self.gens, state["gen_states"]):
            g.set_state(s.to("cpu") if self.device.type == "cpu" else s)
        self.epoch, self.step, self.perms, self.histories = (state["epoch"], state["step"], state["perms"],
                                                             state["histories"])
        self.diverged = set(state.get("diverged", ()))  # absent from checkpoints written before the check
        log(f"resuming from {loaded} at epoch {self.epoch}, step {self.step}")

    def save(self) -> None:
        save_checkpoint({"mode": self.mode.name, "members": self.mode.state_dict(), "epoch": self.epoch,
                         "step": self.step, "perms": self.perms, "histories": self.histories,
                         "gen_states": [g.get_state() for g in self.gens], "seeds": self.seeds,
                         "diverged": sorted(self.diverged)}, self.path)


def _snapshot_path(work_dir: Path, m: int, epoch: int) -> Path:
    return work_dir / f"member{m}_snapshot_{epoch}.pt"


def _take_snapshots(mode, cfgs: list[TrainConfig], work_dir: Path, epoch: int) -> None:
    """Each member's weights at ``epoch`` if its config asks for them (kept across a resume)."""
    for m, cfg in enumerate(cfgs):
        if epoch in cfg.snapshot_epochs and not _snapshot_path(work_dir, m, epoch).exists():
            save_torch(mode.member_state_dict(m), _snapshot_path(work_dir, m, epoch))


def _load_snapshots(cfg: TrainConfig, work_dir: Path, m: int) -> dict[int, dict]:
    return {e: load_snapshot(_snapshot_path(work_dir, m, e), work_dir)
            for e in sorted(cfg.snapshot_epochs) if _snapshot_path(work_dir, m, e).exists()}


def train_one(model: nn.Module, data: Tensors, cfg: TrainConfig, work_dir: str | os.PathLike,
              log=print) -> tuple[pd.DataFrame, dict[int, dict]]:
    """One model in :class:`SingleMode`: (history, {epoch: state_dict} snapshots)."""
    return fit([model], [data], [cfg], work_dir, log=log)[0]
