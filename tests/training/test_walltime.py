"""Training in pieces within a job's time budget (singledir.training.walltime) and stopping
safely with data-loader workers. The real-SLURM run of pieces is
tests/workflow/test_workflow_slurm.py::test_training_killed_at_its_time_limit_resumes_to_the_same_weights."""
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from conftest import write_image_folder
from singledir.data.imagenet import scan
from singledir.data.sources import load_dataset, to_tensors
from singledir.io import save_csv
from singledir.models.nets import MLP
from singledir.training import distributed, walltime
from singledir.training.checkpoint import STOPPED_EXIT_CODE, PieceDone, TrainingInterrupted
from singledir.training.core import TrainConfig, history_frame
from singledir.training.distributed import run_job, write_job
from singledir.training.loop import fit
from singledir.training.walltime import Deadline, job_deadline, slurm_deadline, stop_margin

QUIET = lambda *a: None  # noqa: E731


class StepClock:
    """A clock that advances one second each time it is read: the loops read the deadline
    once per step, so a budget of N seconds is N steps."""

    def __init__(self):
        self.now = 0

    def __call__(self):
        self.now += 1
        return self.now


def budget_of(steps: int) -> Deadline:
    """A deadline that passes on the ``steps``-th step of a piece (limit 100 s: margin 5 s)."""
    return Deadline(end=steps + stop_margin(100), limit_s=100, source="test job", clock=StepClock())


def test_stop_margin_and_the_slurm_job_end(monkeypatch):
    assert stop_margin(60) == 3 and stop_margin(24 * 3600) == 600  # 5 %, at most 10 min
    show = ("JobId=42 JobName=train JobState=RUNNING RunTime=00:00:07 TimeLimit=01:00:00 "
            "SubmitTime=2026-12-06T12:00:00 StartTime=2026-12-06T12:00:05 EndTime=2026-12-06T13:00:05 Partition=gpu")
    d = slurm_deadline("42", show_job=lambda jid: show)
    assert d.limit_s == 3600 and d.margin_s == 180 and d.source == "SLURM job 42"
    assert d.end - d.stop_at == 180
    assert "ends at 2026-12-06 13:00:05 (limit 60 min); training stops at 2026-12-06 12:57:05" in d.describe()
    assert Deadline.from_dict(d.as_dict()) == d
    unlimited = show.replace("TimeLimit=01:00:00", "TimeLimit=UNLIMITED").replace("EndTime=2026-12-06T13:00:05",
                                                                                  "EndTime=Unknown")
    assert slurm_deadline("42", show_job=lambda jid: unlimited) is None
    assert job_deadline(env={}) is None  # not a SLURM job: no budget, training runs to its end

    def no_scontrol(*args, **kwargs):
        raise FileNotFoundError("scontrol")

    monkeypatch.setattr(walltime.subprocess, "run", no_scontrol)
    logs = []
    assert job_deadline(env={"SLURM_JOB_ID": "42"}, log=logs.append) is None  # trains until SLURM's SIGTERM
    assert logs == ["WARNING: could not read the time limit of SLURM job 42 (scontrol); training runs until "
                    "SLURM's SIGTERM at the limit, then checkpoints (set KillWait >= 30 s)"]


@pytest.fixture(scope="module")
def digits():
    return to_tensors(load_dataset({"source": "sklearn_digits", "test_fraction": 0.25}))


def _cfg():
    return TrainConfig(epochs=6, batch_size=64, lr=0.05, seed=5, checkpoint_every=2, snapshot_epochs=[0, 3, 6])


def _mlp():
    torch.manual_seed(5)
    return MLP(64, [32, 32], 10, dropout=0.2)


def test_epoch_loop_stops_when_its_budget_runs_out_and_pieces_equal_an_uninterrupted_run(digits, tmp_path,
                                                                                          one_thread):
    ref = _mlp()
    ref_hist, ref_snaps = fit([ref], [digits], [_cfg()], tmp_path / "ref", log=QUIET)[0]
    steps_per_epoch = -(-len(digits.x_train) // 64)

    work, stops = tmp_path / "pieces", []
    for piece in range(2):  # two pieces of a budget of 1.5 epochs each, then the rest
        with pytest.raises(PieceDone) as stopped:
            fit([_mlp()], [digits], [_cfg()], work, log=QUIET, deadline=budget_of(3 * steps_per_epoch // 2))
        m = re.match(r"piece done: the time budget of test job is used up \(5 s before its end\) at epoch (\d+), "
                     r"step (\d+) of 6 epochs; checkpoint written to (\S+); the job exits with status 3", str(stopped.value))
        assert m, str(stopped.value)
        state = torch.load(m[3], weights_only=False)
        assert (state["epoch"], state["step"]) == (int(m[1]), int(m[2]))
        stops.append((state["epoch"], state["step"]))
    # A budget is steps of training (this one ends the second piece at an epoch's last step).
    budget = 3 * steps_per_epoch // 2
    assert [e * steps_per_epoch + s for e, s in stops] == [budget, 2 * budget]
    logs = []
    model = _mlp()
    hist, snaps = fit([model], [digits], [_cfg()], work, log=logs.append)[0]  # no budget: to the end
    assert logs[0] == f"resuming from {work / 'resume.pt'} at epoch {stops[1][0]}, step {stops[1][1]}"
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())
    assert hist.equals(ref_hist)
    assert sorted(snaps) == [0, 3, 6] and all(torch.equal(snaps[e][k], ref_snaps[e][k]) for e in snaps
                                               for k in snaps[e])


def _image_job(tmp_path, name, steps, num_workers=0):
    root = tmp_path / "imgs"
    if not root.exists():
        index, _ = scan(write_image_folder(root, classes=("a", "b", "c", "d"), n_train=8, n_val=2, size=18))
        save_csv(index, tmp_path / "index.csv.gz")
    train = dict(steps=steps, batch_size=4, workers=2, optimizer="sgd", lr=0.05, momentum=0.9, augment=True, seed=3,
                 checkpoint_every=5, log_every=2, lr_schedule="cosine", num_workers=num_workers)
    job = {"id": name, "model": {"arch": "torchvision", "name": "resnet18", "width": 0.0625}, "train": train,
           "dataset": {"source": "imagefolder", "image_size": 16, "resize_size": 16}, "root": str(root),
           "index": str(tmp_path / "index.csv.gz"), "labels": None, "work_dir": str(tmp_path / "work" / name),
           "device": "cpu", "threads": 1}
    return write_job(job, tmp_path / f"{name}.json")


def _final(tmp_path, name):
    return torch.load(tmp_path / "work" / name / "resume.pt", map_location="cpu", weights_only=False)


def _same_state(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_step_loop_with_loader_workers_stops_on_its_budget_and_pieces_equal_an_uninterrupted_run(tmp_path,
                                                                                                 monkeypatch):
    steps = 12
    run_job(_image_job(tmp_path, "ref", steps), log=QUIET)
    job = _image_job(tmp_path, "pieces", steps, num_workers=1)
    # What a job's JSON says about its deadline becomes a budget of 5 steps per piece.
    monkeypatch.setattr(distributed.Deadline, "from_dict", classmethod(lambda cls, values: budget_of(5)))
    for stop in (5, 10):
        with pytest.raises(PieceDone, match=rf"at step {stop} of {steps} steps; checkpoint written"):
            run_job(job, log=QUIET)
        assert _final(tmp_path, "pieces")["step"] == stop
    monkeypatch.undo()
    run_job(job, log=QUIET)
    final, ref = _final(tmp_path, "pieces"), _final(tmp_path, "ref")
    assert final["step"] == steps
    assert _same_state(final["model"], ref["model"])
    columns = ["step", "lr", "train_window_loss", "train_window_accuracy", "train_loss", "train_accuracy"]
    pd.testing.assert_frame_equal(history_frame(final["history"])[columns], history_frame(ref["history"])[columns])


def _session_alive(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[3]) == sid and stat[0] != "Z":  # fields after the name: state, ppid, pgrp, session
            alive.append(int(pid))
    return alive


@pytest.mark.slow  # three training processes, about 30 s
def test_sigterm_to_every_process_with_loader_workers_checkpoints_cleanly_and_resumes(tmp_path):
    """What SLURM does at a time limit or preemption: SIGTERM to every process of the job,
    the data-loader workers included. The workers ignore it; the main process finishes its
    step, writes the checkpoint and exits 3, with no worker error; nothing is left running;
    a rerun resumes and ends with the weights of an uninterrupted run."""
    steps = 40
    job = _image_job(tmp_path, "signalled", steps, num_workers=2)
    proc = subprocess.Popen([sys.executable, "-m", "singledir.training.distributed", str(job)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out = ""
    while not re.search(r"^step [46]/40 ", out, re.M):  # the loop and its workers run
        line = proc.stdout.readline()
        assert line, out
        out += line
    workers = [p for p in _session_alive(proc.pid) if p != proc.pid]
    assert len(workers) == 2, out  # the two loader workers
    os.killpg(proc.pid, signal.SIGTERM)
    out += proc.communicate(timeout=120)[0]
    assert proc.returncode == STOPPED_EXIT_CODE, out
    stopped = int(re.search(r"^signal 15 received at step (\d+); checkpoint written to \S+resume.pt$", out, re.M)[1])
    assert "DataLoader worker" not in out and "Traceback" not in out, out
    t0 = time.time()
    while _session_alive(proc.pid) and time.time() - t0 < 30:  # the workers go with the main process
        time.sleep(0.2)
    assert not _session_alive(proc.pid)
    assert _final(tmp_path, "signalled")["step"] == stopped < steps

    run_job(job, log=QUIET)  # resumes with workers; the reference runs without any
    run_job(_image_job(tmp_path, "ref", steps), log=QUIET)
    assert _same_state(_final(tmp_path, "signalled")["model"], _final(tmp_path, "ref")["model"])


def test_stop_messages_name_the_cause():
    from singledir.training.checkpoint import StopRequest, checkpoint_and_stop

    saved = []
    with pytest.raises(TrainingInterrupted, match="^a stop request \\(a signal or the time budget\\) of another "
                                                  "process of the group received at step 2;"):
        checkpoint_and_stop(lambda: saved.append(1), "resume.pt", "step 2", None)
    request = StopRequest(budget_of(1))
    assert request.requested  # the budget of one step is used up at the first check
    request.signum = signal.SIGTERM  # a signal says so even when the budget is used up too
    with pytest.raises(TrainingInterrupted, match="^signal 15 received at step 3;") as err:
        checkpoint_and_stop(lambda: saved.append(1), "resume.pt", "step 3", request)
    assert not isinstance(err.value, PieceDone) and saved == [1, 1]
