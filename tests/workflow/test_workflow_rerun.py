"""No stage is recomputed without a reason: after a complete run nothing is left to do;
an edit reruns exactly what it affects; trained models are shared between clones
through Snakemake's between-workflow cache. All on a clone of the workflow with a tiny
demo config (tests/workflow_runs.py)."""
import os
import re

import pytest
import torch

from conftest import load_yaml, write_yaml
from workflow_runs import clone, complete_tiny_run, planned_jobs, snakemake

pytestmark = pytest.mark.slow

FIGURE_GATHERERS = {"stats_table", "claims", "all_figures"}  # what collects every figure's tables


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    return complete_tiny_run(tmp_path_factory)


def dry_run(work, cfgfile, *args):
    return planned_jobs(snakemake(work, "-n", *args, "all_figures", configfile=cfgfile))


def test_complete_run_leaves_nothing_to_do(complete):
    work, cfgfile, _ = complete
    assert (work / "results" / "fig1_mnist.pdf").exists()
    assert dry_run(work, cfgfile) == {}
    # -R reruns a rule and everything downstream of it, on request.
    forced = dry_run(work, cfgfile, "-R", "train_model")
    assert forced["train_model"] == 3 and forced["ablation_curve"] == 2 and forced["fig7"] == 1
    assert "prepare_dataset" not in forced and "corrupt_labels" not in forced


def test_editing_a_figure_script_reruns_that_figure_only(complete):
    work, cfgfile, _ = complete
    script = work / "workflow" / "scripts" / "fig1_ablation_by_corruption.py"
    original, stat = script.read_text(), script.stat()
    try:
        script.write_text(original + "\n# a change to the plotting code\n")
        changed = snakemake(work, "--list-changes", "code", configfile=cfgfile).stdout.split()
        assert "results/fig1_mnist.pdf" in changed
        assert not any("fig2" in f or "models/" in f or "analysis/" in f for f in changed)
        jobs = dry_run(work, cfgfile)
        assert jobs.get("fig1") == 1
        assert set(jobs) - {"fig1"} <= FIGURE_GATHERERS, jobs
    finally:
        # Snakemake tracks scripts by modification time: put back the old one too.
        script.write_text(original)
        os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dry_run(work, cfgfile) == {}


def test_changing_training_of_one_experiment_retrains_only_its_models(complete, tmp_path):
    work, cfgfile, _ = complete
    cfg = load_yaml(cfgfile)
    cfg["families"]["mnist"]["experiments"]["selectivity"]["train"] = {"lr": 0.01}
    changed_cfg = write_yaml(cfg, tmp_path / "lr.yaml")
    proc = snakemake(work, "-n", "all_figures", configfile=changed_cfg)
    train = re.findall(r"rule train_model:\n(?:    .*\n)*?    reason: (Params have changed since last execution)"
                       r".*\n    wildcards: family=mnist, model=(\S+)", proc.stdout)
    assert train == [("Params have changed since last execution", "selectivity_s0")], proc.stdout[-3000:]
    jobs = planned_jobs(proc)
    assert jobs.get("train_model") == 1
    assert jobs.get("unit_analysis") == 1  # the selectivity model's analysis
    assert "ablation_curve" not in jobs and "noise_curve" not in jobs  # the corruption models' ones
    assert set(jobs) <= {"train_model", "unit_analysis", "fig7", "figA4"} | FIGURE_GATHERERS, jobs
    # A file target runs only what that file needs: retrain, no analyses or figures yet.
    model = "results/models/mnist/selectivity_s0/model.pt"
    assert planned_jobs(snakemake(work, "-n", model, configfile=changed_cfg)) == {"train_model": 1}


def test_changing_an_analysis_parameter_reruns_analyses_not_training(complete, tmp_path):
    work, cfgfile, _ = complete
    cfg = load_yaml(cfgfile)
    cfg["families"]["mnist"]["analysis"]["orderings"] += 1
    jobs = dry_run(work, write_yaml(cfg, tmp_path / "orderings.yaml"))
    assert "train_model" not in jobs and "prepare_dataset" not in jobs and "corrupt_labels" not in jobs
    assert jobs["ablation_curve"] == 2 and jobs["fig1"] == 1
    # only the rules whose numbers depend on orderings: no noise curves, no unit tables
    assert set(jobs) - {"ablation_curve", "fig1"} <= FIGURE_GATHERERS, jobs


def test_a_second_clone_takes_trained_models_from_the_cache(complete, tmp_path):
    work, cfgfile, cache = complete
    assert any(cache.iterdir()), "the first run stored nothing in SNAKEMAKE_OUTPUT_CACHE"
    other = clone(tmp_path / "second-clone")
    names = ["corruption_f0.0_s0", "corruption_f1.0_s0", "selectivity_s0"]
    targets = [f"results/models/mnist/{m}/model.pt" for m in names]
    proc = snakemake(other, *targets, "--cache", configfile=cfgfile, env={"SNAKEMAKE_OUTPUT_CACHE": str(cache)})
    models = sorted((other / "results" / "models" / "mnist").glob("*/model.pt"))
    assert [m.parent.name for m in models] == names
    # Nothing was trained: no training script ran (no timing, nothing logged).
    assert not (other / "results" / "benchmarks" / "train_model").exists()
    for name in names:
        log = other / "results" / "logs" / "train_model" / "mnist" / f"{name}.log"
        assert not log.exists() or log.read_text() == "", log.read_text()
    assert len(re.findall(r"from cache", proc.stdout + proc.stderr, re.I)) >= 3, proc.stderr[-3000:]
    for m in models:
        mine = torch.load(m, weights_only=False)
        theirs = torch.load(work / "results" / "models" / "mnist" / m.parent.name / "model.pt", weights_only=False)
        assert all(torch.equal(mine["state_dict"][k], theirs["state_dict"][k]) for k in mine["state_dict"])


def test_changing_speed_knobs_reruns_nothing(complete, tmp_path):
    """chunk_size, max_rows, loader_workers and method set only speed and memory (every
    engine path is exact; singledir.pipeline.params): they are not params, so no job reruns."""
    work, cfgfile, _ = complete
    cfg = load_yaml(cfgfile)
    a = cfg["families"]["mnist"]["analysis"]
    a.update(chunk_size=a.get("chunk_size", 1024) // 2 + 1, max_rows=a.get("max_rows", 65536) // 2 + 1,
             loader_workers=2, method="generic")
    assert dry_run(work, write_yaml(cfg, tmp_path / "speed.yaml")) == {}


# Every run option (singledir.training.options.RUN_OPTION_KEYS) and the run's device,
# each edited to a value other than the tiny run's.
RUN_OPTION_EDITS = {"checkpoint_every": 2, "eval_batch_size": 77, "num_workers": 2, "nodes": 2, "gpus_per_node": 1,
                    "threads": 2}


def test_run_option_edits_cover_every_run_option():
    from singledir.training.options import RUN_OPTION_KEYS, RunOptions

    assert set(RUN_OPTION_EDITS) == set(RUN_OPTION_KEYS) == set(RunOptions.__dataclass_fields__) - {"device"}


@pytest.mark.parametrize("key", [*RUN_OPTION_EDITS, "device"])
def test_changing_a_training_run_option_reruns_nothing(complete, tmp_path, key):
    """Run options set only speed and placement of training (singledir.training.options):
    they are not in a model's spec nor a param, so editing one retrains nothing."""
    work, cfgfile, _ = complete
    cfg = load_yaml(cfgfile)
    if key == "device":
        assert cfg["device"] == "cpu"
        cfg["device"] = "auto"
    else:
        assert cfg["families"]["mnist"]["train"].get(key) != RUN_OPTION_EDITS[key]
        cfg["families"]["mnist"]["train"][key] = RUN_OPTION_EDITS[key]
    proc = snakemake(work, "-n", "all_figures", configfile=write_yaml(cfg, tmp_path / f"{key}.yaml"))
    assert "Nothing to be done" in proc.stdout + proc.stderr, planned_jobs(proc)


def test_changing_noise_scales_reruns_only_the_noise_curves_and_their_figures(complete, tmp_path):
    work, cfgfile, _ = complete
    cfg = load_yaml(cfgfile)
    cfg["families"]["mnist"]["analysis"]["noise_scales"] = [0.0, 2.0, 10.0]
    jobs = dry_run(work, write_yaml(cfg, tmp_path / "noise.yaml"))
    assert jobs["noise_curve"] == 2 and jobs["fig2"] == 1, jobs
    assert set(jobs) - {"noise_curve", "fig2"} <= FIGURE_GATHERERS, jobs
