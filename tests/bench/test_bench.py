"""`python -m singledir.bench --quick` runs end to end and reports its summary as the
last printed line (a JSON object of plain positive numbers); not a timing test."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from singledir.bench import cli, gpu_check
from singledir.bench.engine_vs_naive import forward_flops
from singledir.bench.fused_training import fused_benchmark, mlp_training_flops
from singledir.models.nets import MLP


def test_bench_quick_reports_json_summary_and_csv(tmp_path):
    csv = tmp_path / "bench.csv"
    # two threads, as the benchmark runs by default: fused training then takes the cost model's
    # decision (no trial), the path that once crashed the benchmark
    # two rounds of every timing, as the full benchmark's three: medians, spreads, equal results
    proc = subprocess.run([sys.executable, "-m", "singledir.bench", str(csv), "--quick", "--threads", "2",
                           "--repeats", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    for key in ("mlp_speedup", "convnet_speedup", "gemm_fraction", "fused_training_speedup",
                "fused_training_speedup_ceiling"):
        value = summary[key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        assert math.isfinite(value) and value > 0, (key, value)
    assert "extrapolated linearly" in proc.stdout  # the naive timing says how it was obtained
    assert summary["repeats"] == 2 and "(median of " in proc.stdout
    # the speed-up splits into less arithmetic times the engine's rate relative to the naive one
    for net in ("mlp", "convnet"):
        assert summary[f"{net}_flop_ratio"] > 1
        assert summary[f"{net}_speedup"] == pytest.approx(summary[f"{net}_flop_ratio"]
                                                          * summary[f"{net}_rate_vs_naive"], rel=1e-9)
    assert summary["convnet_winograd_speedup"] > 0  # the ConvNet engine timed with direct convolutions too
    # at the quick width the last convolutions take F(4x4, 3x3) (16 channels on both sides
    # suffice), which executes fewer FLOPs than the direct convolutions it replaces
    assert summary["gemm_fraction_direct_equivalent"] > summary["gemm_fraction"]
    assert "SINGLEDIR_WINOGRAD=0" in proc.stdout
    from singledir.engine.linear import onednn_linear_available
    if onednn_linear_available():  # the faster product's rate, and the fractions against it
        assert summary["onednn_gemm_flops_per_s"] > 0
        assert summary["gemm_fraction_of_onednn"] == pytest.approx(
            summary["gemm_fraction"] * summary["gemm_flops_per_s"] / summary["onednn_gemm_flops_per_s"])
        assert summary["fused_training_speedup_ceiling_onednn"] > 0
    table = pd.read_csv(csv)
    assert list(table.columns) == ["benchmark", "metric", "value", "unit", "note"]
    assert {"gemm", "mlp", "fused_training"} <= set(table.benchmark)
    # the engine agreed with the naive method where both ran
    diffs = table[table.metric.isin(["max_abs_loss_diff", "max_abs_accuracy_diff"])]
    assert len(diffs) == 4 and (diffs.value < 1e-5).all()
    # each time is the median of its rounds, which lie between the smallest and largest one;
    # the engine's rounds gave identical numbers (same inputs and threads on a CPU)
    for bench_name in set(table.benchmark) - {"gemm"}:
        rows = table[table.benchmark == bench_name].set_index("metric").value
        assert rows["repeats"] == 2, bench_name
        if "engine_s" in rows:
            assert rows["engine_s_min"] <= rows["engine_s"] <= rows["engine_s_max"], bench_name
            assert rows["naive_s_measured_min"] <= rows["naive_s_measured"] <= rows["naive_s_measured_max"]
            assert rows["engine_repeat_max_abs_loss_diff"] == 0, bench_name
    # the naive method's arithmetic per point, counted by torch's flop counter, is the
    # engine's unperturbed pass (one forward over every example), counted by the engine
    # (the ConvNet's as direct convolutions: its Winograd form executes fewer)
    for net in set(table.benchmark) - {"gemm", "fused_training", "fused_training_small"}:
        rows = table[table.benchmark == net].set_index("metric").value
        direct = rows.get("base_flops_direct_equivalent", rows["base_flops"])
        assert rows["naive_flops"] / rows["points"] == pytest.approx(direct, rel=1e-12), net
        if net.startswith("convnet"):
            assert rows["base_flops"] < direct


def test_bench_refuses_fewer_than_one_round(capsys):
    with pytest.raises(SystemExit):
        cli.main(["/dev/null", "--quick", "--repeats", "0"])
    assert "--repeats must be at least 1; got 0" in capsys.readouterr().err


def test_forward_flops_counts_two_per_multiply_add():
    net = MLP(12, [5, 4], 3)
    assert forward_flops(net, torch.zeros(7, 12)) == 7 * 2 * (12 * 5 + 5 * 4 + 4 * 3)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_benchmark_reports_the_trial_or_the_cost_model(n_threads):
    """With one thread `fuse: K` is decided by a timed trial; with two by the cost model,
    which times nothing (the benchmark once died there: KeyError 'speedup')."""
    lines = []
    old = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        res = fused_benchmark(3, [8, 8], 256, 1, 64, lines.append, peak=1e11, repeats=2)
    finally:
        torch.set_num_threads(old)
    by_trial = n_threads == 1
    assert res["decided_by_trial"] == float(by_trial) and ("trial_speedup" in res) is by_trial
    assert any(("the trial chose" if by_trial else "the cost model chose fusion") in line for line in lines)
    for key in ("speedup", "forced_fused_speedup", "speedup_ceiling", "sequential_s", "fused_s"):
        assert math.isfinite(res[key]) and res[key] > 0, key
    assert res["repeats"] == 2 and sum(line.count("(median of ") for line in lines) == 3  # its three times
    assert 0 <= res["fused_chosen"] <= 1


def test_training_flop_count_matches_torch_flop_counter():
    """The fused benchmark's ceiling rests on this count: one epoch of one step and its
    two history rows (epoch 0, the convergence gate's floor(0.9 x 1), and the final epoch;
    no snapshots) equal what torch's FLOP counter sees."""
    torch.manual_seed(0)
    model = MLP(784, [32, 16], 10)
    x, x_test, y = torch.randn(64, 1, 28, 28), torch.randn(20, 1, 28, 28), torch.randint(0, 10, (64,))
    with FlopCounterMode(display=False) as step:
        F.cross_entropy(model(x), y).backward()
    with FlopCounterMode(display=False) as evals, torch.no_grad():
        model(x), model(x_test)
    assert step.get_total_flops() > 0
    assert mlp_training_flops([784, 32, 16, 10], 64, 20, 1) == step.get_total_flops() + 2 * evals.get_total_flops()


def test_gpu_check_runs_its_code_on_cpu_tensors_when_the_device_query_is_stubbed(tmp_path, monkeypatch, capsys):
    """`--device cuda`: the device query is the only stub (it answers the CPU), so every
    measurement and the projection run their real code; tf32 is refused off CUDA and
    reported as not run."""
    from singledir.pipeline.plan import experiment_models
    from conftest import REPO, load_yaml

    monkeypatch.setattr(gpu_check, "cuda_device", lambda: torch.device("cpu"))
    config = REPO / "config" / "config.yaml"
    csv = tmp_path / "gpu.csv"
    with torch.random.fork_rng():
        summary = cli.main([str(csv), "--device", "cuda", "--quick", "--budget-s", "120", "--config", str(config),
                              "--threads", "1"])
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == json.loads(json.dumps(summary))
    for name in ("mlp", "convnet"):
        assert summary[f"gpu_{name}_fp32_images_per_s"] > 0 and summary[f"gpu_{name}_bf16_images_per_s"] > 0
        assert summary[f"gpu_{name}_fp32_max_abs_accuracy_diff"] == 0
        assert f"gpu_{name}_tf32_images_per_s" not in summary
    assert "tf32: not run (precision: tf32 needs a CUDA device" in out
    assert summary["gpu_fused_convnet_speedup"] > 0 and summary["gpu_convnet_epoch_s"] > 0
    # The projection: models x epochs x measured epoch cost (CIFAR-10: 50,000 images per epoch).
    cfg = load_yaml(config)
    n = len(experiment_models(cfg, "cifar10", "generalization"))
    epochs = cfg["families"]["cifar10"]["train"]["epochs"]
    assert summary["gpu_hours_cifar10_generalization"] == pytest.approx(n * epochs * summary["gpu_convnet_epoch_s"] / 3600)
    assert summary["gpu_hours_mnist_corruption"] > 0
    assert "gpu_hours_imagenet_corruption" in summary  # listed, with its unmeasured models said in the log
    assert "not measured" in out
    table = pd.read_csv(csv)
    assert {"gpu_engine_mlp_fp32", "gpu_fused_convnet", "gpu_convnet_epoch"} <= set(table.benchmark)


def test_gpu_check_without_a_gpu_says_so():
    if gpu_check.cuda_device() is not None:
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="no CUDA device is visible"):
        cli.main(["/dev/null", "--device", "cuda", "--quick"])
