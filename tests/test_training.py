import os
import signal

import pytest
import torch

from singledir.data.sources import load_dataset, to_tensors
from singledir.models.nets import MLP
from singledir.training.single import TrainConfig, TrainingInterrupted, train


@pytest.fixture(scope="module")
def digits():
    return to_tensors(load_dataset({"source": "sklearn_digits", "test_fraction": 0.25}))


def _fresh(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    return MLP(64, [32, 32], 10, dropout=dropout)


CFG = dict(epochs=4, batch_size=64, optimizer="sgd", lr=0.05, seed=0, checkpoint_every=1, snapshot_epochs=[0, 2, 4])


def test_training_is_deterministic_and_learns(digits, tmp_path):
    m1, m2 = _fresh(), _fresh()
    h1, snaps = train(m1, digits, TrainConfig.from_dict(CFG), tmp_path / "a", log=lambda *_: None)
    h2, _ = train(m2, digits, TrainConfig.from_dict(CFG), tmp_path / "b", log=lambda *_: None)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert h1.equals(h2)
    assert list(h1.columns) == ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"]
    assert h1["epoch"].tolist() == [0, 1, 2, 3, 4]
    assert h1["test_accuracy"].iloc[-1] > 0.8
    assert sorted(snaps) == [0, 2, 4]
    assert torch.equal(snaps[4]["fc1.weight"], m1.state_dict()["fc1.weight"])


def test_sigterm_checkpoints_and_resume_equals_uninterrupted(digits, tmp_path):
    ref = _fresh()
    train(ref, digits, TrainConfig.from_dict(CFG), tmp_path / "ref", log=lambda *_: None)

    model = _fresh()
    calls = {"n": 0}

    def send_sigterm(mod, inp, out):
        calls["n"] += 1
        if calls["n"] == 40 and mod.training:  # mid-epoch, during a training step
            os.kill(os.getpid(), signal.SIGTERM)

    handle = model.fc1.register_forward_hook(send_sigterm)
    with pytest.raises(TrainingInterrupted, match="checkpoint written"):
        train(model, digits, TrainConfig.from_dict(CFG), tmp_path / "run", log=lambda *_: None)
    handle.remove()
    assert (tmp_path / "run" / "resume.pt").exists()

    resumed = _fresh(seed=123)  # different init: everything must come from the checkpoint
    hist, _ = train(resumed, digits, TrainConfig.from_dict(CFG), tmp_path / "run", log=lambda *_: None)
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert hist["epoch"].tolist() == [0, 1, 2, 3, 4]


def test_bad_training_config():
    with pytest.raises(ValueError, match="train.epochs must be at least 1"):
        TrainConfig.from_dict({"epochs": 0})
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        from singledir.training.single import make_optimizer
        make_optimizer([torch.nn.Parameter(torch.zeros(1))], TrainConfig.from_dict({"epochs": 1, "optimizer": "rmsprop"}))
