"""Small helpers shared by the workflow scripts: benchmark files, device choice, torch
setup (the prepared data: :func:`singledir.data.sources.load_data`; trained models:
:mod:`singledir.models.api`). No Snakemake import: scripts pass plain values."""

from __future__ import annotations

import contextlib
import os
import resource
import time

import torch

from singledir.pipeline.gpu import claim_gpus
from singledir.training.core import configure_torch
from singledir.training.cuda_check import GRANTED_GPUS_ENV, resolve_device
from singledir.io import atomic_path


@contextlib.contextmanager
def benchmark_to(path: str | os.PathLike | None):
    """Write a benchmark TSV in Snakemake's format (s, h:m:s, max_rss in MB, cpu_time) for
    the enclosed block, on success. For rules eligible for the between-workflow cache,
    which Snakemake forbids a ``benchmark:`` directive (a cached result has no runtime)."""
    if not path:
        yield
        return
    wall0, cpu0 = time.perf_counter(), time.process_time()
    yield
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    hms = time.strftime("%H:%M:%S", time.gmtime(wall))
    with atomic_path(path) as tmp:
        tmp.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{wall:.4f}\t{hms}\t{rss_mb:.2f}\t{cpu:.2f}\n")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when usable, else the CPU, except in a job granted a GPU, which
    stops with one line naming why CUDA cannot be used; ``cuda`` without a usable GPU is an
    error (:func:`singledir.training.cuda_check.resolve_device`)."""
    return resolve_device(name)


def setup_torch(threads: int = 1, deterministic: bool = True, gpus: int = 0) -> None:
    """Threads and determinism; with ``gpus`` (the job's ``gpu`` resource, set by the GPU
    profiles) first claim that many free GPUs (singledir.pipeline.gpu), before CUDA
    initializes, and record the grant (``SINGLEDIR_GRANTED_GPUS``, inherited by torchrun's
    workers), so a job granted a GPU stops instead of falling back to the CPU."""
    if gpus:
        claim_gpus(gpus)
        os.environ[GRANTED_GPUS_ENV] = str(int(gpus))
    configure_torch(threads, deterministic)
