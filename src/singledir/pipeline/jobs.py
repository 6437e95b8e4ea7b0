"""The opening every per-model analysis script shares (ablation and noise curves, training
AUC, unit analysis): :func:`open_model_job`. No Snakemake import: scripts pass plain values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from singledir.data.access import open_analysis_data
from singledir.models.api import load_trained
from singledir.pipeline.params import engine_options
from singledir.pipeline.runtime import pick_device, setup_torch


@dataclass
class ModelJob:
    """What a per-model analysis script works on (:func:`open_model_job`)."""

    device: torch.device
    model: torch.nn.Module
    state: dict          # the model file (singledir.models.api.load_trained)
    data: Any            # singledir.data.access.AnalysisData
    speed: dict          # speed knobs (singledir.pipeline.params.speed_settings)
    options: Any         # singledir.engine.options.EngineOptions

    @property
    def model_id(self) -> str:
        return self.state["spec"]["id"]


def open_model_job(inputs: Mapping[str, str], analysis: Mapping, speed: Mapping, *, threads: int = 1,
                   gpus: int = 0, impact_per_class: int = 0) -> ModelJob:
    """The opening of every per-model analysis script (ablation and noise curves, training
    AUC, unit analysis): threads and determinism, the device, the trained model from
    ``inputs["model"]``, its family's analysis data (npz arrays or an image index,
    :func:`singledir.data.access.open_analysis_data`) and the engine options from the
    rule's result params ``analysis`` and the ``speed`` knobs."""
    setup_torch(threads, gpus=gpus)
    device = pick_device(speed["device"])
    model, state = load_trained(inputs["model"], device)
    data = open_analysis_data(dict(inputs), device, dataset_cfg=analysis.get("dataset"),
                              impact_per_class=impact_per_class, chunk_size=speed["chunk_size"],
                              loader_workers=speed["loader_workers"])
    return ModelJob(device, model, state, data, dict(speed), engine_options(analysis, speed))
