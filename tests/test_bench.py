"""`python -m singledir.bench --quick` runs end to end and reports its summary as the
last printed line (a JSON object of plain positive numbers); not a timing test."""

import json
import math
import subprocess
import sys

import pandas as pd


def test_bench_quick_reports_json_summary_and_csv(tmp_path):
    csv = tmp_path / "bench.csv"
    proc = subprocess.run([sys.executable, "-m", "singledir.bench", str(csv), "--quick", "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    for key in ("mlp_speedup", "convnet_speedup", "gemm_fraction", "fused_training_speedup"):
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
