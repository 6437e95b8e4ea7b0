"""Fused training equals separate training: bitwise for MLPs with one thread, within float
rounding for MLPs with several threads and for ConvNets (grouped convolutions); resume
after SIGTERM; the Snakemake rules. (Which models train together: tests/pipeline/test_groups.py.)"""

import contextlib
import os
import signal

import pytest
import torch
import torch.nn.functional as F

from singledir.data.sources import Tensors, load_dataset, to_tensors
import functools

from singledir.training import fusion_choice as fused_mod
from singledir.training.api import train_members as train_group
from singledir.training.fused import FusedNet, MemberRNG
from singledir.training.fusion_choice import fusion_trial
from singledir.training.loop import fit

train_fused = functools.partial(fit, fused=True)
from singledir.models.nets import MLP, ConvNet
from singledir.training.checkpoint import TrainingInterrupted
from singledir.training.core import TrainConfig
from singledir.training.loop import train_one as train

from conftest import run_snakemake, tiny_mnist_config, write_yaml

QUIET = lambda *a, **k: None  # noqa: E731


@pytest.fixture(scope="module")
def digits():
    return to_tensors(load_dataset({"source": "sklearn_digits", "test_fraction": 0.25}))


@contextlib.contextmanager
def threads(n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _members(digits, optimizer="sgd", epochs=3):
    """Three MLPs that differ in seed, lr, dropout and labels (one with shuffled labels)."""
    g = torch.Generator().manual_seed(0)
    shuffled = digits.y_train[torch.randperm(len(digits.y_train), generator=g)]
    datas = [digits, digits, Tensors(digits.x_train, shuffled, digits.x_test, digits.y_test, 10)]
    lrs = [0.05, 0.1, 0.05] if optimizer == "sgd" else [0.003, 0.001, 0.003]
    cfgs = [TrainConfig(epochs=epochs, batch_size=64, optimizer=optimizer, lr=lr, seed=s, weight_decay=wd,
                        snapshot_epochs=[0, 2]) for s, lr, wd in zip((0, 1, 7), lrs, (0.0, 1e-4, 0.0))]
    dropouts = [0.0, 0.1, 0.3]

    def build(i):
        torch.manual_seed(cfgs[i].seed)
        return MLP(64, [32, 32], 10, dropout=dropouts[i])
    return datas, cfgs, build


def _separate_and_fused(datas, cfgs, build, tmp_path):
    sep = []
    for i in range(len(cfgs)):
        m = build(i)
        hist, snaps = train(m, datas[i], cfgs[i], tmp_path / f"sep{i}", log=QUIET)
        sep.append((m, hist, snaps))
    fused_models = [build(i) for i in range(len(cfgs))]
    res = train_fused(fused_models, datas, cfgs, tmp_path / "fused", log=QUIET)
    return sep, fused_models, res


def _jittered(model, eps=1e-7):
    """``model`` with every weight moved by one part in 1/eps: a rounding-sized change."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + eps)
    return model


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fused_mlps_equal_separately_trained_ones_bitwise(digits, tmp_path, optimizer):
    """The K fused MLPs are exactly the K separately trained ones: init, data order,
    labels, dropout masks, lr, weight decay, the optimizer arithmetic and each member's
    matrix products are its own (one intra-op thread, as the workflow's training jobs)."""
    datas, cfgs, build = _members(digits, optimizer, epochs=3 if optimizer == "sgd" else 2)
    with threads(1):
        sep, fused_models, res = _separate_and_fused(datas, cfgs, build, tmp_path)
    for (m, hist, snaps), fm, (fhist, fsnaps) in zip(sep, fused_models, res):
        for k, v in m.state_dict().items():
            assert torch.equal(v, fm.state_dict()[k]), k
        assert fhist.equals(hist)
        assert sorted(fsnaps) == sorted(snaps) == [e for e in (0, 2) if e <= cfgs[0].epochs]
        assert all(torch.equal(snaps[e][k], fsnaps[e][k]) for e in snaps for k in snaps[e])
    assert res[0][0]["test_accuracy"].iloc[-1] > 0.6  # they really train
    assert res[2][0]["test_accuracy"].iloc[-1] < 0.4  # the shuffled-label member learns no rule


def test_fused_mlps_with_two_threads_agree_within_rounding(digits, tmp_path):
    """With several intra-op threads MKL may split a separate model's small matrix
    product across threads (another summation order) while the batched product gives
    each member one thread, so bitwise equality is impossible; the difference is float
    rounding, bounded as for ConvNets by separate training's own sensitivity to moving
    its initial weights by one part in 10^7."""
    datas, cfgs, build = _members(digits, "adam", epochs=1)
    with threads(2):
        sep, fused_models, res = _separate_and_fused(datas, cfgs, build, tmp_path)
        for i, ((m, hist, _), fm, (fhist, _)) in enumerate(zip(sep, fused_models, res)):
            jittered = _jittered(build(i))
            train(jittered, datas[i], cfgs[i], tmp_path / f"jitter{i}", log=QUIET)
            sensitivity = _max_diff(m.state_dict(), jittered.state_dict())
            assert _max_diff(m.state_dict(), fm.state_dict()) <= 10 * sensitivity + 1e-6
            assert (fhist - hist).abs().max().max() < 1e-3


def test_fused_convnets_agree_within_rounding(digits, tmp_path):
    """Where kernels differ, exact equality is impossible, and the difference is float
    rounding: a grouped convolution (K models as groups, so batch-norm statistics stay
    per model) adds in another order than K separate convolutions. Training amplifies
    any rounding-sized change (chaotically at large learning rates), so the bound is
    relative: fused and separate training differ no more than separate training differs
    from itself when its initial weights move by one part in 10^7."""
    # ConvNets on 3-channel 8x8 digits, with batch norm.
    x3 = Tensors(digits.x_train[:640].repeat(1, 3, 1, 1), digits.y_train[:640],
                 digits.x_test[:200].repeat(1, 3, 1, 1), digits.y_test[:200], 10)
    cfgs = [TrainConfig(epochs=1, batch_size=64, optimizer="sgd", lr=lr, seed=s, snapshot_epochs=[0])  # row 0: "it trains"
            for s, lr in ((0, 0.05), (3, 0.1))]

    def build_conv(i):
        torch.manual_seed(cfgs[i].seed)
        return ConvNet(3, 10, width=1.0, batch_norm=True, channels=(4, 8, 8), strides=(1, 2, 1))
    # The source of the difference: one grouped convolution vs per-model convolutions.
    convs = [build_conv(i) for i in range(2)]
    net = FusedNet(convs, MemberRNG([0, 3], torch.device("cpu"))).eval()
    xb = x3.x_train[:32]
    fused_out = net(torch.stack([xb, xb]))
    for i, c in enumerate(convs):
        assert (fused_out[i] - c.eval()(xb)).abs().max() < 1e-5
    sep, fused_models, res = _separate_and_fused([x3, x3], cfgs, build_conv, tmp_path / "conv")
    for i, ((m, hist, _), fm, (fhist, _)) in enumerate(zip(sep, fused_models, res)):
        jittered = _jittered(build_conv(i))
        train(jittered, x3, cfgs[i], tmp_path / f"jitter{i}", log=QUIET)
        sensitivity = _max_diff(m.state_dict(), jittered.state_dict())
        assert _max_diff(m.state_dict(), fm.state_dict()) <= 10 * sensitivity + 1e-6
        assert (fhist - hist).abs().max().max() < 1e-3
        assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]  # it trains


def test_fused_resume_after_sigterm_equals_uninterrupted(digits, tmp_path):
    datas, cfgs, build = _members(digits, "sgd", epochs=2)
    ref = [build(i) for i in range(3)]
    ref_res = train_fused(ref, datas, cfgs, tmp_path / "ref", log=QUIET)

    calls = {"n": 0}

    def send_sigterm(mod, inp, out):
        if mod.training and type(mod).__name__ == "_FusedLinear":
            calls["n"] += 1
            if calls["n"] == 40:  # 3 fused Linear calls per step: mid-epoch, during a step
                os.kill(os.getpid(), signal.SIGTERM)

    handle = torch.nn.modules.module.register_module_forward_hook(send_sigterm)
    try:
        with pytest.raises(TrainingInterrupted, match="checkpoint written"):
            train_fused([build(i) for i in range(3)], datas, cfgs, tmp_path / "run", log=QUIET)
    finally:
        handle.remove()
    assert (tmp_path / "run" / "resume.pt").exists()
    torch.manual_seed(123)
    fresh = [MLP(64, [32, 32], 10, dropout=p) for p in (0.0, 0.1, 0.3)]  # everything must come from the checkpoint
    res = train_fused(fresh, datas, cfgs, tmp_path / "run", log=QUIET)
    for a, b, (ha, _), (hb, _) in zip(ref, fresh, ref_res, res):
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
        assert ha.equals(hb)
    with pytest.raises(ValueError, match="seeds"):
        cfgs2 = [TrainConfig(**{**c.__dict__, "seed": c.seed + 100}) for c in cfgs]
        train_fused([build(i) for i in range(3)], datas, cfgs2, tmp_path / "run", log=QUIET)


def test_fused_rejects_unfusable_groups(digits, tmp_path):
    datas, cfgs, build = _members(digits)
    cfgs[1] = TrainConfig(**{**cfgs[1].__dict__, "batch_size": 32})
    with pytest.raises(ValueError, match="train.batch_size differs"):
        train_fused([build(i) for i in range(3)], datas, cfgs, tmp_path, log=QUIET)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="same architecture"):
        FusedNet([MLP(64, [32, 32], 10), MLP(64, [16, 32], 10)], MemberRNG([0, 1], torch.device("cpu")))


@pytest.mark.slow
def test_workflow_trains_fused_groups_into_the_usual_files(tmp_path):
    """With `fuse`, one job trains a group; each member's model.pt and history.csv are
    the files train_model writes, bitwise (one thread per job)."""
    cfg = tiny_mnist_config(tmp_path, corruption={})
    cfg["families"]["mnist"]["train"]["epochs"] = 2
    cfg["families"]["mnist"]["experiments"]["corruption"]["grid"] = {"fraction": [0.0, 0.5, 1.0], "seed": [0]}
    plain = write_yaml(cfg, tmp_path / "plain.yaml")
    cfg["families"]["mnist"]["experiments"]["corruption"]["fuse"] = 2  # groups: [f0.0, f0.5], [f1.0] alone
    fused_cfg = write_yaml(cfg, tmp_path / "fused.yaml")
    targets = [f"results/models/mnist/corruption_f{f}_s0/model.pt" for f in ("0.0", "0.5", "1.0")]
    run_snakemake(tmp_path / "fused", *targets, configfile=fused_cfg)
    logs = tmp_path / "fused/results/logs"
    assert "fusion decision for 2 models" in (logs / "train_group/mnist/corruption_g0.log").read_text()
    assert sorted(p.name for p in (logs / "train_model/mnist").iterdir()) == ["corruption_f1.0_s0.log"]
    member = "results/models/mnist/corruption_f0.5_s0"
    run_snakemake(tmp_path / "plain", f"{member}/model.pt", configfile=plain)
    a, b = tmp_path / "fused" / member, tmp_path / "plain" / member
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
    sa, sb = torch.load(a / "model.pt", weights_only=False), torch.load(b / "model.pt", weights_only=False)
    assert sorted(sa) == sorted(sb) and sa["spec"] == sb["spec"]
    assert all(torch.equal(v, sb["state_dict"][k]) for k, v in sa["state_dict"].items())


def test_fusion_trial_decides_by_measured_time_and_touches_nothing(digits, monkeypatch):
    datas, cfgs, build = _members(digits)
    models = [build(i) for i in range(3)]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    rng = torch.get_rng_state()
    res = fusion_trial(models, datas, cfgs, steps=2)
    assert res["single_step_s"] > 0 and res["fused_step_s"] > 0 and res["k"] == 3
    assert res["fuse"] == (res["speedup"] >= fused_mod.FUSE_MARGIN)
    assert torch.equal(torch.get_rng_state(), rng)  # the trial leaves the RNG where it was
    assert all(_max_diff(b, m.state_dict()) == 0 for b, m in zip(before, models))
    # The decision follows the timings: K separate steps of 1 ms against a fused step of t.
    for t_fused, expected in ((1e-3, True), (3e-3 / fused_mod.FUSE_MARGIN, True), (2.9e-3, False), (5e-3, False)):
        monkeypatch.setattr(fused_mod, "_time_steps", lambda fns, rounds, device, t=t_fused: [1e-3, t])
        res = fusion_trial(models, datas, cfgs, steps=2)
        assert res["fuse"] is expected and res["speedup"] == pytest.approx(3e-3 / t_fused)
        assert ("at least" if expected else "less than") in res["reason"]


@pytest.mark.parametrize("fuse", [True, False])
def test_train_group_either_way_equals_separate_training_and_keeps_its_choice(digits, tmp_path, fuse):
    """Fused or one at a time, each member is bitwise the separately trained model (one
    thread); the decision is written once and a rerun in the same work dir keeps it."""
    datas, cfgs, build = _members(digits, epochs=2)
    with threads(1):
        sep = []
        for i in range(3):
            m = build(i)
            sep.append((m, *train(m, datas[i], cfgs[i], tmp_path / f"sep{i}", log=QUIET)))
        models = [build(i) for i in range(3)]
        lines = []
        res, decision = train_group(models, datas, cfgs, tmp_path / "group", fuse=fuse, log=lines.append)
    assert decision["fuse"] is fuse and "fusion decision for 3 models" in lines[0]
    assert ("fused" if fuse else "one at a time") in lines[0]
    for (m_sep, h_sep, s_sep), m, (h, s) in zip(sep, models, res):
        assert _max_diff(m_sep.state_dict(), m.state_dict()) == 0
        assert h.equals(h_sep) and sorted(s) == sorted(s_sep) == [0, 2]
    again = [build(i) for i in range(3)]
    _, decision2 = train_group(again, datas, cfgs, tmp_path / "group", fuse=not fuse, log=QUIET)
    assert decision2["fuse"] is fuse and decision2["resumed"]


def test_auto_never_times_a_group_whose_fused_weights_differ(digits, tmp_path, monkeypatch):
    """ConvNets (grouped convolutions) and MLPs with several threads fuse only to float
    rounding: with fuse="auto" the cost model decides from shapes (no timing trial), so
    the weights never depend on the load; a ConvNet step above the cost model's FLOP
    limit trains one at a time, bitwise as train_model would."""
    from singledir.training.fusion_choice import fused_is_bitwise

    def no_trial(*a, **k):
        raise AssertionError("a timing trial ran for a group whose fused weights differ")

    datas, cfgs, build = _members(digits, epochs=1)
    x3 = Tensors(digits.x_train[:128].repeat(1, 3, 1, 1), digits.y_train[:128],
                 digits.x_test[:64].repeat(1, 3, 1, 1), digits.y_test[:64], 10)
    conv_cfgs = [TrainConfig(epochs=1, batch_size=64, optimizer="sgd", lr=0.05, seed=s) for s in (0, 3)]

    def build_conv(i):
        torch.manual_seed(conv_cfgs[i].seed)
        return ConvNet(3, 10, width=1.0, batch_norm=True, channels=(4, 8, 8), strides=(1, 2, 1))
    monkeypatch.setattr(fused_mod, "fusion_trial", no_trial)
    with threads(1):
        assert fused_is_bitwise([build(i) for i in range(2)], datas[:2])  # MLPs, CPU, one thread
        convs = [build_conv(i) for i in range(2)]
        assert not fused_is_bitwise(convs, [x3, x3])
        lines = []
        _, decision = train_group(convs, [x3, x3], conv_cfgs, tmp_path / "conv", log=lines.append)
        assert decision["fuse"] is True and decision["rule"] == "cost model"
        assert "cost model" in lines[0] and "GFLOP" in lines[0]
        assert decision["member_step_flops"] == fused_mod.member_step_flops(convs[0], x3, 64)
        # the same group with a step above the limit: one at a time, the very models train() makes
        monkeypatch.setattr(fused_mod, "CONV_CPU_FUSE_MAX_STEP_FLOPS", decision["member_step_flops"] / 2)
        convs = [build_conv(i) for i in range(2)]
        res, decision = train_group(convs, [x3, x3], conv_cfgs, tmp_path / "conv_big", log=QUIET)
        assert decision["fuse"] is False and "more than" in decision["reason"]
        for i, (m, (hist, _)) in enumerate(zip(convs, res)):
            alone = build_conv(i)
            alone_hist, _ = train(alone, x3, conv_cfgs[i], tmp_path / f"alone{i}", log=QUIET)
            assert _max_diff(alone.state_dict(), m.state_dict()) == 0 and hist.equals(alone_hist)
    with threads(2):
        mlps = [build(i) for i in range(2)]
        assert not fused_is_bitwise(mlps, datas[:2])
        _, decision = train_group(mlps, datas[:2], cfgs[:2], tmp_path / "mlp2", log=QUIET)
        assert decision["fuse"] is True and decision["rule"] == "cost model" and "2 threads" in decision["reason"]


def test_member_step_flops_counts_three_forward_passes():
    """The cost model's work measure: forward FLOPs of one example x batch x 3, within the
    exact count of a training step (which skips the first layer's input gradient)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = ConvNet(3, 10, width=1.0, batch_norm=True, channels=(4, 8, 8), strides=(1, 2, 1))
    data = Tensors(torch.randn(40, 3, 8, 8), torch.randint(0, 10, (40,)), torch.randn(4, 3, 8, 8),
                   torch.randint(0, 10, (4,)), 10)
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        model.eval()(data.x_train[:1])
    assert fused_mod.member_step_flops(model, data, 32) == 3 * 32 * fwd.get_total_flops()
    with FlopCounterMode(display=False) as step:
        F.cross_entropy(model.train()(data.x_train[:32]), data.y_train[:32]).backward()
    assert step.get_total_flops() <= fused_mod.member_step_flops(model, data, 32) <= 1.5 * step.get_total_flops()


def test_fused_evaluation_of_a_shared_batch_is_each_members_own_forward(digits):
    """Evaluating one batch for all members (each member's stages with its own weights on
    the shared batch) gives, bitwise with one thread, each separate model's logits,
    dropout members included (the identity in evaluation)."""
    _, _, build = _members(digits)
    models = [build(i).eval() for i in range(3)]
    net = FusedNet([build(i) for i in range(3)], MemberRNG([0, 1, 7], torch.device("cpu"))).eval()
    x = digits.x_test[:200]
    with threads(1), torch.no_grad():
        got = net(x, shared=True)
        stacked = net(x.unsqueeze(0).expand(3, *x.shape).contiguous())
        want = torch.stack([m(x) for m in models])
    assert got.shape == (3, 200, 10)
    assert torch.equal(got, want)
    assert (got - stacked).abs().max().item() < 1e-5  # the batched layout: same numbers to rounding
    dropout_stages = [n for n, _ in models[2].named_children() if n.startswith("dropout")]
    assert dropout_stages  # the third member really has dropout
