"""The device a job runs on, and why CUDA cannot be used where a GPU was granted.

``device: auto`` means "the GPU where the job has one, else the CPU". Falling back to the
CPU is right on a laptop, and wrong in a job that was granted a GPU: there it is a broken
setup (typically an NVIDIA driver older than the CUDA build of the pinned torch, or a
scheduler that handed out no device), and the job would train for days on the CPU instead
of failing. So :func:`resolve_device` stops such a job at its start with one line naming
the cause (:func:`why_cuda_unusable`).

A job counts as *granted* a GPU when its ``gpu`` resource is above zero (the workflow
scripts record it in ``SINGLEDIR_GRANTED_GPUS`` through
:func:`singledir.pipeline.runtime.setup_torch`, and the environment carries it to
``torchrun``'s workers) and the host shows a GPU setup: a SLURM job (``SLURM_JOB_ID``),
``CUDA_VISIBLE_DEVICES`` set (by SLURM, the user, or the local-gpu profile's device claim),
or an ``nvidia-smi`` on ``PATH``. A GPU resource on a machine with none of these (the
``profiles/local`` run of a GPU config on a laptop) keeps the CPU fallback.

``SINGLEDIR_ALLOW_CPU_FALLBACK=1`` lets a granted job fall back all the same, with a log
line: for test clusters whose GPUs are pretend devices (the CI's SLURM).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import warnings
from typing import Callable, Mapping

import torch

GRANTED_GPUS_ENV = "SINGLEDIR_GRANTED_GPUS"
ALLOW_CPU_FALLBACK_ENV = "SINGLEDIR_ALLOW_CPU_FALLBACK"

# The oldest Linux driver each CUDA major release runs on (minor version compatibility;
# NVIDIA's CUDA Toolkit release notes, table 2: 11.x >= 450.80.02, 12.x >= 525.60.13,
# 13.x >= 580.65.06).
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}


class CudaUnusable(RuntimeError):
    """A job that needs CUDA (``device: cuda``, or a granted GPU) cannot use it."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.strip().split(".") if p.isdigit())


def _hides_every_gpu(visible: str) -> bool:
    # CUDA stops reading the list at the first invalid entry, so "-1,0" hides all too.
    first = visible.strip().split(",")[0].strip()
    return first in ("", "-1", "NoDevFiles")


def why_cuda_unusable(env: Mapping[str, str] | None = None, which: Callable = shutil.which,
                      torch_warning: str = "") -> str:
    """The likeliest reason torch cannot use CUDA here, as one clause: a
    ``CUDA_VISIBLE_DEVICES`` that hides every GPU, a CPU-only torch build, no ``nvidia-smi``
    (no driver), an ``nvidia-smi`` that fails, or torch's CUDA version against the driver's
    (``nvidia-smi --query-gpu=driver_version``)."""
    env = os.environ if env is None else env
    host = socket.gethostname()
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and _hides_every_gpu(visible):
        return (f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU (the scheduler gave this job no device, or "
                "the job's environment sets it)")
    cuda = torch.version.cuda
    if not cuda:
        return f"torch {torch.__version__} is a CPU-only torch build (install the CUDA build: envs/cuda.yaml)"
    smi = which("nvidia-smi", path=env.get("PATH"))
    if smi is None:
        return f"torch is built for CUDA {cuda}, and {host} has no nvidia-smi on PATH (no NVIDIA driver)"
    try:
        done = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=60, env=dict(env))
    except (OSError, subprocess.SubprocessError) as err:
        return f"torch is built for CUDA {cuda}, and nvidia-smi does not run on {host}: {err}"
    lines = [ln.strip() for ln in done.stdout.splitlines() if ln.strip()]
    if done.returncode != 0 or not lines:
        why = ((done.stdout + done.stderr).strip().splitlines() or [f"exit code {done.returncode}"])[0]
        return f"torch is built for CUDA {cuda}, and nvidia-smi fails on {host}: {why.strip()}"
    driver = lines[0]
    needed = MIN_DRIVER.get(_version(cuda)[0] if _version(cuda) else -1)
    if needed and _version(driver) < _version(needed):
        return (f"torch {torch.__version__} is built for CUDA {cuda}, which needs an NVIDIA driver >= {needed}, "
                f"and the driver on {host} is {driver}")
    tail = f" (torch: {torch_warning})" if torch_warning else ""
    return (f"torch is built for CUDA {cuda} and the NVIDIA driver on {host} is {driver}, yet torch finds no "
            f"usable GPU{tail}")


def cuda_available() -> tuple[bool, str]:
    """``torch.cuda.is_available()``, and the first line of the warning torch gives when
    CUDA fails to initialize (e.g. "The NVIDIA driver on your system is too old")."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = torch.cuda.is_available()
    said = next((str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()), "")
    return ok, said


def granted_gpus(env: Mapping[str, str] | None = None) -> int:
    """The job's ``gpu`` resource as recorded by ``setup_torch`` (0 when none)."""
    env = os.environ if env is None else env
    try:
        return int(env.get(GRANTED_GPUS_ENV) or 0)
    except ValueError:
        return 0


def gpu_host(env: Mapping[str, str] | None = None, which: Callable = shutil.which) -> bool:
    """Whether this process runs where GPUs are handed out: a SLURM job, a set
    ``CUDA_VISIBLE_DEVICES``, or a machine with ``nvidia-smi``."""
    env = os.environ if env is None else env
    return ("SLURM_JOB_ID" in env or "SLURM_JOBID" in env or "CUDA_VISIBLE_DEVICES" in env
            or which("nvidia-smi", path=env.get("PATH")) is not None)


def resolve_device(name: str = "auto", env: Mapping[str, str] | None = None, log=print) -> torch.device:
    """The torch device for the config's ``device``: ``cpu``; ``cuda`` (an error without a
    usable GPU); ``auto``: CUDA where usable, else the CPU, except in a job granted a GPU
    (module docstring), which stops with :class:`CudaUnusable`. Other names pass through."""
    env = os.environ if env is None else env
    if name == "cpu":
        return torch.device("cpu")
    if name not in ("auto", "cuda"):
        return torch.device(name)
    ok, said = cuda_available()
    if ok:
        return torch.device("cuda")
    if name == "cuda":
        raise CudaUnusable(f"device: cuda, but torch cannot use CUDA: {why_cuda_unusable(env, torch_warning=said)}; "
                           "fix that, or set device: auto or cpu in the config")
    gpus = granted_gpus(env)
    if gpus > 0 and gpu_host(env):
        why = why_cuda_unusable(env, torch_warning=said)
        if env.get(ALLOW_CPU_FALLBACK_ENV) == "1":
            log(f"GPU: granted {gpus} GPU(s) but torch cannot use CUDA ({why}); training on the CPU because "
                f"{ALLOW_CPU_FALLBACK_ENV}=1")
            return torch.device("cpu")
        raise CudaUnusable(f"this job was granted {gpus} GPU(s) (its gpu resource) but torch cannot use CUDA: {why}; "
                           "it stops instead of running on the CPU (set device: cpu in the config to use the "
                           "CPU on purpose)")
    return torch.device("cpu")
