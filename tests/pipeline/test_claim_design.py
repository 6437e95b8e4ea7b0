"""The plan's decidability check (singledir.pipeline.claim_design): the paper config decides
every claim by design; the demo's does not, and the plan prints why."""
from pathlib import Path

from singledir.pipeline.claim_design import config_design, summary_lines, undecidable
from singledir.pipeline.config_check import load_config

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_paper_config_decides_every_claim_by_design():
    assert undecidable(load_config([CONFIG / "config.yaml"]).config) == []


def test_design_records_what_the_claims_need():
    design = config_design(load_config([CONFIG / "config.yaml"]).config)
    fig5 = design["mnist"]["fig5"]
    assert len(fig5) == 24 and {n["dropout"] for n in fig5} == {0.1, 0.2, 0.3}  # 4 seeds x 2 labels x 3 p
    assert len(design["cifar10"]["figA1"]) == 6 and all(n["batch_norm"] for n in design["cifar10"]["figA1"])
    assert design["mnist"]["fig7"][0]["units"] == 256 and design["cifar10"]["fig7"][0]["units"] == 2816
    assert max(n["snapshots"] for n in design["cifar10"]["fig4"]) == 101


def test_demo_config_lists_undecidable_claims_with_reasons():
    cfg = load_config([CONFIG / "demo.yaml"]).config
    bad = {b["claim"]: b["why"] for b in undecidable(cfg)}
    assert "1 vs 1 networks" in bad["fig5a_dropout_past_fraction_p0.1"]
    lines = summary_lines(cfg)
    assert lines[0] == f"  claims the design cannot decide: {len(bad)}"
    assert any("fig5a_dropout_past_fraction_p0.1 (mnist, Fig. 5a)" in l for l in lines)
    assert "Fisher-z" in lines[-1]


def test_laptop_config_decides_every_mnist_claim_by_design():
    """config/laptop.yaml (README, docs/results/laptop) is sized so that every MNIST claim, the
    paper's and ours, can be decided; the run's npz override changes only where the data come from."""
    cfg = load_config([CONFIG / "laptop.yaml"]).config
    assert [b["claim"] for b in undecidable(cfg) if b["family"] == "mnist"] == []
    override = CONFIG.parent / "docs" / "results" / "laptop" / "override.yaml"
    with_npz = load_config([CONFIG / "laptop.yaml", override]).config
    assert with_npz["families"]["mnist"]["dataset"]["source"] == "npz"
    assert undecidable(with_npz) == undecidable(cfg)


def test_laptop_sweep_counts_its_six_settings_and_decides_every_mnist_claim():
    """config/laptop.yaml's Fig. 4c sweep is 3 learning rates x 2 batch sizes: 6 settings (Fig.
    4b's early-stopping net, also in Fig. 4's design, is not one of them; it used to make 7)."""
    bad = {b["claim"]: b for b in undecidable(load_config([CONFIG / "laptop.yaml"]).config)}
    assert "Spearman over 6 settings" in bad["fig4c_auc_vs_test_accuracy"]["why"]
    assert "the sweep has 6 settings, not the paper's 96" in bad["fig4c_selection_gap"]["why"]
    assert not [c for c, b in bad.items() if b["family"] == "mnist"]


def test_plan_warns_where_training_is_likely_too_short_to_converge():
    """singledir.pipeline.training_length: none for the paper config; the laptop config's
    12-epoch CIFAR-10 nets (issue 30: the no-batch-norm arm ended at 0.48 training accuracy)
    and 30-epoch corrupted-label nets are named, its MNIST experiments (>= 60 epochs) are not."""
    from singledir.pipeline.training_length import (ASSUMPTION, MIN_EPOCHS_CLEAN, convergence_warnings,
                                                    summary_lines as length_lines)
    assert convergence_warnings(load_config([CONFIG / "config.yaml"]).config) == []
    laptop = load_config([CONFIG / "laptop.yaml"]).config
    warned = {(w["family"], w["experiment"]): w for w in convergence_warnings(laptop)}
    assert set(warned) == {("cifar10", "batch_norm"), ("cifar10", "generalization"), ("cifar10", "sweep"),
                           ("cifar10", "corruption")}
    bn = warned[("cifar10", "batch_norm")]
    assert (bn["epochs"], bn["labels"], bn["minimum"]) == (12, "clean", MIN_EPOCHS_CLEAN)
    assert bn["warning"].startswith("families.cifar10.experiments.batch_norm: 12 epochs, fewer than 20 (clean labels)")
    assert warned[("cifar10", "corruption")]["labels"] == "corrupted"
    lines = length_lines(laptop)
    assert lines[0] == "  training likely too short to converge: 4" and ASSUMPTION in lines[-1]
    # step-based training counts passes over the training images: demo ImageNet, 28.5
    demo = {(w["family"], w["experiment"]): w for w in convergence_warnings(load_config([CONFIG / "demo.yaml"]).config)}
    assert demo[("imagenet", "corruption")]["warning"].endswith("a larger train.steps avoids it")
