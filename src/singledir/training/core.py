"""The training core shared by every mode of training: one config, the run options that
only set speed, one history schema, one learning-rate schedule, one optimizer factory, and
the pieces of a training step the modes have in common.

- :class:`TrainConfig` is a model's ``train`` section, for epoch-based training (``epochs``:
  the single and fused modes of :mod:`singledir.training.loop`) or step-based training
  (``steps``: :func:`singledir.training.distributed.train_steps`), checked once when it is
  built, together with the :class:`RunOptions` of the job;
- :class:`RunOptions` holds the settings that change how fast a model trains, never what
  it learns (:data:`RUN_OPTION_KEYS`): they are kept out of a model's spec, so editing one
  reruns nothing (:func:`singledir.pipeline.params.training_run_options`);
- :data:`HISTORY_COLUMNS` is the one ``history.csv`` schema of every mode (:func:`history_frame`);
- :func:`lr_at` is the learning rate of an epoch or a step (warmup, then constant or cosine);
- :func:`make_optimizer` builds the ``torch.optim`` optimizer of a config; the fused loop's
  per-member optimizer (:class:`singledir.training.fused.FusedOptimizer`) takes the same kinds
  and Adam constants from here;
- :func:`augment_batch` is the random flip and crop of the epoch-based loops.

The resume checkpoint and the stop signals (SIGTERM/SIGUSR1/SIGINT -> checkpoint, then
:class:`~singledir.training.checkpoint.TrainingInterrupted`) are
:mod:`singledir.training.checkpoint`.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F

from singledir.training.options import RUN_OPTION_KEYS, RunOptions

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine")
AMP_PRECISIONS = ("none", "bf16", "fp16")
# torch.optim.Adam's defaults; the fused optimizer uses the same numbers.
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
# Checkpoint cadence when train.checkpoint_every is unset: every epoch, or every 1000 steps.
DEFAULT_CHECKPOINT_EVERY = {"epoch": 1, "step": 1000}

# One history.csv schema for every mode of training (one row per evaluation): epoch-based
# modes fill epoch, step (optimizer steps so far), lr (of the epoch just finished) and the
# whole-set losses and accuracies; the step-based mode fills step, lr, images_per_s and the
# train-mode means over the logging window's augmented training batches (train_window_loss,
# train_window_accuracy = top-1, train_window_top5) on every row, and train_loss,
# train_accuracy and train_top5 only on its final row, measured in eval mode on a fixed
# seeded subset of the training images (train.eval_train_per_class; ImageNet cannot afford
# whole-set passes). train_accuracy is thus an eval-mode measurement in every mode: what
# the figures and claims read.
HISTORY_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_accuracy", "train_top5", "test_loss",
                   "test_accuracy", "images_per_s", "train_window_loss", "train_window_accuracy",
                   "train_window_top5")


def history_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of any mode as one DataFrame with exactly :data:`HISTORY_COLUMNS` (empty cells: NaN)."""
    unknown = {k for row in rows for k in row} - set(HISTORY_COLUMNS)
    if unknown:
        raise ValueError(f"history rows with columns outside the history schema: {sorted(unknown)}")
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).astype("float64").astype({"epoch": "Int64",
                                                                                         "step": "Int64"})


@dataclass
class TrainConfig:
    """A model's ``train`` section. Exactly one of ``epochs`` (epoch-based training, the
    single and fused loops) and ``steps`` (step-based, the distributed loop) is set; the
    fields under "epoch-based" and "step-based" only matter to those loops."""

    epochs: int | None = None
    steps: int | None = None
    # shared by every loop
    batch_size: int = 128  # per logical worker in step-based training
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    augment: bool = False
    seed: int = 0
    checkpoint_every: int | None = None  # epochs or steps; unset: DEFAULT_CHECKPOINT_EVERY
    # epoch-based
    eval_batch_size: int = 1024
    snapshot_epochs: list[int] = field(default_factory=list)
    regularizer: str = "none"  # aimed at single-direction reliance (singledir.training.regularizers)
    reg_strength: float = 0.0
    reg_q_max: float = 0.5
    reg_layers: object = "all"
    # step-based
    workers: int = 1
    log_every: int = 100
    amp: str = "none"
    num_workers: int = 0
    eval_train_per_class: int = 10  # the final eval-mode training accuracy's images per class (0: all)

    @classmethod
    def from_spec(cls, train: dict, run: RunOptions | None = None) -> "TrainConfig":
        """The config of a spec's ``train`` section and the job's run options (the loops
        read ``checkpoint_every``, ``eval_batch_size`` and ``num_workers`` from here).
        Without ``run``, run options written into ``train`` itself are used (a hand-made
        section; the workflow's specs never hold them)."""
        run = run or RunOptions.from_mapping(train)
        fields = {k: train[k] for k in cls.__dataclass_fields__ if k in train and k not in RUN_OPTION_KEYS}
        fields.update(checkpoint_every=run.checkpoint_every, eval_batch_size=run.eval_batch_size,
                      num_workers=run.num_workers)
        return cls(**fields)

    def __post_init__(self):
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("train: set exactly one of train.epochs (epoch-based training) and train.steps "
                             f"(step-based training); got epochs={self.epochs}, steps={self.steps}")
        if self.checkpoint_every is None:
            self.checkpoint_every = DEFAULT_CHECKPOINT_EVERY[self.unit]
        for key in (self.unit + "s", "batch_size", "checkpoint_every", "eval_batch_size", "workers", "log_every"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"train.{key} must be at least 1; got {getattr(self, key)}")
        for key, value, choices in (("optimizer", self.optimizer, OPTIMIZERS),
                                    ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
                                    ("amp", self.amp, AMP_PRECISIONS)):
            if value not in choices:
                raise ValueError(f"train.{key}: unknown {key.replace('_', ' ')} {value!r}; choose "
                                 + " or ".join(repr(c) for c in choices))
        if self.eval_train_per_class < 0:
            raise ValueError(f"train.eval_train_per_class must be at least 0 (0: every training image); got "
                             f"{self.eval_train_per_class}")
        if self.warmup_steps < 0:
            raise ValueError(f"train.warmup_steps must be at least 0; got {self.warmup_steps}")
        if self.warmup_steps and self.unit == "epoch":
            raise ValueError(f"train.warmup_steps ({self.warmup_steps}) counts steps of step-based training "
                             "(train.steps); epoch-based training has no warmup: remove train.warmup_steps")

    @property
    def unit(self) -> str:
        """What the schedule counts: ``"epoch"`` or ``"step"``."""
        return "epoch" if self.epochs is not None else "step"

    @property
    def length(self) -> int:
        """The number of epochs or steps to train."""
        return self.epochs if self.epochs is not None else self.steps

    @property
    def global_batch(self) -> int:
        """Images per step of step-based training: ``workers`` logical workers x ``batch_size``."""
        return self.workers * self.batch_size

    def expect(self, unit: str, loop: str) -> None:
        """Raise unless this config counts ``unit`` ("epoch" or "step"), as ``loop`` needs."""
        if self.unit != unit:
            raise ValueError(f"{loop} trains for train.{unit}s, but this config sets train.{self.unit}s "
                             f"({self.length}); epochs: singledir.training.loop, steps: "
                             "singledir.training.distributed")

    def checkpoint_due(self, done: int) -> bool:
        """Whether a checkpoint is written once ``done`` epochs (steps) are complete: every
        ``checkpoint_every`` and at the end."""
        return done % self.checkpoint_every == 0 or done == self.length


def lr_at(cfg: TrainConfig, t: int) -> float:
    """The learning rate of epoch (step) ``t`` (from 0) of ``cfg.length``: linear warmup over
    ``warmup_steps``, then constant or a cosine decay that reaches 0 at ``cfg.length``."""
    if t < cfg.warmup_steps:
        return cfg.lr * (t + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        frac = (t - cfg.warmup_steps) / max(1, cfg.length - cfg.warmup_steps)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * frac))
    if cfg.lr_schedule == "constant":
        return cfg.lr
    raise ValueError(f"train.lr_schedule: unknown lr schedule {cfg.lr_schedule!r}; choose "
                     + " or ".join(repr(c) for c in LR_SCHEDULES))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum) or Adam with the config's ``lr``, ``momentum`` and ``weight_decay``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer: unknown optimizer {cfg.optimizer!r}; choose "
                     + " or ".join(repr(c) for c in OPTIMIZERS))


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


def epoch_row(epoch: int, step: int, lr: float | None, train: tuple[float, float],
              test: tuple[float, float]) -> dict:
    """One row of an epoch-based history: after ``epoch`` epochs (``step`` optimizer steps,
    learning rate ``lr``; None before training), (loss, accuracy) on the training and test sets."""
    return {"epoch": epoch, "step": step, "lr": lr, "train_loss": train[0], "train_accuracy": train[1],
            "test_loss": test[0], "test_accuracy": test[1]}


def configure_torch(threads: int = 1, deterministic: bool = True) -> None:
    """Intra-op threads and, with ``deterministic``, deterministic kernels (and the cuBLAS
    workspace they need): what every training and analysis process sets first."""
    torch.set_num_threads(max(1, int(threads)))
    if deterministic:
        deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def deterministic_algorithms(on: bool) -> None:
    """``torch.use_deterministic_algorithms(on, warn_only=True)`` without its first step,
    ``import torch._inductor.config``, which only sets Inductor's own flag (this project
    never calls torch.compile) and costs 1.3-1.7 s per process on the 2-core machines
    here (it pulls in torch._dynamo): a third of a short analysis job. ATen's switch, the
    one every eager kernel reads, is set the same way. Where Inductor is already loaded, or
    the entry point is missing in some torch version, the public call is used."""
    if "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(on, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(on, warn_only=True)
