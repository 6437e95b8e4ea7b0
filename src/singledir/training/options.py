"""What a training job's config says about speed and placement only: :class:`RunOptions`.

No torch import: the workflow's parse (:mod:`singledir.pipeline.plan`) strips
:data:`RUN_OPTION_KEYS` from every model spec, so a spec holds only what defines a
model's results, and editing a run option reruns nothing (``tests/workflow/test_workflow_rerun.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Keys of a config's ``train`` section that only set speed or placement: how often the
# resume checkpoint is written, the evaluation batch, image-decoding processes, the DDP
# processes (nodes x gpus_per_node; a step is the same SGD step on any number of them,
# singledir.training.distributed) and CPU threads. They are not part of a model's spec.
RUN_OPTION_KEYS = ("checkpoint_every", "eval_batch_size", "num_workers", "nodes", "gpus_per_node", "threads")


@dataclass(frozen=True)
class RunOptions:
    """How a training job runs, not what it computes (:data:`RUN_OPTION_KEYS` and the
    run's ``device``). Unset values take the defaults below or, for ``checkpoint_every``,
    :data:`singledir.training.core.DEFAULT_CHECKPOINT_EVERY` of the config's unit.
    ``gpus_per_node`` 0 trains on the CPU (one process per node)."""

    device: str = "auto"
    checkpoint_every: int | None = None
    eval_batch_size: int = 1024
    num_workers: int = 0
    nodes: int = 1
    gpus_per_node: int = 0
    threads: int = 1

    @classmethod
    def from_mapping(cls, values: dict) -> "RunOptions":
        """From the train section's run-option keys (others ignored) and ``device``."""
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if values.get(k) is not None})

    @property
    def processes(self) -> int:
        """Training processes of step-based (DDP) training: nodes x gpus_per_node, at least 1."""
        return max(1, int(self.nodes)) * max(1, int(self.gpus_per_node))
