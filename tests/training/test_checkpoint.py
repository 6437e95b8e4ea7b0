"""A resume checkpoint that does not load (truncated: a full disk, a copy cut short) is
reported with its path, set aside (moved, never deleted), and training resumes from the
previous checkpoint, or from scratch, ending with the weights of an uninterrupted run.
One protocol (singledir.training.checkpoint) serves the single, fused and distributed loops."""
import json
import os
import signal

import pytest
import torch

from singledir.training.checkpoint import (CheckpointError, TrainingInterrupted, catch_stop_signals,
                                           checkpoint_and_stop, ignore_ctrl_c, load_checkpoint, load_snapshot, previous_of,
                                           save_checkpoint)
from singledir.data.sources import load_dataset, to_tensors
import functools

from singledir.training.loop import fit

train_fused = functools.partial(fit, fused=True)
from singledir.models.nets import MLP
from singledir.training.core import TrainConfig
from singledir.training.loop import train_one as train


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data[: len(data) // 2]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_stop_signal_is_recorded_then_checkpointed_and_raised(tmp_path, signum):
    before = signal.getsignal(signum)
    with catch_stop_signals() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signum)  # recorded, not fatal
        assert stop.requested and stop.signum == signum
        saved = []
        with pytest.raises(TrainingInterrupted, match=rf"^signal {int(signum)} received at epoch 3, step 5; "
                                                      rf"checkpoint written to {tmp_path / 'resume.pt'}$"):
            checkpoint_and_stop(lambda: saved.append(1), tmp_path / "resume.pt", "epoch 3, step 5", stop.signum)
        assert saved == [1]  # the checkpoint is written before the exception
    assert signal.getsignal(signum) is before
    with pytest.raises(TrainingInterrupted, match="^a stop request \\(a signal or the time budget\\) of another process "
                                                  "of the group received at step 2;"):
        checkpoint_and_stop(lambda: None, tmp_path / "resume.pt", "step 2", None)


def test_ctrl_c_twice_stops_at_once():
    """The first Ctrl-C asks for a checkpoint; a second one (a loop that seems stuck) is the
    usual KeyboardInterrupt."""
    with catch_stop_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("ignore", [False, True], ids=["default", "ignore_ctrl_c"])
def test_loader_workers_survive_ctrl_c_so_the_step_can_finish(ignore):
    """Ctrl-C reaches the loader's worker processes too. Without ignore_ctrl_c (the
    distributed loop's worker_init_fn) a worker dies of it and the next fetch fails, before
    the training process could checkpoint."""
    from torch.utils.data import DataLoader

    loader = DataLoader(list(range(64)), batch_size=4, num_workers=1, timeout=60,
                        worker_init_fn=ignore_ctrl_c if ignore else None)
    batches = iter(loader)  # the workers start here, before the loop catches signals (as in train_steps)
    next(batches)
    worker = batches._workers[0]
    with catch_stop_signals() as stop:
        os.kill(worker.pid, signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the training process gets it too, and records it
        worker.join(timeout=5)
        if ignore:
            assert worker.is_alive() and stop.signum == signal.SIGINT
            assert next(batches).tolist() == [4, 5, 6, 7]
        else:
            assert not worker.is_alive()
            with pytest.raises(RuntimeError, match="exited unexpectedly|worker"):
                for _ in range(20):
                    next(batches)
        del batches


# A training job's output goes to its log (singledir.pipeline.logs.log_to); a checkpoint set
# aside must be seen on the console too (the process's stderr, what Snakemake shows).
CONSOLE_DRIVER = """
import sys
from singledir.pipeline.logs import log_to
from singledir.training.checkpoint import load_checkpoint
with log_to(sys.argv[2]):
    print(load_checkpoint(sys.argv[1]))
"""


def test_a_set_aside_checkpoint_is_reported_on_the_console_and_in_the_log(tmp_path):
    import subprocess
    import sys

    ckpt = tmp_path / "work" / "resume.pt"
    save_checkpoint({"epoch": 1}, ckpt)
    truncate(ckpt)
    log = tmp_path / "train.log"
    proc = subprocess.run([sys.executable, "-c", CONSOLE_DRIVER, str(ckpt), str(log)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    aside = tmp_path / "work.corrupt" / "resume.pt"
    for where in (proc.stderr, log.read_text()):
        assert f"WARNING: checkpoint {ckpt} does not load (" in where and f"moved it to {aside}" in where
        assert f"WARNING: no loadable checkpoint in {ckpt.parent}; training starts from scratch" in where
    assert proc.stdout == ""  # stdout is the log's


def test_previous_checkpoint_is_kept_and_taken_when_the_newest_does_not_load(tmp_path):
    ckpt = tmp_path / "work" / "resume.pt"
    save_checkpoint({"epoch": 1}, ckpt)
    assert not previous_of(ckpt).exists()
    save_checkpoint({"epoch": 2}, ckpt)
    assert previous_of(ckpt).name == "resume.prev.pt"
    assert torch.load(previous_of(ckpt), weights_only=False)["epoch"] == 1
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["resume.prev.pt", "resume.pt"]
    logs = []
    state, loaded = load_checkpoint(ckpt, required=["epoch"], log=logs.append)
    assert (state, loaded, logs) == ({"epoch": 2}, ckpt, [])

    bad = truncate(ckpt)
    state, loaded = load_checkpoint(ckpt, required=["epoch"], log=logs.append)
    assert state == {"epoch": 1} and loaded == previous_of(ckpt)
    aside = tmp_path / "work.corrupt" / "resume.pt"
    assert aside.read_bytes() == bad and not ckpt.exists()  # moved, not deleted
    assert logs == [f"WARNING: checkpoint {ckpt} does not load ({logs[0].split('(', 1)[1].split(')')[0]}); "
                    f"moved it to {aside}"]

    # Neither loads: both set aside (a second name in the same folder), start from scratch.
    save_checkpoint({"epoch": 3}, ckpt)
    truncate(ckpt)
    truncate(previous_of(ckpt))
    logs.clear()
    assert load_checkpoint(ckpt, log=logs.append) == (None, None)
    assert sorted(p.name for p in aside.parent.iterdir()) == ["resume.2.pt", "resume.prev.pt", "resume.pt"]
    assert logs[-1] == f"WARNING: no loadable checkpoint in {ckpt.parent}; training starts from scratch"
    assert list(ckpt.parent.iterdir()) == []

    # A file of another loop (a key missing) is not used either.
    save_checkpoint({"step": 5}, ckpt)
    assert load_checkpoint(ckpt, required=["epoch"], log=logs.append) == (None, None)
    assert "not a checkpoint of this training loop: no ['epoch']" in logs[-2]


def test_a_snapshot_that_does_not_load_says_how_to_recover(tmp_path):
    p = tmp_path / "snapshot_2.pt"
    save_checkpoint({"w": torch.ones(3)}, p)
    truncate(p)
    with pytest.raises(CheckpointError, match=rf"snapshot {p} does not load .*move {tmp_path} aside"):
        load_snapshot(p, tmp_path)


# --- the training loops ---------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return to_tensors(load_dataset({"source": "sklearn_digits", "test_fraction": 0.25}))


def _cfg(epochs, seed=7):
    # A constant learning rate: a run of 2 epochs continued to 4 is a run of 4 epochs.
    return TrainConfig(epochs=epochs, batch_size=64, lr=0.05, seed=seed, checkpoint_every=1, snapshot_epochs=[0, 2])


def _mlp(seed=7, dropout=0.2):
    torch.manual_seed(seed)  # as singledir.training.api.train: the seed fixes the initialization
    return MLP(64, [32, 32], 10, dropout=dropout)


def _same_weights(a, b):
    return all(torch.equal(v, b[k]) for k, v in a.items())


def _same_history(resumed, ref):
    """The resumed run's history holds the reference's rows exactly. The interrupted 2-epoch run
    also wrote the row at 90 % of *its* training (epoch 1, singledir.training.convergence), which a
    4-epoch run does not have; it is the only extra row."""
    extra = sorted(set(resumed["epoch"]) - set(ref["epoch"]))
    kept = resumed[resumed["epoch"].isin(ref["epoch"])].reset_index(drop=True)
    return extra in ([], [1]) and kept.equals(ref.reset_index(drop=True))


@pytest.mark.parametrize("also_previous", [False, True], ids=["previous", "scratch"])
def test_single_loop_recovers_from_a_truncated_checkpoint(digits, tmp_path, also_previous, one_thread):
    ref = _mlp()
    ref_hist, ref_snaps = train(ref, digits, _cfg(4), tmp_path / "ref", log=lambda *a: None)

    work = tmp_path / "run"
    train(_mlp(), digits, _cfg(2), work, log=lambda *a: None)  # stops after epoch 2: resume.pt = epoch 2
    truncate(work / "resume.pt")
    if also_previous:
        truncate(work / "resume.prev.pt")
    logs = []
    model = _mlp()
    hist, snaps = train(model, digits, _cfg(4), work, log=logs.append)
    assert logs[0].startswith(f"WARNING: checkpoint {work / 'resume.pt'} does not load (")
    assert logs[0].endswith(f"moved it to {tmp_path / 'run.corrupt' / 'resume.pt'}")
    if also_previous:
        assert f"WARNING: no loadable checkpoint in {work}; training starts from scratch" in logs
        assert not any(line.startswith("resuming") for line in logs)
    else:
        assert f"resuming from {work / 'resume.prev.pt'} at epoch 1, step 0" in logs
    assert _same_weights(ref.state_dict(), model.state_dict())
    assert _same_history(hist, ref_hist)
    assert sorted(snaps) == [0, 2] and all(_same_weights(ref_snaps[e], snaps[e]) for e in snaps)


def test_fused_loop_recovers_from_a_truncated_checkpoint(digits, tmp_path, one_thread):
    seeds, dropouts = (0, 1), (0.0, 0.2)

    def members(epochs):
        return [_mlp(s, p) for s, p in zip(seeds, dropouts)], [digits, digits], [_cfg(epochs, s) for s in seeds]

    ref, datas, cfgs = members(4)
    ref_res = train_fused(ref, datas, cfgs, tmp_path / "ref", log=lambda *a: None)
    work = tmp_path / "run"
    train_fused(*members(2), work, log=lambda *a: None)
    truncate(work / "resume.pt")
    logs = []
    models, datas, cfgs = members(4)
    res = train_fused(models, datas, cfgs, work, log=logs.append)
    assert logs[0].startswith(f"WARNING: checkpoint {work / 'resume.pt'} does not load (")
    assert f"resuming from {work / 'resume.prev.pt'} at epoch 1, step 0" in logs
    assert (tmp_path / "run.corrupt" / "resume.pt").exists()
    for a, b, (ha, _), (hb, _) in zip(ref, models, ref_res, res):
        assert _same_weights(a.state_dict(), b.state_dict())
        assert _same_history(hb, ha)


def _ddp_job(tmp_path, name, steps):
    from singledir.training.distributed import write_job
    from singledir.data.imagenet import scan
    from singledir.io import save_csv
    from conftest import write_image_folder

    root = tmp_path / "imgs"
    if not root.exists():
        index, _ = scan(write_image_folder(root, classes=("a", "b", "c", "d"), n_train=8, n_val=2, size=18))
        save_csv(index, tmp_path / "index.csv.gz")
    train = dict(steps=steps, batch_size=4, workers=2, optimizer="sgd", lr=0.05, momentum=0.9, augment=True, seed=3,
                 checkpoint_every=2, log_every=2, lr_schedule="constant", warmup_steps=0)
    job = {"id": name, "model": {"arch": "torchvision", "name": "resnet18", "width": 0.0625}, "train": train,
           "dataset": {"source": "imagefolder", "image_size": 16, "resize_size": 16}, "root": str(root),
           "index": str(tmp_path / "index.csv.gz"), "labels": None, "work_dir": str(tmp_path / "work" / name),
           "device": "cpu", "threads": 1}
    return write_job(job, tmp_path / f"{name}_{steps}.json")


def _final(tmp_path, name):
    return torch.load(tmp_path / "work" / name / "resume.pt", map_location="cpu", weights_only=False)


@pytest.mark.parametrize("procs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_distributed_loop_recovers_from_a_truncated_checkpoint(tmp_path, procs):
    from singledir.training.distributed import launch

    log = tmp_path / "run.log"
    launch(_ddp_job(tmp_path, "ref", 6), 1, procs, log_path=tmp_path / "ref.log", log=lambda *a: None)
    launch(_ddp_job(tmp_path, "run", 4), 1, procs, log_path=log, log=lambda *a: None)
    ckpt = tmp_path / "work" / "run" / "resume.pt"
    assert torch.load(ckpt, weights_only=False)["step"] == 4
    assert torch.load(previous_of(ckpt), weights_only=False)["step"] == 2
    truncate(ckpt)
    lines = []
    launch(_ddp_job(tmp_path, "run", 6), 1, procs, log_path=log, log=lines.append)
    text = "\n".join(lines) + (log.read_text() if log.exists() else "")
    assert f"WARNING: checkpoint {ckpt} does not load (" in text
    assert f"resuming from {previous_of(ckpt)} at step 2" in text
    assert (tmp_path / "work" / "run.corrupt" / "resume.pt").exists()
    final, ref = _final(tmp_path, "run"), _final(tmp_path, "ref")
    assert final["step"] == 6
    for k, v in ref["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(final["model"][k], v, atol=1e-6, rtol=0, msg=k)  # observed: bitwise equal
        else:
            assert torch.equal(final["model"][k], v), k
    assert [r["train_window_loss"] for r in final["history"]] == pytest.approx(
        [r["train_window_loss"] for r in ref["history"]], rel=1e-6)
    assert final["history"][-1]["train_accuracy"] == ref["history"][-1]["train_accuracy"]
