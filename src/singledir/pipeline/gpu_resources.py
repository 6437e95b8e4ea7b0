"""The GPU resources of a training job, and the check that the profile grants what the
config trains on (pure functions over the config and plain resource mappings; the
workflow calls :func:`check_training_gpus` when it is parsed, from workflow/rules/common.smk).

A training job starts ``nodes x gpus_per_node`` processes, one per GPU
(:func:`singledir.pipeline.params.training_gpus`). Its rule asks for those GPUs itself
(:func:`training_gpu_resources`): ``gpu: G`` on one node; on several nodes, a SLURM ``mpi``
job (``mpi: srun``, ``tasks``/``nodes`` = N, ``gres: gpu:G`` per node), whose batch step
then starts one ``torchrun`` per node with ``srun``
(:func:`singledir.training.distributed.launch_command`). A profile can still override the
rule (``set-resources: train_model: gpu: 1``) or cap every job (the local-gpu profile's
``resources: gpu: N``: Snakemake then runs the job with fewer GPUs than processes). Either
way the job would start more processes than it has GPUs, or hold GPUs it never uses, so
the workflow stops at parse time with one line naming both numbers and the fix.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

from singledir.pipeline.params import training_gpus, training_run_options

TRAINING_RULE = "train_model"


def gres_gpus(gres) -> int:
    """GPUs per node in a SLURM ``gres`` string: ``gpu`` (1), ``gpu:8``, ``gpu:a100:8``;
    other generic resources count 0 (``gpu:a100`` is one GPU of that type)."""
    total = 0
    for part in str(gres or "").split(","):
        fields = part.strip().split(":")
        if fields[0] != "gpu":
            continue
        count = re.fullmatch(r"(\d+)", fields[-1]) if len(fields) > 1 else None
        total += int(count.group(1)) if count else 1
    return total


def _int(value, default: int = 0) -> int:
    if value is None or value == "":
        return default
    return int(value)


def granted_gpus(resources: Mapping) -> int:
    """GPUs a job with these Snakemake resources holds: ``gpu`` (or ``gpus``; SLURM
    ``--gpus``, for the whole job) where above zero, else its ``gres`` GPUs per node times
    ``nodes``."""
    gpu = _int(resources.get("gpu")) or _int(resources.get("gpus"))
    if gpu > 0:
        return gpu
    return gres_gpus(resources.get("gres")) * max(1, _int(resources.get("nodes"), 1))


def training_gpu_resources(nodes: int, gpus: int) -> dict:
    """The GPU resources of a training job that trains on ``gpus`` GPUs over ``nodes``
    nodes (``gpus`` = nodes x gpus_per_node; 0: the CPU). Several nodes: an ``mpi`` job
    (the SLURM plugins run it in its batch step, without their own ``srun``) of one task
    per node (``tasks``; ``tasks_per_gpu: 0`` keeps the plugin from turning ``tasks`` into
    ``--ntasks-per-gpu``) with ``gres: gpu:<per node>``. ``None`` leaves a resource out
    (Snakemake drops resources whose value is None)."""
    if nodes <= 1:
        return {"gpu": gpus, "nodes": 1, "mpi": None, "tasks": None, "tasks_per_gpu": None, "gres": None}
    per_node = gpus // nodes
    return {"gpu": None, "nodes": nodes, "mpi": "srun", "tasks": nodes, "tasks_per_gpu": 0,
            "gres": f"gpu:{per_node}" if per_node else None}


def _needs(config: Mapping, family: str, experiment: str) -> tuple[int, str]:
    options = training_run_options(config, family, experiment)
    need = training_gpus(config, family, experiment)
    if options["device"] == "cpu":
        return need, "trains on the CPU (device: cpu)"
    nodes, per_node = int(options.get("nodes", 1)), int(options.get("gpus_per_node", 0) or 0)
    return need, f"trains on nodes x gpus_per_node = {nodes} x {per_node} = {need} GPU(s)"


def check_training_gpus(config: Mapping, experiments: Iterable[tuple[str, str]], overrides: Mapping,
                        gpu_limit: int | None = None, rule: str = TRAINING_RULE) -> None:
    """Stop (ValueError, one line) where the GPUs a profile grants a training job differ
    from what its config trains on.

    ``experiments``: (family, experiment) pairs that train models; ``overrides``: the
    profile's ``set-resources`` for ``rule`` (literal values); ``gpu_limit``: the run's
    ``resources: gpu`` (Snakemake runs no job with more; None: no limit).
    """
    for family, experiment in experiments:
        need, what = _needs(config, family, experiment)
        where = f"families.{family} (experiment {experiment})"
        options = training_run_options(config, family, experiment)
        own = training_gpu_resources(int(options.get("nodes", 1)), need)
        touched = sorted(k for k in ("gpu", "gpus", "gres", "nodes") if k in overrides)
        if touched:
            granted = granted_gpus({**own, **{k: v for k, v in overrides.items() if v is not None}})
            if granted != need:
                raise ValueError(
                    f"the profile's set-resources {rule} ({', '.join(f'{k}: {overrides[k]}' for k in touched)}) "
                    f"grants {granted} GPU(s), but {where} {what}: remove {'/'.join(touched)} from set-resources "
                    f"{rule} in the profile (the rule asks for the config's GPUs itself), or set "
                    f"train.gpus_per_node / train.nodes of {where} in the config to match")
        if gpu_limit is not None and need > gpu_limit:
            raise ValueError(
                f"{where} {what}, but the profile's resources: gpu: {gpu_limit} lets no job hold more than "
                f"{gpu_limit} (Snakemake would run it on {gpu_limit} GPU(s) with {need} processes): set resources: gpu "
                f"to this machine's GPU count (profiles/local-gpu/config.yaml), or train.gpus_per_node of {where} "
                f"in the config to at most {gpu_limit}")
