"""`python -m singledir.bench --quick` runs end to end and reports its summary as the
last printed line (a JSON object of plain positive numbers); not a timing test."""

import json
import math
import subprocess
import sys

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from singledir.bench import mlp_training_flops
from singledir.models import MLP


def test_bench_quick_reports_json_summary_and_csv(tmp_path):
    csv = tmp_path / "bench.csv"
    proc = subprocess.run([sys.executable, "-m", "singledir.bench", str(csv), "--quick", "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    for key in ("mlp_speedup", "convnet_speedup", "gemm_fraction", "fused_training_speedup",
                "fused_training_speedup_ceiling"):
        value = summary[key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        assert math.isfinite(value) and value > 0, (key, value)
    assert "extrapolated linearly" in proc.stdout  # the naive timing says how it was obtained
    table = pd.read_csv(csv)
    assert list(table.columns) == ["benchmark", "metric", "value", "unit", "note"]
    assert {"gemm", "mlp", "fused_training"} <= set(table.benchmark)
    # the engine agreed with the naive method where both ran
    diffs = table[table.metric.isin(["max_abs_loss_diff", "max_abs_accuracy_diff"])]
    assert len(diffs) == 4 and (diffs.value < 1e-5).all()


def test_training_flop_count_matches_torch_flop_counter():
    """The fused benchmark's ceiling rests on this count: one epoch of one step and its
    two history rows (epoch 0 and 1) equal what torch's FLOP counter sees."""
    torch.manual_seed(0)
    model = MLP(784, [32, 16], 10)
    x, x_test, y = torch.randn(64, 1, 28, 28), torch.randn(20, 1, 28, 28), torch.randint(0, 10, (64,))
    with FlopCounterMode(display=False) as step:
        F.cross_entropy(model(x), y).backward()
    with FlopCounterMode(display=False) as evals, torch.no_grad():
        for _ in range(2):
            model(x), model(x_test)
    assert step.get_total_flops() > 0
    assert mlp_training_flops([784, 32, 16, 10], 64, 20, 1) == step.get_total_flops() + evals.get_total_flops()
