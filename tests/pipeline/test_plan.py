"""The plan summary and its cost model: FLOPs counted by torch's FLOP counter from the
built model, agreeing with the benchmark's hand count; sizes read without loading data;
the summary printed by `python -m singledir.pipeline.plan` and at workflow start."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_snakemake, shared_file, write_yaml
from singledir.pipeline import config_check, cost, plan
from singledir.bench.fused_training import mlp_training_flops
from singledir.data.sources import load_dataset


def test_training_flops_agree_with_the_benchmark_count():
    spec = {"model": {"arch": "mlp", "hidden": [32, 16]}, "train": {"epochs": 3}}
    data = cost.DataSize(n_train=64, n_test=20, shape=(1, 28, 28), n_classes=10, name="x")
    assert cost.training_flops(spec, data) == mlp_training_flops([784, 32, 16, 10], 64, 20, 3)


def test_reliance_penalty_doubles_the_training_steps_cost():
    """The reliance penalty's extra (ablated) forward pass, with its backward pass, costs a
    second step per batch; evaluation passes are unchanged."""
    data = cost.DataSize(n_train=64, n_test=20, shape=(1, 28, 28), n_classes=10, name="x")
    plain = {"model": {"arch": "mlp", "hidden": [32, 16]}, "train": {"epochs": 3}}
    reliance = {"model": plain["model"], "train": {"epochs": 3, "regularizer": "reliance"}}
    fwd, step = cost.model_flops(plain["model"], data.shape, data.n_classes)
    assert cost.training_flops(reliance, data) - cost.training_flops(plain, data) == 3 * 64 * step
    selectivity = {"model": plain["model"], "train": {"epochs": 3, "regularizer": "selectivity"}}
    assert cost.training_flops(selectivity, data) == cost.training_flops(plain, data)


def test_convnet_and_resnet_flops_are_counted():
    fwd, step = cost.model_flops({"arch": "convnet", "width": 1.0, "batch_norm": True}, (3, 32, 32), 10)
    # the first convolution alone: 2 x 64 maps x 32 x 32 positions x 27 inputs
    assert fwd > 2 * 64 * 32 * 32 * 27 and 2.5 * fwd < step < 3.5 * fwd
    fwd50, _ = cost.model_flops({"arch": "torchvision", "name": "resnet50", "weights": None}, (3, 224, 224), 1000)
    assert 8.0e9 < fwd50 < 8.4e9  # ResNet-50's well-known 4.1 GMACs per 224 x 224 image
    # step-based training: steps x global batch forward+backward passes
    spec = {"model": {"arch": "torchvision", "name": "resnet50", "weights": None},
            "train": {"steps": 10, "workers": 4, "batch_size": 8}}
    data = cost.DataSize(100, 10, (3, 224, 224), 1000, "x")
    assert cost.training_flops(spec, data) == 10 * 32 * cost.model_flops(spec["model"], (3, 224, 224), 1000)[1]


def test_dataset_size_without_loading_matches_loading():
    path = shared_file("mnist_t10k.npz")
    spec = {"source": "npz", "path": str(path), "test_fraction": 0.2, "train_limit": 1500}
    size = cost.dataset_size(spec)
    data = load_dataset(spec)
    assert (size.n_train, size.n_test, size.shape) == (len(data.x_train), len(data.x_test), data.x_train.shape[1:])
    digits = cost.dataset_size({"source": "sklearn_digits", "test_fraction": 0.25, "channels": 3, "upsample": 2})
    real = load_dataset({"source": "sklearn_digits", "test_fraction": 0.25, "channels": 3, "upsample": 2})
    assert digits.shape == real.x_train.shape[1:]
    assert abs(digits.n_train - len(real.x_train)) <= 5  # the stratified split rounds per class


def test_throughput_from_config_bench_or_default(tmp_path):
    assert cost.throughputs({}, tmp_path / "none.csv")["cpu"] == (cost.DEFAULT_CPU_FLOPS, pytest.approx(
        "default (set cost.cpu_flops_per_s, or run python -m singledir.bench)"))
    bench = tmp_path / "bench.csv"
    bench.write_text("benchmark,metric,value,unit,note\nfused_training,sequential_flops_per_s,5e10,,\n")
    rate, source = cost.throughputs({}, bench)["cpu"]
    assert rate == 5e10 and "measured by python -m singledir.bench" in source
    rates = cost.throughputs({"cost": {"cpu_flops_per_s": 1e9, "gpu_flops_per_s": 1e12}}, bench)
    assert rates == {"cpu": (1e9, "cost.cpu_flops_per_s"), "gpu": (1e12, "cost.gpu_flops_per_s")}


def test_summary_of_the_demo():
    loaded = config_check.load_config([REPO / "config" / "demo.yaml"])
    text = plan.summary(loaded.config, loaded.files, loaded.defaults, jobs=215)
    lines = text.splitlines()
    row = next(line.split() for line in lines if line.split()[:2] == ["mnist", "dropout"])
    n_dropout = len(plan.experiment_specs(loaded.config, "mnist", "dropout"))
    assert row[2] == str(n_dropout) and row[3:5] == ["300", "epochs"] and "fig5" in row
    n_imagenet = str(len(plan.experiment_specs(loaded.config, "imagenet", "corruption")))
    assert any(line.split()[:3] == ["imagenet", "corruption", n_imagenet] and "steps" in line for line in lines)
    nets = sum(len(plan.model_specs(loaded.config, f)) for f in plan.enabled_families(loaded.config))
    assert f"total: {nets} networks, 215 jobs, 28 figures" in text
    assert "CPU-hours on this machine" in text and "GPU-hours on one GPU" in text
    assert "families.mnist.analysis.method=auto" in text  # a value from a schema default is named


@pytest.mark.slow
def test_plan_command_counts_jobs_and_workflow_prints_summary(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "singledir.pipeline.plan", str(REPO / "config" / "demo.yaml")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from test_config import DEMO_JOBS
    assert f" networks, {DEMO_JOBS} jobs, 28 figures" in proc.stdout
    # and the SLURM submissions of those jobs (singledir.pipeline.submissions), fewer than the jobs
    subs = re.search(r"\n  submissions: (\d+) \(sbatch calls\) for (\d+) cluster jobs .*; (\d+) jobs run in the "
                     r"head job\n", proc.stdout)
    assert subs, proc.stdout
    assert int(subs.group(2)) + int(subs.group(3)) == DEMO_JOBS and int(subs.group(1)) < int(subs.group(2))
    # at workflow start, before any job (the tests otherwise set SINGLEDIR_QUIET_PLAN)
    env_quiet = os.environ.pop("SINGLEDIR_QUIET_PLAN")
    try:
        run = run_snakemake(tmp_path, "-n", "results/fig1_mnist.pdf", configfile=REPO / "config" / "demo.yaml")
    finally:
        os.environ["SINGLEDIR_QUIET_PLAN"] = env_quiet
    # printed while the Snakefile is parsed, i.e. before the DAG and any job
    assert "Plan of " in run.stderr and "estimated cost:" in run.stderr
    loaded = config_check.load_config([REPO / "config" / "demo.yaml"])
    nets = sum(len(plan.model_specs(loaded.config, f)) for f in plan.enabled_families(loaded.config))
    assert f"total: {nets} networks, jobs: see Snakemake's job stats below" in run.stderr
