"""Train the models of one job (rule train_model: one model; train_group_*: a fused group)
through the one training entry, singledir.training.api.train, and write each model's
model.pt and history.csv. Run options (speed, placement) come from the config, not params.
A net that failed to train (diverged, or never above chance: singledir.stats.net_tables.failure_reason,
chance from the data's class count) is named in a warning line in the job's log and on the console.

In a SLURM job training stops shortly before the job's time limit (singledir.training.walltime),
and on SIGTERM/SIGUSR1, with a checkpoint: the script then exits with status 3 after one
line saying why, and the rule's retry (the next piece) resumes."""
import shutil
import sys

import torch

from singledir.io import save_csv
from singledir.models.api import save_trained
from singledir.pipeline.gpu_resources import granted_gpus
from singledir.pipeline.logs import log_to
from singledir.pipeline.params import training_run_options
from singledir.data.sources import load_data, load_labels
from singledir.pipeline.runtime import benchmark_to, pick_device, setup_torch
from singledir.stats.net_tables import failure_reason
from singledir.training.api import ImageFolderData, TensorData, train
from singledir.training.checkpoint import STOPPED_EXIT_CODE, TrainingInterrupted
from singledir.training.walltime import job_deadline
from singledir.training.options import RunOptions



def failure_warning(t) -> str:
    """'' for a net that trained, else one WARNING line naming it and why it failed."""
    h = t.history
    if h.empty:  # pretrained weights: no training to judge
        return ""
    when = f"epoch {int(h['epoch'].iloc[-1])}" if h["epoch"].notna().iloc[-1] else f"step {int(h['step'].iloc[-1])}"
    why = failure_reason(h["train_loss"].iloc[-1], h["train_accuracy"].iloc[-1], t.n_classes, when)
    return (f"WARNING: {t.spec['id']} failed to train: {why}. It counts as failed: the figures that compare nets "
            "leave it out and name it, and so do the claims (docs/troubleshooting.md)") if why else ""


sm = snakemake
specs = sm.params.specs
outputs = [[p] if isinstance(p, str) else list(p) for p in (sm.output.model, sm.output.history)]
run = RunOptions.from_mapping(training_run_options(sm.config, specs[0]["family"], specs[0]["experiment"]))
images = "index" in sm.input.keys()
with log_to(sm.log[0]), benchmark_to(sm.params.get("benchmark")):
    # Image decoding and DDP are not bitwise deterministic on a GPU; the in-memory loops are.
    # gpus: the job's gpu resource, or on several nodes its gres GPUs per node x nodes
    setup_torch(sm.threads, deterministic=not images, gpus=granted_gpus(sm.resources))
    if images:
        from singledir.data.imagenet import read_index  # pandas/PIL only for image families

        n_classes = int(read_index(sm.input.index)["target"].max()) + 1
        data = ImageFolderData(sm.input.index, sm.params.labels[0], sm.params.dataset["root"], sm.params.dataset,
                               n_classes)
    else:
        device = pick_device(run.device)
        base = load_data(sm.input.dataset, None, device)  # images once, shared by every member
        data = TensorData(base, [torch.as_tensor(load_labels(p), dtype=torch.long, device=device)
                                 for p in sm.params.labels])
    deadline = job_deadline()
    if deadline is not None:
        print(deadline.describe())
    try:
        trained = train(specs, data, sm.params.work_dir, run, log_path=sm.log[0] if images else None,
                        deadline=deadline)
    except TrainingInterrupted as stopped:  # a planned stop, not a crash: one line, no traceback
        print(f"{type(stopped).__name__}: {stopped}", flush=True)
        raise SystemExit(STOPPED_EXIT_CODE)
    for t, out_model, out_history in zip(trained, *outputs):
        save_trained(out_model, t.spec, t.in_shape, t.n_classes, t.state_dict, t.snapshots)
        save_csv(t.history, out_history)
        print(f"wrote {out_model} ({len(t.snapshots)} snapshots) and {out_history} ({len(t.history)} rows)")
        warning = failure_warning(t)
        if warning:  # in the job's log and on the console (log_to holds sys.stderr)
            print(warning)
            print(warning, file=sys.__stderr__, flush=True)
    # The resume state is no longer needed once the outputs exist.
    shutil.rmtree(sm.params.work_dir, ignore_errors=True)
