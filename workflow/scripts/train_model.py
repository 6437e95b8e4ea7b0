import shutil

import torch

from singledir.data.sources import load_data
from singledir.io import save_csv
from singledir.models.api import build_model, save_trained
from singledir.pipeline.logs import log_to
from singledir.pipeline.runtime import benchmark_to, pick_device, setup_torch
from singledir.training.core import TrainConfig
from singledir.training.single import train

spec = snakemake.params.spec
with log_to(snakemake.log[0]), benchmark_to(snakemake.params.benchmark):
    setup_torch(snakemake.threads, gpus=snakemake.resources.get("gpu", 0))
    device = pick_device(snakemake.params.device)
    data = load_data(snakemake.input.dataset, snakemake.input.labels, device)
    cfg = TrainConfig.from_spec(spec["train"])
    torch.manual_seed(cfg.seed)  # the seed fixes the initialization
    in_shape = tuple(data.x_train.shape[1:])
    model = build_model(spec["model"], in_shape, data.n_classes).to(device)
    print(f"training {spec['id']} on {device}: {sum(p.numel() for p in model.parameters())} parameters")
    history, snapshots = train(model, data, cfg, snakemake.params.work_dir)
    save_trained(snakemake.output.model, spec, in_shape, data.n_classes, model.state_dict(), snapshots)
    save_csv(history, snakemake.output.history)
    print(f"wrote {snakemake.output.model} ({len(snapshots)} snapshots) and {snakemake.output.history}")
    # The resume state is no longer needed once the outputs exist.
    shutil.rmtree(snakemake.params.work_dir, ignore_errors=True)
