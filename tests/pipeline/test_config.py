"""Bad input: one clear error, naming the key, before any work starts."""
import copy
import shutil
import subprocess
import sys

import jsonschema
import pytest

from conftest import REPO, load_yaml, run_snakemake, write_yaml
from singledir.pipeline import config_check, plan
from workflow_runs import planned_jobs

SCHEMA = load_yaml(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture
def demo():
    return load_yaml(REPO / "config" / "demo.yaml")


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_yaml(REPO / "config" / name)
    jsonschema.validate(cfg, SCHEMA)
    plan.check_config(cfg)
    config_check.load_config([REPO / "config" / name])


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
    # every epoch up to snapshot_dense_until (50), then the multiples of snapshot_every (4)
    assert es[:51] == list(range(51)) and es[51:] == list(range(52, 101, 4))
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
@pytest.mark.parametrize("target, why", [
    ("results/fig9_mnist.pdf", "family mnist has no figure 'fig9'; its figures are fig1, fig2, fig4, fig5, fig7, figA4, figX1, figX2, figX3, figX4"),
    ("results/fig1_svhn.pdf", "there is no family 'svhn'; the families are mnist, cifar10, imagenet"),
])
def test_unknown_figure_target(demo, tmp_path, target, why):
    cfg = write_yaml(demo, tmp_path / "c.yaml")
    proc = run_snakemake(tmp_path, "-n", target, configfile=cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{target} is not a figure of this project: {why}" in out
    assert "this config draws 28: fig1_mnist, fig2_mnist" in out  # the known figures, and how to draw them
    assert "snakemake all_figures" in out
    assert not (tmp_path / "results").exists()


# --- a command-line config describes the whole run; what is unsaid takes schema defaults ----

def _mnist_only(demo) -> dict:
    """A user's config: the MNIST family only, with a grid that names no seed and no
    fuse, checkpoint_every or analysis keys."""
    fam = copy.deepcopy(demo["families"]["mnist"])
    fam.pop("analysis")
    for key in ("checkpoint_every", "eval_batch_size", "momentum", "lr_schedule", "augment"):
        fam["train"].pop(key)
    fam["experiments"] = {"corruption": {"model": {"hidden": [16, 16]}, "grid": {"fraction": [0.0, 0.5, 1.0]}}}
    return {"scale": "mine", "device": "cpu", "families": {"mnist": fam}}


def test_config_omits_keys_get_schema_defaults(demo, tmp_path):
    path = write_yaml(_mnist_only(demo), tmp_path / "mine.yaml")
    loaded = config_check.load_config([path])
    cfg = loaded.config
    assert list(cfg["families"]) == ["mnist"]
    # the grid's seed list is the schema's default, not the paper's 40 seeds
    default_seeds = SCHEMA["$defs"]["experiment"]["properties"]["grid"]["properties"]["seed"]["default"]
    assert cfg["families"]["mnist"]["experiments"]["corruption"]["grid"]["seed"] == default_seeds == [0]
    assert list(plan.model_specs(cfg, "mnist")) == ["corruption_f0.0_s0", "corruption_f0.5_s0", "corruption_f1.0_s0"]
    # the schema's documented defaults, never config.yaml's paper values
    train = cfg["families"]["mnist"]["train"]
    assert (train["momentum"], train["lr_schedule"], train["augment"]) == (0.9, "constant", False)
    assert cfg["families"]["mnist"]["experiments"]["corruption"]["fuse"] == 1
    assert cfg["families"]["mnist"]["analysis"]["orderings"] == 10
    assert cfg["bootstrap"] == 1000 and cfg["seed"] == 0
    assert "families.mnist.experiments.corruption.grid.seed" in loaded.defaults
    assert "families.mnist.train.momentum" in loaded.defaults
    assert "families.mnist.train.epochs" not in loaded.defaults  # given
    # the plan summary names them
    text = plan.summary(cfg, loaded.files, loaded.defaults)
    assert "families.mnist.experiments.corruption.grid.seed=[0]" in text
    assert "families.mnist.train.momentum=0.9" in text


@pytest.mark.slow
def test_command_line_config_plans_only_its_families(demo, tmp_path):
    path = write_yaml(_mnist_only(demo), tmp_path / "mine.yaml")
    proc = run_snakemake(tmp_path, "-n", "all_figures", configfile=path)
    jobs = planned_jobs(proc)
    out = proc.stdout + proc.stderr
    assert "cifar10" not in out and "imagenet" not in out
    assert not any(rule.startswith(("imagenet", "fig3", "fig6")) for rule in jobs)
    assert "config/config.yaml" not in out  # not "extended by additional config"
    assert jobs["train_model"] == 3 and jobs["prepare_dataset"] == 1
    assert jobs["fig1"] == 1 and jobs["fig2"] == 1


# The jobs `snakemake -n all_figures` plans for the shipped configs on a fresh checkout
# (the same as before command-line configs stopped merging with config/config.yaml).
# A change of the demo's grids changes DEMO_JOBS; `python -m singledir.pipeline.plan config/demo.yaml`
# prints the new number.
DEMO_JOBS = 194  # demo fuses its multi-net experiments (one train_group job each; same weights as one by one)
PAPER_JOBS = 1755  # 1720 + the 22 nets (and their analyses) added so that every claim can be decided (issue 30)


@pytest.mark.slow
@pytest.mark.parametrize("name, total", [("demo.yaml", DEMO_JOBS), ("config.yaml", PAPER_JOBS), (None, PAPER_JOBS)])
def test_shipped_configs_plan_what_they_planned(tmp_path, name, total):
    if name is None:  # no --configfile: config/config.yaml of the working directory
        (tmp_path / "config").mkdir()
        shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    proc = run_snakemake(tmp_path, "-n", "all_figures", configfile=REPO / "config" / name if name else None)
    jobs = planned_jobs(proc)
    assert sum(jobs.values()) == total, jobs


# --- bad config files: one short message naming the file, the line and the fix --------

@pytest.mark.parametrize("mutate, message", [
    (lambda c: _mnist(c)["train"].update(epoch=3),
     "unknown key 'families.mnist.train.epoch'; did you mean 'epochs'?"),
    (lambda c: _mnist(c)["analysis"].update(orderingz=3),
     "unknown key 'families.mnist.analysis.orderingz'; did you mean 'orderings'?"),
    (lambda c: _mnist(c)["experiments"]["corruption"].update(trian={"epochs": 3}),
     "unknown key 'families.mnist.experiments.corruption.trian'; did you mean 'train'?"),
    (lambda c: _mnist(c)["model"].update(hiden=[3]), "unknown key 'families.mnist.model.hiden'; did you mean 'hidden'?"),
    (lambda c: _mnist(c)["dataset"].update(splitseed=3), "unknown key 'families.mnist.dataset.splitseed'; did you mean 'split_seed'?"),
    (lambda c: _mnist(c)["experiments"]["corruption"]["grid"].update(seeds=[1]),
     "unknown key 'families.mnist.experiments.corruption.grid.seeds'; did you mean 'seed'?"),
    (lambda c: c["families"]["cifar10"]["figures"]["fig4"].update(subset=3),
     "unknown key 'families.cifar10.figures.fig4.subset'; did you mean 'subsets'?"),
    (lambda c: c.update(bootstraps=10), "unknown key 'bootstraps'; did you mean 'bootstrap'?"),
    (lambda c: c["families"].update(svhn={}), "unknown key 'families.svhn'; valid keys here: mnist, cifar10, imagenet"),
    (lambda c: _mnist(c)["analysis"].update(ablation_layers="some"),
     "families.mnist.analysis.ablation_layers: 'some' is not valid here (\"all\", -k for the last k unit layers"),
])
def test_schema_errors_name_file_line_key_and_fix(demo, tmp_path, mutate, message):
    mutate(demo)
    path = write_yaml(demo, tmp_path / "bad.yaml")
    with pytest.raises(config_check.ConfigFileError) as err:
        config_check.load_config([path])
    text = str(err.value)
    assert message in text
    assert text.startswith(f"{path}, line ")
    line = int(text.split(", line ")[1].split(":")[0])
    key = message.split("'")[1].split(".")[-1] if "unknown key" in message else "ablation_layers"
    assert path.read_text().splitlines()[line - 1].strip().startswith(key)
    assert len(text.splitlines()) == 1 and len(text) < 600


def test_duplicate_key_names_file_and_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("families:\n  mnist:\n    experiments:\n      corruption:\n        grid: {seed: [0]}\n"
                    "      selectivity:\n        grid: {seed: [0]}\n      corruption:\n        grid: {seed: [1]}\n")
    with pytest.raises(config_check.ConfigFileError,
                       match=rf"{path}, line 8: duplicate key 'families.mnist.experiments.corruption' "
                             rf"\(first given on line 4\)"):
        config_check.load_yaml(path)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("scale: x\nfamilies:\n  mnist:\n    label: [MNIST\n    enabled: true\n")
    with pytest.raises(config_check.ConfigFileError, match=rf"{path}, line \d+, column \d+: not valid YAML"):
        config_check.load_yaml(path)
    # the plan command says the same (Snakemake parses command-line config files itself,
    # before the workflow runs; its own message has no line)
    proc = subprocess.run([sys.executable, "-m", "singledir.pipeline.plan", str(path), "--no-jobs"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and f"error: {path}, line" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unknown_top", "typo_deep", "duplicate"])
def test_workflow_config_errors_are_short(demo, tmp_path, case):
    path = tmp_path / "bad.yaml"
    if case == "unknown_top":
        demo["familys"] = {}
        write_yaml(demo, path)
        expected = "unknown key 'familys'; did you mean 'families'?"
    elif case == "typo_deep":
        _mnist(demo)["experiments"]["corruption"]["trian"] = {"epochs": 3}
        write_yaml(demo, path)
        expected = "unknown key 'families.mnist.experiments.corruption.trian'; did you mean 'train'?"
    else:
        write_yaml(demo, path)
        path.write_text(path.read_text() + "seed: 3\n")
        expected = "duplicate key 'seed' (first given on line"
    proc = run_snakemake(tmp_path, "-n", "all_figures", configfile=path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{path}, line" in out and expected in out
    assert len(out.splitlines()) < 15, out  # not the schema and the config (770 lines before)
    assert not (tmp_path / "results").exists()


def test_command_line_overrides_apply_and_are_named(tmp_path):
    demo_file = REPO / "config" / "demo.yaml"
    loaded = config_check.load_config([demo_file], overrides={"scale": "x", "bootstrap": 50})
    assert (loaded.config["scale"], loaded.config["bootstrap"]) == ("x", 50)
    with pytest.raises(config_check.ConfigFileError, match=r"^--config: bootstrap: 5 is less than the minimum of 10"):
        config_check.load_config([demo_file], overrides={"bootstrap": 5})


def test_a_disabled_family_needs_nothing_else(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("families:\n  mnist:\n    enabled: false\n")
    cfg = config_check.load_config([path]).config
    assert plan.enabled_families(cfg) == [] and cfg["scale"] == "custom"  # never labelled as the paper's
    path.write_text("families:\n  cifar10:\n    dataset: {source: sklearn_digits}\n    experiments: {}\n")
    with pytest.raises(config_check.ConfigFileError, match=rf"^{path}, line 2: families.cifar10: 'model' is a "
                                                           r"required property"):
        config_check.load_config([path])


@pytest.mark.slow
def test_known_figure_target_never_reaches_the_unknown_figure_rule(demo, tmp_path):
    """The catch-all rule for unknown figures must not match a real one (it did when its
    lookahead ended at the wildcard instead of at '.pdf': every known figure then printed
    the unknown-figure error while the DAG was built)."""
    cfg = write_yaml(demo, tmp_path / "c.yaml")
    proc = run_snakemake(tmp_path, "-n", "results/fig1_mnist.pdf", "results/figA4_mnist.csv", configfile=cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert "is not a figure of this project" not in out
    assert "fig1" in out and "unknown_figure" not in out
