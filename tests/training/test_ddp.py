"""Step-based data-parallel training (singledir.training.distributed) on CPU processes with gloo."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from singledir.training.distributed import global_batch, launch, run_job, write_job
from singledir.data.imagenet import scan
from singledir.io import save_csv
from singledir.models.resnet import build_torchvision
from singledir.training.core import history_frame
from conftest import write_image_folder


def _job(tmp_path, name, **train):
    root = tmp_path / "imgs"
    if not root.exists():
        spec = write_image_folder(root, classes=("a", "b", "c", "d"), n_train=8, n_val=2, size=18)
        index, _ = scan(spec)
        save_csv(index, tmp_path / "index.csv.gz")
    base = dict(steps=4, batch_size=4, workers=2, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4,
                augment=True, seed=3, checkpoint_every=2, log_every=2, lr_schedule="cosine", warmup_steps=1)
    base.update(train)
    job = {"id": name, "model": {"arch": "torchvision", "name": "resnet18", "width": 0.0625},
           "train": base, "dataset": {"source": "imagefolder", "image_size": 16, "resize_size": 16},
           "root": str(root), "index": str(tmp_path / "index.csv.gz"), "labels": None,
           "work_dir": str(tmp_path / "work" / name), "device": "cpu", "threads": 1}
    return write_job(job, tmp_path / f"{name}.json")


def _final(tmp_path, name):
    return torch.load(tmp_path / "work" / name / "resume.pt", map_location="cpu", weights_only=False)


def _assert_same_state(a, b, atol=0.0):
    assert list(a) == list(b)
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k


def _results(history):
    """A step-based history as a frame without the wall-clock images_per_s (the one column
    that is no result)."""
    return history_frame(history).drop(columns="images_per_s")


def test_global_batches_cover_each_epoch_once():
    n, size = 30, 8
    batches = [global_batch(n, size, seed=1, step=t) for t in range(3)]  # 3 steps = one epoch (30 // 8)
    seen = np.concatenate(batches)
    assert len(set(seen)) == 24 and all(len(b) == size for b in batches)
    assert not np.array_equal(global_batch(n, size, 1, 3), batches[0])  # the next epoch reshuffles
    assert np.array_equal(global_batch(n, size, 1, 4), global_batch(n, size, 1, 4))
    with pytest.raises(ValueError, match="exceeds"):
        global_batch(4, 8, 0, 0)


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    """2 DDP processes x 1 worker shard per step == 1 process x 2 shards (gradient
    accumulation), with per-shard batch norm, seeded augmentation and an LR schedule."""
    launch(_job(tmp_path, "ddp"), nodes=1, procs_per_node=2, log_path=tmp_path / "ddp.log")
    run_job(_job(tmp_path, "single"), log=lambda *a: None)
    ddp, single = _final(tmp_path, "ddp"), _final(tmp_path, "single")
    assert ddp["step"] == single["step"] == 4
    assert "2 process(es) on cpu" in (tmp_path / "ddp.log").read_text()
    _assert_same_state(ddp["model"], single["model"], atol=1e-6)  # observed: bitwise equal
    assert [r["train_window_loss"] for r in ddp["history"]] == pytest.approx(
        [r["train_window_loss"] for r in single["history"]], rel=1e-6)
    # The final eval-mode training accuracy: each process evaluates every other image of
    # the fixed subset and one all-reduce sums them, as one process evaluating all of them.
    assert ddp["history"][-1]["train_accuracy"] == single["history"][-1]["train_accuracy"]
    assert ddp["history"][-1]["train_loss"] == pytest.approx(single["history"][-1]["train_loss"], rel=1e-6)
    torch.manual_seed(3)
    init = build_torchvision({"name": "resnet18", "width": 0.0625}, 4).state_dict()
    assert not torch.allclose(init["fc.weight"], single["model"]["fc.weight"])  # training moved the weights
    assert not torch.equal(init["bn1.running_mean"], single["model"]["bn1.running_mean"])


def _wait_for_checkpoint(path, proc, timeout=300):
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before a checkpoint: {proc.communicate()}")
        if time.time() - t0 > timeout:
            raise AssertionError("no checkpoint written")
        time.sleep(0.02)


@pytest.mark.slow
def test_resume_after_kill_and_sigusr1_equals_an_uninterrupted_run(tmp_path):
    steps = 30
    ref_job = _job(tmp_path, "reference", steps=steps, checkpoint_every=3)
    run_job(ref_job, log=lambda *a: None)
    job = _job(tmp_path, "interrupted", steps=steps, checkpoint_every=3)
    ckpt = tmp_path / "work" / "interrupted" / "resume.pt"
    cmd = [sys.executable, "-m", "singledir.training.distributed", str(job)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # 1. SIGKILL (no chance to save) after the first periodic checkpoint.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    _wait_for_checkpoint(ckpt, proc)
    proc.kill()
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < killed_at < steps
    # 2. A rerun resumes; SIGUSR1 (SLURM's warning before a time limit) makes it finish its
    #    step, checkpoint, and exit non-zero.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = ""
    while f"resuming from {ckpt} at step {killed_at}" not in out or not out.splitlines()[-1].startswith("step "):
        line = proc.stdout.readline()  # wait for a step logged after the resume: the loop runs
        assert line, f"no resume message: {out}"
        out += line
    proc.send_signal(signal.SIGUSR1)
    out += proc.communicate(timeout=300)[0]
    assert proc.returncode == 3, out
    stopped_at = int(re.search(r"signal 10 received at step (\d+); checkpoint written", out)[1])
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == stopped_at and killed_at < stopped_at <= steps
    # 3. The last rerun completes; every weight and buffer equals the uninterrupted run's.
    run_job(job, log=lambda *a: None)
    final, ref = _final(tmp_path, "interrupted"), _final(tmp_path, "reference")
    assert final["step"] == steps
    _assert_same_state(final["model"], ref["model"])
    pd.testing.assert_frame_equal(_results(final["history"]), _results(ref["history"]))


@pytest.mark.slow
def test_sigterm_reaches_torchrun_workers_and_a_smaller_world_resumes(tmp_path):
    """SIGTERM to the launcher: both DDP workers checkpoint before exiting. The checkpoint
    does not depend on the number of processes: one process finishes the run and matches
    an uninterrupted one-process run."""
    steps = 400
    # A constant learning rate: the resumed run below is shortened, and a cosine schedule
    # depends on the total number of steps.
    job = _job(tmp_path, "ddp", steps=steps, checkpoint_every=2, log_every=1, lr_schedule="constant")
    ckpt = tmp_path / "work" / "ddp" / "resume.pt"
    code = ("import sys; from singledir.training.distributed import launch; from singledir.training.checkpoint "
            "import TrainingInterrupted\ntry:\n    launch(sys.argv[1], 1, 2)\nexcept TrainingInterrupted as e:\n"
            "    print('INTERRUPTED', e); sys.exit(5)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(job)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for_checkpoint(ckpt, proc)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 5 and "INTERRUPTED distributed training stopped (signal 15)" in out, out
    stopped = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < stopped < steps
    # Finish on one process, then compare with an uninterrupted one-process run.
    short = dict(json.loads(job.read_text()))
    short["train"]["steps"] = stopped + 2
    job.write_text(json.dumps(short))
    run_job(job, log=lambda *a: None)
    ref_job = _job(tmp_path, "reference", steps=stopped + 2, checkpoint_every=2, log_every=1,
                   lr_schedule="constant")
    run_job(ref_job, log=lambda *a: None)
    _assert_same_state(_final(tmp_path, "ddp")["model"], _final(tmp_path, "reference")["model"], atol=1e-6)
