"""A NaN or inf training loss ends that network's training with a history row and a log
line, in single mode, in fused mode (only the diverged member ends; the others train on,
bitwise as if alone) and in the step-based loop; a rerun after divergence does not train
the diverged net again."""

import math

import pandas as pd
import pytest
import torch
from torch import nn

from singledir.data.sources import Tensors, load_dataset, to_tensors
from singledir.models.nets import MLP
from singledir.training.core import TrainConfig
from singledir.training.loop import fit, train_one


@pytest.fixture(scope="module")
def digits():
    return to_tensors(load_dataset({"source": "sklearn_digits", "test_fraction": 0.25}))


class InfLogits(nn.Module):
    """An MLP whose logits become inf from the second forward pass of epoch 2 on."""

    def __init__(self, calls_before_inf):
        super().__init__()
        torch.manual_seed(0)
        self.net = MLP(64, [16], 10)
        self.calls, self.limit = 0, calls_before_inf

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls > self.limit:
                return out * float("inf")
        return out


def _mlp(seed):
    torch.manual_seed(seed)
    return MLP(64, [32, 32], 10)


def test_single_mode_nan_loss_ends_training_with_a_history_row_and_a_log_line(digits, tmp_path):
    """lr 1e6 with SGD: the loss is NaN/inf within the first epoch; training stops after it
    (3 epochs asked for), the last history row holds the non-finite loss, the log says so,
    and every snapshot asked for exists."""
    cfg = TrainConfig(epochs=3, batch_size=64, lr=1e6, seed=0, snapshot_epochs=[0, 1, 3])
    lines = []
    history, snaps = train_one(_mlp(0), digits, cfg, tmp_path, log=lines.append)
    assert history["epoch"].tolist() == [0, 1]
    last = {c: history[c].iloc[-1] for c in history}
    assert not math.isfinite(last["train_loss"]) and math.isnan(last["train_accuracy"])
    assert math.isnan(last["test_accuracy"])
    assert int(last["step"]) == math.ceil(len(digits.x_train) / 64)
    diverged = [line for line in lines if line.startswith("DIVERGED")]
    assert len(diverged) == 1 and "in epoch 1" in diverged[0] and "lr 1e+06" in diverged[0]
    assert not any(line.startswith("epoch 2/") for line in lines)  # no further epoch ran
    assert sorted(snaps) == [0, 1, 3]


def test_a_model_returning_inf_ends_training_in_the_epoch_it_happens(digits, tmp_path):
    steps = math.ceil(len(digits.x_train) / 64)
    # every epoch a snapshot, so every epoch has a history row (rows come only at snapshots and the end)
    cfg = TrainConfig(epochs=4, batch_size=64, lr=0.05, seed=0, snapshot_epochs=[0, 1, 2, 3, 4])
    lines = []
    history, _ = train_one(InfLogits(steps + 1), digits, cfg, tmp_path, log=lines.append)
    assert history["epoch"].tolist() == [0, 1, 2]
    assert math.isfinite(history["train_loss"].iloc[1])
    assert history["train_loss"].iloc[-1] == float("inf") or math.isnan(history["train_loss"].iloc[-1])
    assert sum("DIVERGED" in line and "epoch 2" in line for line in lines) == 1


def test_rerun_after_divergence_does_not_train_again(digits, tmp_path):
    """The checkpoint written at divergence says so: a resume returns the same history
    without another step (a killed job must not train the NaN net on)."""
    cfg = TrainConfig(epochs=3, batch_size=64, lr=1e6, seed=0)
    first, _ = train_one(_mlp(0), digits, cfg, tmp_path, log=lambda *a: None)
    lines = []
    again, _ = train_one(_mlp(0), digits, cfg, tmp_path, log=lines.append)
    pd.testing.assert_frame_equal(first, again)
    assert any(line.startswith("resuming from") for line in lines)
    assert not any(line.startswith("epoch ") or "DIVERGED" in line for line in lines)


def test_fused_mode_ends_only_the_diverged_member_and_the_others_train_bitwise_as_alone(digits, tmp_path):
    """Three fused MLPs, the middle one at lr 1e6: it ends with its divergence row; the other
    two have the full history and exactly the weights and history of separate training
    (one thread: bitwise, tests/training/test_fused.py)."""
    cfgs = [TrainConfig(epochs=3, batch_size=64, lr=lr, seed=s, snapshot_epochs=[0, 2])
            for s, lr in ((0, 0.05), (1, 1e6), (2, 0.1))]
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models = [_mlp(c.seed) for c in cfgs]
        lines = []
        res = fit(models, [digits] * 3, cfgs, tmp_path / "fused", fused=True, log=lines.append)
        alone = {}
        for m in (0, 2):
            model = _mlp(cfgs[m].seed)
            hist, _ = train_one(model, digits, cfgs[m], tmp_path / f"alone{m}", log=lambda *a: None)
            alone[m] = (model, hist)
    finally:
        torch.set_num_threads(old)
    hist1 = res[1][0]
    assert hist1["epoch"].tolist() == [0, 1] and not math.isfinite(hist1["train_loss"].iloc[-1])
    assert sorted(res[1][1]) == [0, 2]  # its snapshots exist (its non-finite weights)
    diverged = [line for line in lines if "DIVERGED" in line]
    assert len(diverged) == 1 and diverged[0].startswith("DIVERGED: member 1 (seed 1, lr 1e+06")
    assert "the other members train on" in diverged[0]
    for m in (0, 2):
        model, hist = alone[m]
        pd.testing.assert_frame_equal(res[m][0], hist)
        for key, value in model.state_dict().items():
            assert torch.equal(models[m].state_dict()[key], value), (m, key)
    # the epoch log shows a member that still trains
    assert all("member 0:" in line for line in lines if line.startswith("epoch "))


def test_fused_group_whose_members_all_diverge_stops(digits, tmp_path):
    cfgs = [TrainConfig(epochs=5, batch_size=64, lr=1e6, seed=s, snapshot_epochs=[0]) for s in (0, 1)]
    res = fit([_mlp(0), _mlp(1)], [digits] * 2, cfgs, tmp_path, fused=True, log=lambda *a: None)
    for hist, _ in res:
        assert hist["epoch"].tolist() == [0, 1] and not math.isfinite(hist["train_loss"].iloc[-1])


def test_step_based_training_ends_at_a_non_finite_loss(tmp_path):
    """The distributed loop (one CPU process): lr 1e6 makes the loss non-finite; training
    ends at that step with a history row holding it, and the final checkpoint says so."""
    from torch.utils.data import Dataset

    from singledir.training.distributed import train_steps

    class Pairs(Dataset):  # what the loop's sampler asks for: (image index, augmentation seed)
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, item):
            return self.x[item[0]], self.y[item[0]]

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, 8, 8, generator=g)
    y = torch.randint(0, 4, (256,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, 4))
    cfg = TrainConfig(steps=50, batch_size=16, lr=1e6, seed=0, log_every=10)
    lines = []
    history = train_steps(model, Pairs(x, y), cfg, tmp_path, log=lines.append)
    last = {c: history[c].iloc[-1] for c in history}
    assert not math.isfinite(last["train_loss"])
    assert int(last["step"]) < 50
    assert sum("DIVERGED" in line for line in lines) == 1
    state = torch.load(tmp_path / "resume.pt", weights_only=False)
    assert state["diverged"] and state["step"] == int(last["step"])
    again = train_steps(model, Pairs(x, y), cfg, tmp_path, log=lambda *a: None)
    pd.testing.assert_frame_equal(history, again)
