"""Nothing lost: training killed from outside (SIGKILL, SIGTERM, Ctrl-C) resumes from its last
checkpoint and ends with the weights of an uninterrupted run; a workflow killed mid-DAG
leaves nothing Snakemake would accept, and a rerun (or a retry) completes it."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import write_yaml
from workflow_runs import snakemake, tiny_config

EPOCHS = 100
# Trains an MLP with dropout (so the global torch RNG matters too) on the digits in a
# separate process, as a Snakemake job would; saves the final weights to argv[2].
DRIVER = textwrap.dedent(f"""
    import sys
    import torch
    from singledir.data.sources import load_dataset, to_tensors
    from singledir.models.nets import MLP
    from singledir.pipeline.runtime import setup_torch
    from singledir.training.core import TrainConfig
    from singledir.training.loop import train_one as train
    setup_torch(1)
    data = to_tensors(load_dataset({{"source": "sklearn_digits", "test_fraction": 0.25}}))
    cfg = TrainConfig(epochs={EPOCHS}, batch_size=64, optimizer="sgd", lr=0.05, seed=7,
                      checkpoint_every=5, snapshot_epochs=[0, 50, {EPOCHS}])
    torch.manual_seed(cfg.seed)
    model = MLP(64, [64, 64], 10, dropout=0.2)
    history, snaps = train(model, data, cfg, sys.argv[1])
    torch.save({{"state": model.state_dict(), "history": history, "snaps": snaps}}, sys.argv[2])
""")


def _start(work_dir, out):
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(work_dir), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=300):
    t0 = time.monotonic()
    while not Path(path).exists():
        assert proc.poll() is None, f"process ended before {path} appeared:\n{proc.communicate()[1][-2000:]}"
        assert time.monotonic() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.02)


def _checkpoint_epoch(work_dir):
    return torch.load(Path(work_dir) / "resume.pt", weights_only=False)["epoch"]


def _assert_same_run(a, b):
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    assert a["history"].equals(b["history"])
    assert sorted(a["snaps"]) == sorted(b["snaps"]) == [0, 50, EPOCHS]
    for e in a["snaps"]:
        assert all(torch.equal(a["snaps"][e][k], b["snaps"][e][k]) for k in a["snaps"][e])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("uninterrupted")
    p = _start(d / "work", d / "out.pt")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return torch.load(d / "out.pt", weights_only=False)


def test_sigkill_then_rerun_resumes_to_the_same_weights(tmp_path, uninterrupted):
    work, out = tmp_path / "work", tmp_path / "out.pt"
    p = _start(work, out)
    _wait_for(work / "resume.pt", p)
    p.send_signal(signal.SIGKILL)  # no chance to clean up: a node crash, an OOM kill
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert not out.exists()
    killed_at = _checkpoint_epoch(work)
    assert 0 < killed_at < EPOCHS

    p = _start(work, out)
    stdout, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert f"resuming from {work / 'resume.pt'} at epoch {killed_at}, step 0" in stdout
    _assert_same_run(uninterrupted, torch.load(out, weights_only=False))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_checkpoints_exits_nonzero_and_resumes(tmp_path, uninterrupted, signum):
    """SIGTERM is what SLURM sends at the time limit; SIGINT is Ctrl-C, which loses no epochs either."""
    work, out = tmp_path / "work", tmp_path / "out.pt"
    p = _start(work, out)
    _wait_for(work / "resume.pt", p)
    p.send_signal(signum)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode != 0
    assert f"TrainingInterrupted: signal {int(signum)} received" in stderr
    state = torch.load(work / "resume.pt", weights_only=False)
    assert 0 < state["epoch"] < EPOCHS and state["step"] > 0  # written at the signal, mid-epoch
    assert not out.exists()

    p = _start(work, out)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    assert f"resuming from {work / 'resume.pt'} at epoch {state['epoch']}, step {state['step']}" in stdout
    _assert_same_run(uninterrupted, torch.load(out, weights_only=False))


# --- the workflow ------------------------------------------------------------------------

def _long_training_config(tmp_path):
    """One selectivity model that trains long enough to be killed mid-way."""
    cfg = tiny_config()
    exps = cfg["families"]["mnist"]["experiments"]
    for name, exp in exps.items():
        exp["enabled"] = name == "selectivity"
    exps["selectivity"]["train"] = {"epochs": 300, "checkpoint_every": 5}
    return write_yaml(cfg, tmp_path / "long.yaml")


MODEL = "results/models/mnist/selectivity_s0/model.pt"
LOG = "results/logs/train_model/mnist/selectivity_s0.log"


def _work_checkpoint(run):
    found = list((run / "results" / ".work" / "train" / "mnist" / "selectivity_s0").glob("*/resume.pt"))
    return found[0] if found else None


def _training_pids(run):
    """PIDs of this run's train_model job processes (Snakemake runs scripts from .snakemake/scripts)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(run) in cmd and ".train.py" in cmd and "snakemake " not in cmd.split("python")[0]:
                pids.append(int(d.name))
    return pids


@pytest.mark.slow
def test_workflow_killed_mid_training_leaves_nothing_and_rerun_completes(tmp_path):
    cfg = _long_training_config(tmp_path)
    run = tmp_path / "run"
    sm = snakemake(run, MODEL, configfile=cfg, start_new_session=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while _work_checkpoint(run) is None:
        assert sm.poll() is None, "snakemake ended before the first training checkpoint"
        assert time.monotonic() - t0 < 600
        time.sleep(0.05)
    os.killpg(sm.pid, signal.SIGKILL)  # the head job and its running job die at once
    sm.wait(timeout=60)
    for _ in range(100):  # every process of the group is gone
        try:
            os.killpg(sm.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("processes of the killed workflow survived")
    epoch = torch.load(_work_checkpoint(run), weights_only=False)["epoch"]
    assert 0 < epoch < 300
    # No partial output: neither the model nor the history exists; Snakemake plans the job.
    assert not (run / MODEL).exists()
    assert not (run / MODEL).with_name("history.csv").exists()
    plan = snakemake(run, "-n", MODEL, configfile=cfg)
    assert re.search(r"train_model\s+1", plan.stdout)

    snakemake(run, "--unlock", MODEL, configfile=cfg)  # a killed head job leaves its lock behind
    snakemake(run, MODEL, "--rerun-incomplete", configfile=cfg)
    log = (run / LOG).read_text()
    assert re.search(rf"resuming from \S+resume.pt at epoch {epoch}, step 0", log), log[-2000:]
    assert "epoch 300/300" in log
    assert not (run / "results" / ".work" / "train" / "mnist" / "selectivity_s0").exists() or \
        not any((run / "results" / ".work" / "train" / "mnist" / "selectivity_s0").rglob("resume.pt"))
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(run, "-n", MODEL, configfile=cfg))


@pytest.mark.slow
def test_sigterm_to_a_training_job_is_retried_and_resumes(tmp_path):
    """SLURM's SIGTERM at a time limit: the job checkpoints and fails; Snakemake's retry
    (retries in the profiles) resumes it, and the run succeeds."""
    cfg = _long_training_config(tmp_path)
    run = tmp_path / "run"
    sm = snakemake(run, MODEL, "--retries", "1", "--show-failed-logs", configfile=cfg, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while _work_checkpoint(run) is None or not _training_pids(run):
        assert sm.poll() is None, "snakemake ended before the first training checkpoint"
        assert time.monotonic() - t0 < 600
        time.sleep(0.05)
    for pid in _training_pids(run):
        os.kill(pid, signal.SIGTERM)
    out, _ = sm.communicate(timeout=900)
    assert sm.returncode == 0, out[-4000:]
    # The first attempt failed with the checkpoint message (its log, shown by
    # --show-failed-logs); the retry's log starts afresh and resumes mid-epoch.
    assert "Error in rule train_model" in out
    assert re.search(r"TrainingInterrupted: signal 15 received at epoch \d+, step \d+; checkpoint written", out)
    log = (run / LOG).read_text()
    m = re.search(r"resuming from \S+ at epoch (\d+), step (\d+)", log)
    assert m, log[-3000:]
    assert int(m.group(2)) > 0  # mid-epoch: only a signal writes such a checkpoint
    assert "epoch 300/300" in log
    assert (run / MODEL).exists()


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_a_corrupt_checkpoint_is_named_on_the_console(tmp_path):
    """Ctrl-C (the terminal's SIGINT to Snakemake and its local jobs) writes a checkpoint
    first, as SIGTERM does (before: none, so up to checkpoint_every epochs were lost). A rerun
    that finds that checkpoint corrupt says so on the console, not only in the job's log,
    and resumes from the one before it."""
    cfg = _long_training_config(tmp_path)
    run = tmp_path / "run"
    sm = snakemake(run, MODEL, configfile=cfg, start_new_session=True, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while _work_checkpoint(run) is None or not _training_pids(run):
        assert sm.poll() is None, "snakemake ended before the first training checkpoint"
        assert time.monotonic() - t0 < 600
        time.sleep(0.05)
    first = torch.load(_work_checkpoint(run), weights_only=False)["epoch"]
    os.killpg(sm.pid, signal.SIGINT)  # what Ctrl-C does: every process of the foreground group
    out, _ = sm.communicate(timeout=600)
    assert sm.returncode != 0
    log = (run / LOG).read_text()
    assert re.search(r"TrainingInterrupted: signal 2 received at epoch \d+, step \d+; checkpoint written", log), \
        log[-3000:]
    ckpt = _work_checkpoint(run)
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] > 0 and state["epoch"] >= first  # written at the signal, mid-epoch
    assert not (run / MODEL).exists()

    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # damaged since
    rerun = snakemake(run, MODEL, "--rerun-incomplete", configfile=cfg)
    console = rerun.stdout + rerun.stderr
    relative = ckpt.relative_to(run)
    assert f"WARNING: checkpoint {relative} does not load (" in console  # not only in the log
    assert f"moved it to {relative.parent.with_name(relative.parent.name + '.corrupt') / 'resume.pt'}" in console
    log = (run / LOG).read_text()
    assert f"resuming from {relative.with_name('resume.prev.pt')} at epoch" in log
    assert "epoch 300/300" in log and (run / MODEL).exists()
