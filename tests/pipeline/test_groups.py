"""Which models share one job (singledir.pipeline.groups): fused training groups, probe
groups, and the `model` wildcard that leaves grouped models to their group rules."""
import re
import subprocess
import sys

import pytest

from conftest import REPO, load_yaml
from singledir.pipeline import plan
from singledir.pipeline.groups import fusion_groups, fusion_key, group_rules, probe_groups, ungrouped_member_regex


def _fused_config():
    cfg = load_yaml(REPO / "config" / "demo.yaml")
    for name, fam in cfg["families"].items():
        fam["enabled"] = name == "mnist"
    cfg["families"]["mnist"]["experiments"] = {
        "corruption": {"model": {"hidden": [16]}, "grid": {"fraction": [0.0, 0.5], "seed": [0]}},
        "dropout": {"model": {"hidden": [16]}, "fuse": 4, "grid": {"dropout": [0.1, 0.2, 0.3], "fraction": [0.0, 1.0]}},
        "selectivity": {"model": {"hidden": [16]}, "fuse": 8, "grid": {"seed": [0, 1, 2]}},
    }
    return cfg


def test_fusion_groups_are_chunks_of_k_in_grid_order():
    cfg = _fused_config()
    ids = lambda exp: list(plan.experiment_specs(cfg, "mnist", exp))  # noqa: E731
    # 6 dropout models of one shape -> 4 + 2 in grid order; corruption (no fuse) is not grouped.
    assert fusion_groups(cfg, "mnist") == {"dropout_g0": ids("dropout")[:4], "dropout_g1": ids("dropout")[4:],
                                           "selectivity_g0": ids("selectivity")}
    # fuse: 5 over 6 models leaves a group of one, which trains alone (no group)
    cfg["families"]["mnist"]["experiments"]["dropout"]["fuse"] = 5
    assert [k for k in fusion_groups(cfg, "mnist") if k.startswith("dropout")] == ["dropout_g0"]


def test_fusion_groups_split_on_the_fusion_key():
    cfg = _fused_config()
    # A grid variable that changes the schedule (batch size) splits groups; seeds do not.
    cfg["families"]["mnist"]["experiments"]["selectivity"]["grid"] = {"seed": [0, 1], "batch_size": [32, 64]}
    groups = fusion_groups(cfg, "mnist")
    sel = {k: v for k, v in groups.items() if k.startswith("selectivity")}
    assert list(sel) == ["selectivity_g0", "selectivity_g1"] and [len(v) for v in sel.values()] == [2, 2]
    specs = plan.model_specs(cfg, "mnist")
    for members in sel.values():
        assert len({fusion_key(specs[m]) for m in members}) == 1
    assert fusion_key(specs[sel["selectivity_g0"][0]]) != fusion_key(specs[sel["selectivity_g1"][0]])
    spec = {"model": {"arch": "mlp", "hidden": [8], "dropout": 0.1}, "train": {"seed": 1, "lr": 0.1, "epochs": 2},
            "labels": {"fraction": 0.2, "seed": 1}, "id": "a"}
    other = {"model": {"arch": "mlp", "hidden": [8], "dropout": 0.3}, "train": {"seed": 2, "lr": 0.5, "epochs": 2},
             "labels": {"fraction": 0.0, "seed": 2}, "id": "b"}
    assert fusion_key(spec) == fusion_key(other)  # per-member values: seed, lr, dropout, labels
    other["train"]["epochs"] = 3
    assert fusion_key(spec) != fusion_key(other)


def test_fusion_refuses_an_architecture_it_cannot_stack():
    cfg = _fused_config()
    cfg["families"]["mnist"]["model"]["arch"] = "torchvision"
    with pytest.raises(plan.ConfigError, match=r"experiments.dropout.fuse: fused training supports the "
                                               r"architectures \('mlp', 'convnet'\), not 'torchvision'"):
        fusion_groups(cfg, "mnist")


def test_probe_groups_are_chunks_of_k_of_the_networks_the_same_figures_need():
    cfg = load_yaml(REPO / "config" / "demo.yaml")
    beyond = cfg["families"]["mnist"]["beyond"]
    beyond["probe_group"] = 1
    assert probe_groups(cfg, "mnist") == {}
    beyond["probe_group"] = 2
    groups = probe_groups(cfg, "mnist")
    by_figures = {}
    for gid, members in groups.items():
        figs, _, chunk = gid.rpartition("_p")
        by_figures.setdefault(figs, []).append((int(chunk), members))
    for figs, chunks in by_figures.items():
        assert [i for i, _ in chunks] == list(range(len(chunks)))
        assert all(len(m) == 2 for _, m in chunks[:-1]) and 1 <= len(chunks[-1][1]) <= 2
        needed = {fig: {m for sel in plan.FIGURES["mnist"][fig] for m in plan.experiment_models(cfg, "mnist", sel)}
                  for fig in ("figX1", "figX2", "figX3", "figX4")}
        for _, members in chunks:  # every member is needed by exactly the figures in the group id
            assert all({f for f, ms in needed.items() if m in ms} == set(figs.split("_")) for m in members)
    # every network of a drawn figX figure is probed once
    members = [m for ms in groups.values() for m in ms]
    assert len(members) == len(set(members)) == len(set().union(*needed.values()))
    # clean-label regularizer nets feed Figs. X1, X3 and X4: one group id names the three
    assert any(k.startswith("figX1_figX3_figX4_p") for k in groups)


def test_ungrouped_member_regex_rejects_grouped_ids_of_the_same_family_only():
    groups = {"mnist": {"dropout_g0": ["dropout_p0.1_s0", "dropout_p0.2_s0"]}, "cifar10": {}}
    # the output pattern of a per-model rule, as Snakemake builds it from the wildcard constraints
    output = re.compile(rf"results/models/(?P<family>mnist|cifar10)/(?P<model>{ungrouped_member_regex(groups)})"
                        r"/model\.pt")

    def model_wildcard(path):
        match = output.fullmatch(path)
        return match and match["model"]

    assert model_wildcard("results/models/mnist/dropout_p0.1_s0/model.pt") is None
    assert model_wildcard("results/models/mnist/dropout_p0.2_s0/model.pt") is None
    assert model_wildcard("results/models/mnist/dropout_p0.3_s0/model.pt") == "dropout_p0.3_s0"
    assert model_wildcard("results/models/cifar10/dropout_p0.1_s0/model.pt") == "dropout_p0.1_s0"
    # an id that merely starts with a member's is not a member
    assert model_wildcard("results/models/mnist/dropout_p0.1_s0x/model.pt") == "dropout_p0.1_s0x"
    # no groups: any model id
    assert ungrouped_member_regex({"mnist": {}}) == ungrouped_member_regex({}) == r"[A-Za-z0-9_.\-]+"


def test_group_rules_are_named_after_family_and_group():
    groups = {"mnist": {"figX1_figX3_p0": ["a", "b"]}, "cifar10": {"reg-plain_g0": ["c"]}}
    assert list(group_rules("beyond_probes_group", groups)) == [
        ("beyond_probes_group_mnist_figX1_figX3_p0", "mnist", "figX1_figX3_p0", ["a", "b"]),
        ("beyond_probes_group_cifar10_reg_plain_g0", "cifar10", "reg-plain_g0", ["c"])]


def test_grouping_imports_no_training_loop_nor_snakemake():
    """Grouping is config arithmetic: it needs the plan (which checks train sections through
    training.core/options/regularizers), never a training loop nor Snakemake."""
    loops = ("singledir.training.loop", "singledir.training.fused", "singledir.training.api",
             "singledir.training.distributed", "singledir.training.fusion_choice")
    code = ("import sys, singledir.pipeline.groups; "
            f"print(sorted(m for m in sys.modules if m == 'snakemake' or m in {loops!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
