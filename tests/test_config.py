"""Bad input: one clear error, naming the key, before any work starts."""
import copy

import jsonschema
import pytest

from conftest import REPO, load_yaml, run_snakemake, write_yaml
from singledir import plan

SCHEMA = load_yaml(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture
def demo():
    return load_yaml(REPO / "config" / "demo.yaml")


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_yaml(REPO / "config" / name)
    jsonschema.validate(cfg, SCHEMA)
    plan.check_config(cfg)


def test_paper_config_has_the_paper_sizes():
    cfg = load_yaml(REPO / "config" / "config.yaml")
    exps = cfg["families"]["mnist"]["experiments"]
    assert exps["selectivity"]["model"]["hidden"] == [128, 128]
    assert exps["corruption"]["model"]["hidden"] == [512, 512]
    assert exps["early_stopping"]["model"]["hidden"] == [2048, 2048]
    assert exps["dropout"]["model"]["hidden"] == [2048, 2048]
    assert cfg["families"]["mnist"]["train"]["epochs"] == 640
    assert exps["dropout"]["train"]["epochs"] == 5000
    assert exps["dropout"]["grid"]["dropout"] == [0.1, 0.2, 0.3]
    assert cfg["families"]["mnist"]["analysis"]["orderings"] == 10


def test_model_ids_and_specs(demo):
    specs = plan.model_specs(demo, "mnist")
    assert "corruption_f0.2_s0" in specs and "dropout_f1.0_p0.3_s0" in specs
    s = specs["dropout_f1.0_p0.3_s0"]
    assert s["model"]["dropout"] == 0.3 and s["labels"] == {"fraction": 1.0, "seed": 0}
    assert s["train"]["epochs"] == 300 and s["model"]["hidden"] == [256, 256]
    es = specs["early_stopping_s0"]["train"]["snapshot_epochs"]
    assert es[0] == 0 and es[-1] == 100 and es[1] == 4
    assert plan.label_file(s) == "labels_f1.0_s0.npz"


def test_figure_targets_follow_enabled_experiments(demo):
    assert "results/fig5_mnist.pdf" in plan.figure_targets(demo)
    demo["families"]["mnist"]["experiments"]["dropout"]["enabled"] = False
    assert "results/fig5_mnist.pdf" not in plan.figure_targets(demo)
    with pytest.raises(plan.ConfigError, match="experiments.dropout is missing or disabled"):
        plan.experiment_models(demo, "mnist", "dropout")


def _mnist(cfg):
    return cfg["families"]["mnist"]


@pytest.mark.parametrize("mutate, schema_msg", [
    (lambda c: _mnist(c)["dataset"].update(source="ftp"), "'ftp' is not one of"),
    (lambda c: _mnist(c)["experiments"]["corruption"]["grid"].update(fraction=[0.0, 1.5]), "1.5 is greater than the maximum of 1"),
    (lambda c: _mnist(c)["train"].update(epochs=0), "0 is less than the minimum of 1"),
    (lambda c: _mnist(c)["analysis"].update(method="fast"), "'fast' is not one of"),
    (lambda c: _mnist(c)["analysis"].update(precision="fp16"), "'fp16' is not one of"),
])
def test_schema_rejects(demo, mutate, schema_msg):
    mutate(demo)
    with pytest.raises(jsonschema.ValidationError, match=schema_msg):
        jsonschema.validate(demo, SCHEMA)


def test_semantic_checks(demo, tmp_path):
    bad = copy.deepcopy(demo)
    _mnist(bad)["analysis"]["ablation_layers"] = ["relu1", "relu7"]
    with pytest.raises(plan.ConfigError, match=r"analysis.ablation_layers: unknown layer 'relu7'"):
        plan.check_config(bad)
    bad = copy.deepcopy(demo)
    _mnist(bad)["dataset"] = {"source": "npz", "path": str(tmp_path / "missing.npz")}
    with pytest.raises(plan.ConfigError, match=r"families.mnist.dataset.path: npz file not found"):
        plan.check_config(bad)
    bad = copy.deepcopy(demo)
    bad["device"] = "cpu"
    _mnist(bad)["analysis"]["precision"] = "tf32"
    with pytest.raises(plan.ConfigError, match=r"families.mnist.analysis.precision: tf32 needs a CUDA device"):
        plan.check_config(bad)


@pytest.mark.slow
@pytest.mark.parametrize("mutate, message", [
    (lambda c: _mnist(c)["experiments"]["corruption"]["grid"].update(fraction=[-0.5]), "-0.5 is less than the minimum of 0"),
    (lambda c: _mnist(c)["dataset"].update(source="npz", path="/nonexistent/x.npz"), "dataset.path: npz file not found: /nonexistent/x.npz"),
    (lambda c: _mnist(c)["analysis"].update(unit_layers=["fc9"]), "unknown layer 'fc9'"),
])
def test_workflow_stops_before_any_work(demo, tmp_path, mutate, message):
    mutate(demo)
    cfg = write_yaml(demo, tmp_path / "bad.yaml")
    proc = run_snakemake(tmp_path, "-n", "all_figures", configfile=cfg, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_unknown_figure_target(demo, tmp_path):
    cfg = write_yaml(demo, tmp_path / "c.yaml")
    proc = run_snakemake(tmp_path, "-n", "results/fig9_mnist.pdf", configfile=cfg, check=False)
    assert proc.returncode != 0
    assert "results/fig9_mnist.pdf" in proc.stdout + proc.stderr
