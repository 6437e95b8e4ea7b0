"""Small helpers shared by the workflow scripts: logging, device choice, loading
trained models and their data. No Snakemake import: scripts pass plain values."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time

import numpy as np
import torch

from singledir.training.checkpoint import brief
from singledir.data.sources import Tensors, load_prepared, to_tensors
from singledir.pipeline.gpu import claim_gpus
from singledir.io import atomic_path
# log_to lives in the torch-free singledir.pipeline.logs (figure jobs import it); kept importable
# here for the scripts that import it with the other helpers of this module.
from singledir.pipeline.logs import log_to  # noqa: F401
from singledir.models.nets import build_model


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
    """``auto`` -> CUDA when available, else CPU. ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but no CUDA device is visible; set device: cpu or auto")
    return torch.device(name)


def setup_torch(threads: int = 1, deterministic: bool = True, gpus: int = 0) -> None:
    """Threads and determinism; with ``gpus`` (the job's ``gpu`` resource, set by the GPU
    profiles) first claim that many free GPUs (singledir.pipeline.gpu), before CUDA initializes."""
    if gpus:
        claim_gpus(gpus)
    torch.set_num_threads(max(1, int(threads)))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def load_labels(path: str | os.PathLike) -> np.ndarray:
    with np.load(path) as f:
        return f["labels"]


def load_data(dataset_path, labels_path=None, device="cpu") -> Tensors:
    """Prepared dataset as normalized tensors, with the (possibly corrupted) training labels."""
    data = load_prepared(dataset_path)
    labels = load_labels(labels_path) if labels_path else None
    return to_tensors(data, labels, device)


class ModelFileError(RuntimeError):
    """A trained model file does not load; the message names it and the command that retrains it."""


def model_file_error(path: str | os.PathLike, err: BaseException) -> ModelFileError:
    return ModelFileError(
        f"{path} does not load ({brief(err)}); it is truncated or corrupt. Retrain it, and "
        f"remake everything made from it, by adding `--forcerun {path}` to the snakemake command you ran "
        f"(e.g. `snakemake --forcerun {path} all_figures --configfile config/demo.yaml`).")


def load_model(path: str | os.PathLike, device="cpu", snapshot: int | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained model from ``model.pt`` (final weights, or snapshot ``epoch``).

    A file that does not load raises :class:`ModelFileError` naming the file and the one
    command that retrains it (the model is not moved or deleted: Snakemake's
    ``--forcerun`` replaces it)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = build_model(state["spec"]["model"], state["in_shape"], state["n_classes"])
        weights = state["state_dict"] if snapshot is None else state["snapshots"][snapshot]
        model.load_state_dict(weights)
    except Exception as err:  # any failure here means: this file cannot be used as it is
        raise model_file_error(path, err) from err
    return model.to(device).eval(), state


def eval_subset(n: int, limit: int, seed: int) -> np.ndarray | None:
    """Seeded subset of ``limit`` example indices (None = all ``n``)."""
    if not limit or limit >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))

