"""The resume-checkpoint protocol shared by every training loop (single model
:func:`singledir.training.loop.fit`, fused groups (its fused mode),
distributed :func:`singledir.training.distributed.train_steps`).

- :func:`save_checkpoint` writes ``resume.pt`` atomically (bytes built in memory, then
  moved into place) and keeps the checkpoint it replaces as ``resume.prev.pt``.
- :func:`load_checkpoint` loads ``resume.pt``; a file that does not load (truncated by a
  full disk, a copy cut short, a bad sector) is reported with its path and *set aside*
  (moved, never deleted) to ``<work_dir>.corrupt/``, beside the work directory (which the
  workflow deletes once training has finished), and the previous checkpoint is tried;
  with neither loadable, training starts from scratch. Every loop is deterministic, so
  resuming from the previous checkpoint, or from scratch, ends with the same weights as
  an uninterrupted run, only later.
- :func:`catch_stop_signals` records SIGTERM and SIGUSR1 (what SLURM sends before a time
  limit or preemption) and SIGINT (Ctrl-C) while a loop runs; the loop finishes its step and calls
  :func:`checkpoint_and_stop`, which writes the checkpoint and raises
  :class:`TrainingInterrupted` (the job exits non-zero; a rerun resumes).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, NoReturn

from singledir.io import atomic_path, torch_bytes


def brief(err: BaseException) -> str:
    """An exception as one short line: torch's load errors run to several sentences."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    first = text.split(". ")[0]
    return f"{type(err).__name__}: {first[:200]}"


class CheckpointError(RuntimeError):
    """A file written during training does not load and cannot be rebuilt from the checkpoint."""


class TrainingInterrupted(RuntimeError):
    """Training was asked to stop by a signal; a checkpoint was written first."""


# SIGINT is Ctrl-C (sent to Snakemake and its local jobs alike): like SLURM's signals it
# checkpoints first, so an interrupted run loses no epochs; a second Ctrl-C stops at once.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopRequest:
    """The stop signal received while :func:`catch_stop_signals` is active (``signum``), if any."""

    def __init__(self):
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __call__(self, signum, frame):  # the signal handler
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: the user wants out now, checkpoint or not
        self.signum = signum


@contextmanager
def catch_stop_signals() -> Iterator[StopRequest]:
    """Record :data:`STOP_SIGNALS` instead of dying, so the loop can checkpoint first; the
    previous handlers come back on exit. Outside the main thread signals are left alone."""
    request = StopRequest()
    old = {}
    for s in STOP_SIGNALS:
        try:
            old[s] = signal.signal(s, request)
        except ValueError:  # not in the main thread
            pass
    try:
        yield request
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def ignore_ctrl_c(worker_id: int = 0) -> None:
    """A DataLoader ``worker_init_fn``: loader workers ignore SIGINT. Ctrl-C reaches every
    process of the terminal's group, and a worker that died of it would fail the training
    process's next fetch before that process could checkpoint; the training process handles
    it (:func:`catch_stop_signals`) and ends its workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def checkpoint_and_stop(save: Callable[[], None], path: str | os.PathLike, where: str,
                        signum: int | None) -> NoReturn:
    """Write the checkpoint (``save()``), then raise :class:`TrainingInterrupted` saying the
    signal (``None``: one received by another process of the group), ``where`` the loop
    stopped and ``path``."""
    save()
    what = f"signal {signum}" if signum is not None else "a stop signal (sent to another process)"
    raise TrainingInterrupted(f"{what} received at {where}; checkpoint written to {path}")


def previous_of(path: str | os.PathLike) -> Path:
    """Where the checkpoint that ``path`` replaced is kept (``resume.pt`` -> ``resume.prev.pt``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def set_aside(path: str | os.PathLike) -> Path:
    """Move ``path`` into ``<its directory>.corrupt/`` (a sibling of its directory), under a
    name not yet taken there; return the new path. Nothing is deleted."""
    path = Path(path)
    dest_dir = path.parent.with_name(path.parent.name + ".corrupt")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest, n = dest_dir / path.name, 1
    while dest.exists():
        n += 1
        dest = dest_dir / f"{path.stem}.{n}{path.suffix}"
    os.replace(path, dest)
    return dest


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically, keeping the file it replaces as :func:`previous_of`.

    The previous file is hard-linked (copied where links are not supported) to its new
    name before ``path`` is replaced, so at every instant ``path`` holds a complete
    checkpoint."""
    data = torch_bytes(state)
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            prev = previous_of(path)
            link = prev.with_name(f".{prev.name}.link")
            link.unlink(missing_ok=True)  # a leftover of a killed run
            try:
                os.link(path, link)
            except OSError:
                shutil.copyfile(path, link)
            os.replace(link, prev)


def load_checkpoint(path: str | os.PathLike, map_location=None, required: Iterable[str] = (),
                    log: Callable[[str], None] = print, move_bad: bool = True) -> tuple[dict | None, Path | None]:
    """The newest checkpoint that loads: (state, its path), or (None, None) to start from scratch.

    Tries ``path``, then :func:`previous_of` ``path``. A candidate that does not load, or
    lacks a ``required`` key, is logged with its path and, with ``move_bad``, set aside
    (:func:`set_aside`). In a process group only one process should move files
    (``move_bad=False`` on the others, after a barrier)."""
    import torch

    path = Path(path)
    failed = False
    for candidate in (path, previous_of(path)):
        if not candidate.exists():
            continue
        try:
            state = torch.load(candidate, map_location=map_location, weights_only=False)
            missing = [k for k in required if k not in state]
            if missing:
                raise ValueError(f"not a checkpoint of this training loop: no {missing}")
            return state, candidate
        except Exception as err:  # any failure to unpickle means: this file is unusable
            failed = True
            if move_bad:
                aside = set_aside(candidate)
                warn(log, f"WARNING: checkpoint {candidate} does not load ({brief(err)}); moved it to {aside}")
            else:
                warn(log, f"WARNING: checkpoint {candidate} does not load ({brief(err)})")
    if failed:
        warn(log, f"WARNING: no loadable checkpoint in {path.parent}; training starts from scratch")
    return None, None


def warn(log: Callable[[str], None], message: str) -> None:
    """``log(message)``, and the message on the console too: the process's own stderr, which
    a job's log redirection (:func:`singledir.pipeline.logs.log_to`) leaves alone, so a set-aside
    checkpoint is seen where Snakemake prints, not only in the job's log. Not twice when
    ``log`` already prints to the console."""
    log(message)
    console = sys.__stderr__
    if console is None or (log is print and sys.stdout is sys.__stdout__):
        return
    print(message, file=console, flush=True)


def load_snapshot(path: str | os.PathLike, work_dir: str | os.PathLike) -> dict:
    """A weight snapshot taken during training (weights only), or :class:`CheckpointError`
    saying how to recover: snapshots of past epochs cannot be rebuilt from the checkpoint."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"snapshot {path} does not load ({brief(err)}). It cannot be rebuilt "
                              f"from the resume checkpoint: move {work_dir} aside (e.g. `mv {work_dir} "
                              f"{work_dir}.bad`) and rerun; training then starts from scratch") from err
