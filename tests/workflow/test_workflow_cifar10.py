"""The CIFAR-10 part of the DAG: the paper config asks for the paper's model counts, and
each figure reads the models the plan says it needs."""
import re

import pytest
import yaml

import singledir.pipeline.plan as plan
from conftest import REPO, load_yaml, run_snakemake


def _jobs(output: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job of a dry run."""
    jobs, rule = [], None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            rule = m.group(1)
        elif line.strip().startswith("wildcards:") and rule:
            jobs.append((rule, line.strip()[len("wildcards:"):].strip()))
    return jobs


@pytest.mark.slow
def test_paper_config_lists_the_papers_model_counts(tmp_path):
    proc = run_snakemake(tmp_path, "-n", "results/fig3_cifar10.pdf", "results/fig4_cifar10.pdf",
                         configfile=REPO / "config" / "config.yaml")
    out = proc.stdout + proc.stderr
    trained = [w for r, w in _jobs(out) if r == "train_model"]
    models = [re.search(r"model=([^,\s]+)", w).group(1) for w in trained]
    assert all("family=cifar10" in w for w in trained)
    assert sum(m.startswith("generalization_") for m in models) == 200  # Fig. 3: 200 nets
    assert sum(m.startswith("sweep_") for m in models) == 192  # Fig. 4c: 96 settings x 2 repeats
    assert sum(m.startswith("early_stopping_") for m in models) == 1  # Fig. 4b
    sweep = {m.rsplit("_s", 1)[0] for m in models if m.startswith("sweep_")}
    assert len(sweep) == 96
    assert sum(r == "training_auc" for r, _ in _jobs(out)) == 1


def test_unit_figures_use_the_batch_norm_models():
    cfg = load_yaml(REPO / "config" / "config.yaml")
    bn = plan.experiment_models(cfg, "cifar10", "batch_norm[batch_norm=true]")
    assert bn == [f"batch_norm_bn1_s{s}" for s in range(6)]  # 6, not the paper's 4: Fig. A1's paired test
    assert len(plan.experiment_models(cfg, "cifar10", "batch_norm")) == 12  # Figs. 5b, 6: 6 with, 6 without
    for fig in ("fig7", "figA1", "figA2", "figA3", "figA4"):
        assert plan.FIGURES["cifar10"][fig] == ["batch_norm[batch_norm=true]"]
    targets = plan.figure_targets(cfg)
    for fig in ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "figA1", "figA2", "figA3", "figA4"):
        assert f"results/{fig}_cifar10.pdf" in targets
    with pytest.raises(plan.ConfigError, match="no model has"):
        plan.experiment_models(cfg, "cifar10", "batch_norm[seed=99]")
    with pytest.raises(plan.ConfigError, match="variable=value"):
        plan.parse_selection("batch_norm[colour=red]")


def test_clean_label_runs_augment_and_corrupted_runs_do_not():
    cfg = load_yaml(REPO / "config" / "config.yaml")
    specs = plan.model_specs(cfg, "cifar10")
    for mid, spec in specs.items():
        assert spec["train"]["epochs"] == 100  # appendix A.2
        # nets meant to overfit, and E2's regularizer grid (clean and shuffled labels must train
        # alike, and augmentation would hinder memorizing shuffled labels: config.yaml)
        no_augment = spec["experiment"] in ("corruption", "early_stopping", "probe_stopping") or \
            spec["experiment"].startswith("reg_")
        assert spec["train"]["augment"] is not no_augment, mid
    assert plan.check_config(cfg) is None
