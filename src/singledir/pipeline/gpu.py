"""One CUDA device per running job on a machine with several GPUs and no scheduler.

Snakemake limits how many GPU jobs run at once (``resources: gpu: N`` in
``profiles/local-gpu``) but does not say *which* device a job should use, so every job
would pick ``cuda:0``. :func:`claim_gpus` picks free devices with one lock file per
device and sets ``CUDA_VISIBLE_DEVICES`` before torch initializes CUDA; inside the job
the claimed devices are then ``cuda:0``, ``cuda:1``, ...

The locks are ``flock`` locks held on open files for the life of the process: the
kernel drops them when the process exits, however it exits (SIGKILL included), so a
crashed job never leaves a device locked.

Where a scheduler has already chosen (SLURM sets ``CUDA_VISIBLE_DEVICES`` for
``--gpus``), or the user has, that choice is kept.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Locks held by this process, kept open (and so held) until it exits.
_HELD: list = []


def visible_gpu_count() -> int:
    """Number of GPUs on this machine, counted without initializing CUDA in this process.

    ``SINGLEDIR_GPU_COUNT`` overrides the count (for machines without ``nvidia-smi``);
    otherwise ``nvidia-smi -L`` is asked; no ``nvidia-smi`` means no GPU.
    """
    forced = os.environ.get("SINGLEDIR_GPU_COUNT")
    if forced is not None:
        try:
            return int(forced)
        except ValueError:
            raise ValueError(f"SINGLEDIR_GPU_COUNT must be an integer; got {forced!r}") from None
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def default_lock_dir() -> Path:
    """``SINGLEDIR_GPU_LOCK_DIR``, else one directory in the system temp dir shared by
    every user of the machine (the devices are shared too)."""
    return Path(os.environ.get("SINGLEDIR_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / "singledir-gpu-locks")


def _open_lock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        os.fchmod(fd, 0o666)  # other users' jobs must be able to lock it too
    except OSError:
        pass
    return os.fdopen(fd, "r+")


def _try_lock(path: Path):
    fh = _open_lock(path)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def _cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def claim_gpus(n: int, *, count: int | None = None, lock_dir: str | os.PathLike | None = None,
               wait_s: float | None = None, poll_s: float = 0.5, log=print) -> list[int] | None:
    """Claim ``n`` free GPUs for this process and make them the only visible ones.

    Returns the claimed device indices, or ``None`` when nothing was assigned: ``n`` is
    0, ``CUDA_VISIBLE_DEVICES`` is already set (a scheduler or the user chose), this is a
    SLURM job (``SLURM_JOB_ID``: SLURM chose), or the
    machine has no GPU (the config's ``device`` then decides, e.g. ``auto`` -> CPU).
    Waits up to ``wait_s`` seconds (default ``SINGLEDIR_GPU_WAIT_S`` or 3600) for
    devices held by other jobs, then raises.
    """
    n = int(n or 0)
    if n <= 0:
        return None
    if "SLURM_JOB_ID" in os.environ and "CUDA_VISIBLE_DEVICES" not in os.environ:
        # SLURM chose the job's devices (its cgroup may show only those); never lock a
        # device of the node that may be another job's.
        log("GPU: a SLURM job without CUDA_VISIBLE_DEVICES; using the devices SLURM gives it")
        return None
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        log(f"GPU: keeping CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} (set by the scheduler or user)")
        return None
    count = visible_gpu_count() if count is None else int(count)
    if count == 0:
        log("GPU: the job asks for a GPU but none is visible; running on what config device allows")
        return None
    if n > count:
        raise RuntimeError(f"the job asks for {n} GPUs (resource gpu) but this machine has {count}; "
                           f"lower set-resources gpu in the profile (profiles/local-gpu/config.yaml)")
    if _cuda_initialized():
        raise RuntimeError("claim_gpus must run before CUDA is initialized (call singledir.pipeline.runtime.setup_torch "
                           "with gpus= first in the script)")
    if wait_s is None:
        wait_s = float(os.environ.get("SINGLEDIR_GPU_WAIT_S", 3600))
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(directory, 0o1777)
    except OSError:
        pass
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        held = []
        for dev in range(count):
            fh = _try_lock(directory / f"gpu{dev}.lock")
            if fh is not None:
                held.append((dev, fh))
                if len(held) == n:
                    break
        if len(held) == n:
            break
        for _, fh in held:  # never sit on part of a claim: that could deadlock two jobs
            fh.close()
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no {n} free GPU(s) of {count} within {wait_s:g} s (locks in {directory}); "
                               f"profiles/local-gpu's resources: gpu: must not exceed the number of GPUs")
        if not told:
            log(f"GPU: waiting for {n} free device(s) of {count} (locks in {directory})")
            told = True
        time.sleep(poll_s)
    devices = [dev for dev, _ in held]
    _HELD.extend(fh for _, fh in held)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    log(f"GPU: claimed device(s) {os.environ['CUDA_VISIBLE_DEVICES']} (locks in {directory})")
    return devices


def release_gpus() -> None:
    """Drop every claim of this process (the locks also go when the process exits)."""
    while _HELD:
        _HELD.pop().close()
