"""One model of the imagenet family: trained with DDP (torchrun) from the index and its
labels, or taken from pretrained torchvision weights / a checkpoint file (no training)."""
import shutil
from pathlib import Path

import pandas as pd
import torch

from singledir.training.distributed import launch, write_job
from singledir.data.imagenet import processes_per_node, read_index
from singledir.io import save_csv
from singledir.models.api import build_model, save_trained
from singledir.pipeline.logs import log_to
from singledir.pipeline.runtime import setup_torch

sm = snakemake
spec, ds = sm.params.spec, sm.params.dataset
with log_to(sm.log[0]):
    index = read_index(sm.input.index)
    n_classes = int(index["target"].max()) + 1
    in_shape = (3, int(ds.get("image_size", 224)), int(ds.get("image_size", 224)))
    print(f"read {sm.input.index}: {len(index)} images, {n_classes} classes")
    weights = spec["model"].get("weights")
    # Claims this job's GPUs on a machine without a scheduler (profiles/local-gpu); the
    # torchrun processes inherit CUDA_VISIBLE_DEVICES.
    setup_torch(sm.threads, deterministic=False, gpus=sm.resources.get("gpu", 0))
    if weights:
        model = build_model(spec["model"], in_shape, n_classes)
        state_dict = {k: v.cpu() for k, v in model.state_dict().items()}
        history = pd.DataFrame(columns=["step", "lr", "train_loss", "train_top1", "train_top5", "images_per_s"])
        print(f"{spec['id']}: weights {weights}, no training")
    else:
        train = spec["train"]
        nodes, procs = int(train.get("nodes", 1)), processes_per_node(train)
        work = Path(sm.params.work_dir)
        job = {"id": spec["id"], "model": spec["model"], "train": train, "dataset": ds, "root": str(Path(sm.params.root).expanduser().resolve()),
               "index": str(Path(sm.input.index).resolve()), "labels": str(Path(sm.input.labels).resolve()),
               "work_dir": str(work.resolve()), "device": sm.params.device,
               "threads": max(1, sm.threads // procs)}
        launch(write_job(job, work / "job.json"), nodes, procs, log_path=sm.log[0])
        state = torch.load(work / "resume.pt", map_location="cpu", weights_only=False)
        if state["step"] != int(train["steps"]):
            raise RuntimeError(f"training stopped at step {state['step']} of {train['steps']}; rerun to resume")
        state_dict, history = state["model"], pd.DataFrame(state["history"])
    # Step-based training keeps no epoch snapshots (singledir.models.api: the model.pt schema).
    save_trained(sm.output.model, spec, in_shape, n_classes, state_dict, snapshots={})
    save_csv(history, sm.output.history)
    print(f"wrote {sm.output.model} and {sm.output.history} ({len(history)} history rows)")
    if not weights:  # the resume state is no longer needed once the outputs exist
        shutil.rmtree(sm.params.work_dir, ignore_errors=True)
