"""Training in pieces within a job's walltime.

A cluster job has a time limit (``cluster.max_job_minutes`` in the config caps what the
workflow asks for; many partitions refuse more than a day). Training longer than that
runs as several jobs, *pieces*, each resuming from the checkpoint of the one before:

- :func:`job_deadline` reads when this job's time limit ends (SLURM: ``scontrol show job``
  of ``SLURM_JOB_ID``, the one SLURM variable the job-step plugin keeps) and returns a
  :class:`Deadline`; outside a SLURM job there is none and training runs to its end;
- every training loop checks the deadline after each step (with the stop signals,
  :func:`singledir.training.checkpoint.catch_stop_signals`); once fewer than
  :func:`stop_margin` seconds are left, it writes its checkpoint and raises
  :class:`~singledir.training.checkpoint.PieceDone`; the job exits with status
  :data:`~singledir.training.checkpoint.STOPPED_EXIT_CODE`, and Snakemake's retry (``retries``
  of the training rules, one per further piece) submits the next piece, which resumes.

Why stop before the limit instead of waiting for SLURM's SIGTERM (which the loops also
handle, for preemption): SLURM signals the job only up to ~30 s after the limit and kills
it ``KillWait`` seconds later (30 s by default), which may not leave time to write an
ImageNet checkpoint to a slow shared file system; a piece that stops itself has its margin.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

# The margin before a job's end at which training stops to write its checkpoint: this
# fraction of the job's time limit, at most MAX_STOP_MARGIN_S. It must cover the rest of
# the current step, an epoch-end evaluation that may start just before the deadline
# (the loops check after each step), the checkpoint write and the process exit.
STOP_MARGIN_FRACTION = 0.05
MAX_STOP_MARGIN_S = 600.0


def stop_margin(limit_s: float) -> float:
    """Seconds before a job's end at which training stops, for a job of ``limit_s``
    seconds: 5 % of it, at most 10 minutes (a 24-hour job stops 10 minutes early, a
    1-minute test job 3 s early)."""
    return min(MAX_STOP_MARGIN_S, STOP_MARGIN_FRACTION * float(limit_s))


@dataclass(frozen=True)
class Deadline:
    """When a job's time limit ends (``end``, Unix seconds), how long the limit is
    (``limit_s``) and who says so (``source``); training stops at :attr:`stop_at`.
    ``clock`` is what :meth:`passed` reads (tests give a counter)."""

    end: float
    limit_s: float
    source: str
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    @property
    def margin_s(self) -> float:
        return stop_margin(self.limit_s)

    @property
    def stop_at(self) -> float:
        return self.end - self.margin_s

    def passed(self) -> bool:
        """Whether training should stop now (the margin before the end has begun)."""
        return self.clock() >= self.stop_at

    def describe(self) -> str:
        """One line for the job's log: the limit, its end, and when training stops."""
        def clock_time(t):
            return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")

        return (f"time budget: {self.source} ends at {clock_time(self.end)} (limit {self.limit_s / 60:.0f} min); "
                f"training stops at {clock_time(self.stop_at)} ({self.margin_s:.0f} s margin) with a checkpoint, "
                f"and the job's retry resumes from it")

    def as_dict(self) -> dict:
        """For a training job's JSON (the processes torchrun starts read it back, :meth:`from_dict`)."""
        return {"end": self.end, "limit_s": self.limit_s, "source": self.source}

    @classmethod
    def from_dict(cls, values: dict | None) -> "Deadline | None":
        return None if not values else cls(float(values["end"]), float(values["limit_s"]), str(values["source"]))


def _slurm_time(text: str) -> float | None:
    """A time of ``scontrol show job`` (local time, ``2026-12-06T12:50:00``) as Unix seconds."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:  # Unknown, None
        return None


def slurm_deadline(job_id: str, show_job: Callable[[str], str] | None = None) -> Deadline | None:
    """The deadline of SLURM job ``job_id`` from ``scontrol show job`` (``show_job``: its
    output, for tests), or None for a job without a time limit."""
    if show_job is None:
        def show_job(jid):
            return subprocess.run(["scontrol", "show", "job", "--oneliner", jid], check=True, capture_output=True,
                                  text=True, timeout=60).stdout
    fields = dict(part.split("=", 1) for part in show_job(job_id).split() if "=" in part)
    start, end = _slurm_time(fields.get("StartTime", "")), _slurm_time(fields.get("EndTime", ""))
    if start is None or end is None or fields.get("TimeLimit") in ("UNLIMITED", "Partition_Limit", None):
        return None
    return Deadline(end, end - start, f"SLURM job {job_id}")


def job_deadline(env: dict | None = None, log=print) -> Deadline | None:
    """This job's deadline: SLURM's end time of ``SLURM_JOB_ID``, or None outside SLURM.
    Where ``scontrol`` does not answer, a warning: training then relies on the SIGTERM
    SLURM sends at the limit (:func:`singledir.training.checkpoint.catch_stop_signals`)."""
    env = os.environ if env is None else env
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        return None
    try:
        deadline = slurm_deadline(job_id)
    except (OSError, subprocess.SubprocessError) as err:
        log(f"WARNING: could not read the time limit of SLURM job {job_id} ({err}); training runs until "
            "SLURM's SIGTERM at the limit, then checkpoints (set KillWait >= 30 s)")
        return None
    if deadline is None:
        log(f"SLURM job {job_id} has no time limit: training runs to its end")
    return deadline
