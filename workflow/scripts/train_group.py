"""Train a group of models in one job (singledir.training.fused.train_group): fused or one at a
time, whichever is faster (a short measured trial where both give the same bits, else a cost
model from shapes; the decision and its reason go to the log); write each member's model.pt
and history.csv exactly as train_model.py does."""
import shutil

import torch

from singledir.data.sources import Tensors, load_data, load_labels
from singledir.training.fused import train_group
from singledir.io import save_csv
from singledir.models.api import build_model, save_trained
from singledir.pipeline.logs import log_to
from singledir.pipeline.runtime import pick_device, setup_torch
from singledir.training.core import TrainConfig

specs = snakemake.params.specs
with log_to(snakemake.log[0]):
    setup_torch(snakemake.threads, gpus=snakemake.resources.get("gpu", 0))
    device = pick_device(snakemake.params.device)
    base = load_data(snakemake.input.dataset, None, device)  # images once, shared by every member
    in_shape = tuple(base.x_train.shape[1:])
    models, datas, cfgs = [], [], []
    for spec, labels in zip(specs, snakemake.params.labels):
        y = torch.as_tensor(load_labels(labels), dtype=torch.long, device=device)
        datas.append(Tensors(base.x_train, y, base.x_test, base.y_test, base.n_classes))
        cfg = TrainConfig.from_spec(spec["train"])
        torch.manual_seed(cfg.seed)  # the seed fixes the initialization, as for a single model
        models.append(build_model(spec["model"], in_shape, base.n_classes).to(device))
        cfgs.append(cfg)
    print(f"training a group of {len(specs)} models on {device}: {[s['id'] for s in specs]}")
    results, _ = train_group(models, datas, cfgs, snakemake.params.work_dir)
    for spec, model, (history, snapshots), out_model, out_history in zip(
            specs, models, results, snakemake.output.model, snakemake.output.history):
        save_trained(out_model, spec, in_shape, base.n_classes, model.state_dict(), snapshots)
        save_csv(history, out_history)
        print(f"wrote {out_model} ({len(snapshots)} snapshots) and {out_history}")
    # The resume state is no longer needed once the outputs exist.
    shutil.rmtree(snakemake.params.work_dir, ignore_errors=True)
