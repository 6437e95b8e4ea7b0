import math
import os
import signal
from pathlib import Path

import pytest
import torch

from conftest import REPO
from singledir.data.sources import load_dataset, to_tensors
from singledir.models.nets import MLP
from singledir.pipeline import config_check, plan
from singledir.training.checkpoint import TrainingInterrupted
from singledir.training.core import HISTORY_COLUMNS, TrainConfig, lr_at, make_optimizer
from singledir.training.loop import train_one as train


@pytest.fixture(scope="module")
def digits():
    return to_tensors(load_dataset({"source": "sklearn_digits", "test_fraction": 0.25}))


def _fresh(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    return MLP(64, [32, 32], 10, dropout=dropout)


CFG = dict(epochs=4, batch_size=64, optimizer="sgd", lr=0.05, seed=0, checkpoint_every=1, snapshot_epochs=[0, 2, 4])


def test_training_is_deterministic_and_learns(digits, tmp_path):
    m1, m2 = _fresh(), _fresh()
    h1, snaps = train(m1, digits, TrainConfig.from_spec(CFG), tmp_path / "a", log=lambda *_: None)
    h2, _ = train(m2, digits, TrainConfig.from_spec(CFG), tmp_path / "b", log=lambda *_: None)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert h1.equals(h2)
    assert list(h1.columns) == list(HISTORY_COLUMNS)  # the one schema of every mode
    # rows at the snapshot epochs, the final one and epoch 3 = floor(0.9 x 4) (the convergence gate's) only
    assert h1["epoch"].tolist() == [0, 2, 3, 4]
    steps = -(-len(digits.x_train) // CFG["batch_size"])
    assert h1["step"].tolist() == [e * steps for e in (0, 2, 3, 4)]
    assert h1["lr"].isna().tolist() == [True, False, False, False] and (h1["lr"][1:] == CFG["lr"]).all()
    assert h1[["train_top5", "images_per_s"]].isna().all().all()  # the step-based mode's columns
    assert h1["test_accuracy"].iloc[-1] > 0.8
    assert sorted(snaps) == [0, 2, 4]
    assert torch.equal(snaps[4]["fc1.weight"], m1.state_dict()["fc1.weight"])


def test_sigterm_checkpoints_and_resume_equals_uninterrupted(digits, tmp_path):
    ref = _fresh()
    train(ref, digits, TrainConfig.from_spec(CFG), tmp_path / "ref", log=lambda *_: None)

    model = _fresh()
    calls = {"n": 0}

    def send_sigterm(mod, inp, out):
        calls["n"] += 1
        if calls["n"] == 40 and mod.training:  # mid-epoch, during a training step
            os.kill(os.getpid(), signal.SIGTERM)

    handle = model.fc1.register_forward_hook(send_sigterm)
    with pytest.raises(TrainingInterrupted, match="checkpoint written"):
        train(model, digits, TrainConfig.from_spec(CFG), tmp_path / "run", log=lambda *_: None)
    handle.remove()
    assert (tmp_path / "run" / "resume.pt").exists()

    resumed = _fresh(seed=123)  # different init: everything must come from the checkpoint
    hist, _ = train(resumed, digits, TrainConfig.from_spec(CFG), tmp_path / "run", log=lambda *_: None)
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert hist["epoch"].tolist() == [0, 2, 3, 4]


@pytest.mark.parametrize("snapshots, rows", [([], [3, 4]), ([1, 3], [1, 3, 4]), ([0, 1], [0, 1, 3, 4]),
                                             ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])])
def test_history_rows_only_at_snapshot_and_final_epochs_with_the_same_weights(digits, tmp_path, snapshots, rows):
    """The loop evaluates (both sets, one history row) at the snapshot epochs, the final
    epoch and the convergence gate's reference epoch (floor(0.9 x 4) = 3) only. Evaluation
    draws no random numbers: with dropout (which does) the weights equal those of a run
    evaluated after every epoch, and the rows both have are equal."""
    def run(snaps, where):
        torch.manual_seed(0)
        model = MLP(64, [32], 10, dropout=0.3)
        cfg = TrainConfig.from_spec(dict(CFG, snapshot_epochs=snaps))
        return model, train(model, digits, cfg, tmp_path / where, log=lambda *_: None)[0]

    model, hist = run(snapshots, "sparse")
    every, hist_every = run([0, 1, 2, 3, 4], "every")
    assert hist["epoch"].tolist() == rows
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), every.state_dict().values()))
    assert hist.reset_index(drop=True).equals(hist_every[hist_every["epoch"].isin(rows)].reset_index(drop=True))


def test_bad_training_config():
    with pytest.raises(ValueError, match="train.epochs must be at least 1"):
        TrainConfig.from_spec({"epochs": 0})
    with pytest.raises(ValueError, match="train.steps must be at least 1"):
        TrainConfig.from_spec({"steps": 0})
    with pytest.raises(ValueError, match="train.optimizer: unknown optimizer 'rmsprop'; choose 'sgd' or 'adam'"):
        TrainConfig.from_spec({"epochs": 1, "optimizer": "rmsprop"})
    with pytest.raises(ValueError, match="train.lr_schedule: unknown lr schedule 'step'"):
        TrainConfig.from_spec({"epochs": 1, "lr_schedule": "step"})
    with pytest.raises(ValueError, match="train.amp: unknown amp 'fp8'"):
        TrainConfig.from_spec({"steps": 1, "amp": "fp8"})
    with pytest.raises(ValueError, match="set exactly one of train.epochs .* and train.steps"):
        TrainConfig.from_spec({"epochs": 1, "steps": 1})
    with pytest.raises(ValueError, match="set exactly one of train.epochs"):
        TrainConfig.from_spec({"lr": 0.1})
    with pytest.raises(ValueError, match="epoch-based training has no warmup: remove train.warmup_steps"):
        TrainConfig.from_spec({"epochs": 3, "warmup_steps": 2})
    with pytest.raises(ValueError, match="trains for train.epochs, but this config sets train.steps"):
        train(_fresh(), None, TrainConfig.from_spec({"steps": 3}), "unused")


def test_config_keeps_the_loops_defaults_and_drops_workflow_keys():
    epochs = TrainConfig.from_spec({"epochs": 2, "nodes": 1, "threads": 4, "snapshot_every": 1})
    steps = TrainConfig.from_spec({"steps": 5000, "gpus_per_node": 0})
    assert (epochs.unit, epochs.length, epochs.checkpoint_every) == ("epoch", 2, 1)
    assert (steps.unit, steps.length, steps.checkpoint_every) == ("step", 5000, 1000)
    assert [d for d in range(1, 5001) if steps.checkpoint_due(d)] == [1000, 2000, 3000, 4000, 5000]
    assert [d for d in range(1, 8) if TrainConfig(epochs=7, checkpoint_every=3).checkpoint_due(d)] == [3, 6, 7]
    assert TrainConfig(steps=1, workers=4, batch_size=32).global_batch == 128


def _former_epoch_lr(cfg, epoch):  # singledir.training.single.lr_at before the training core
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / cfg.epochs))


def _former_step_lr(cfg, step):  # singledir.training.distributed.lr_at before the training core
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * t))
    return cfg.lr


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml"])
def test_one_lr_schedule_gives_the_former_loops_values_on_the_shipped_configs(name):
    config = config_check.load_config([REPO / "config" / name]).config
    sections = {repr(sorted(spec["train"].items())): spec["train"]
                for family in plan.enabled_families(config) for spec in plan.model_specs(config, family).values()}
    shipped = [TrainConfig.from_spec(t) for t in sections.values()]
    assert {c.unit for c in shipped} == {"epoch", "step"}
    for cfg in shipped:  # bitwise: the shipped configs train exactly as before
        former = _former_epoch_lr if cfg.unit == "epoch" else _former_step_lr
        ts = range(cfg.length) if cfg.length <= 10_000 else [*range(10_000), *range(cfg.length - 10_000, cfg.length)]
        assert [lr_at(cfg, t) for t in ts] == [former(cfg, t) for t in ts], cfg
    if name == "config.yaml":  # the paper's ImageNet schedule: warmup, then cosine
        assert ("step", "cosine") in {(c.unit, c.lr_schedule) for c in shipped if c.warmup_steps > 0}
    # No shipped epoch-based config decays: the one formula computes the cosine's angle as
    # pi * (t / length), the step loop's order, where the epoch loop had (pi * t) / length:
    # the same up to rounding (1e-14 of the base rate).
    cosine = TrainConfig(epochs=30, lr=0.1, lr_schedule="cosine")
    assert [lr_at(cosine, t) for t in range(30)] == pytest.approx([_former_epoch_lr(cosine, t) for t in range(30)],
                                                                 rel=0, abs=1e-14 * cosine.lr)
    assert lr_at(TrainConfig(epochs=4, lr=1.0, lr_schedule="cosine"), 2) == pytest.approx(0.5)
    assert lr_at(TrainConfig(steps=10, lr=1.0, warmup_steps=4), 1) == pytest.approx(0.5)


def test_make_optimizer_builds_the_configured_torch_optimizer():
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer(params, TrainConfig(epochs=1, lr=0.3, momentum=0.8, weight_decay=1e-3))
    adam = make_optimizer(params, TrainConfig(epochs=1, optimizer="adam", lr=0.02))
    assert isinstance(sgd, torch.optim.SGD) and isinstance(adam, torch.optim.Adam)
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (0.3, 0.8, 1e-3)
    assert adam.defaults["betas"] == torch.optim.Adam(params).defaults["betas"]


def test_training_modules_import_no_private_names_of_other_modules():
    """The loops share the core and the checkpoint module through public names only."""
    import ast

    from singledir import training

    for path in sorted(Path(training.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("singledir"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
