"""Integration: the demo DAG for one MNIST figure, in a temporary directory."""
import pandas as pd
import pytest

from conftest import run_snakemake, tiny_mnist_config, write_yaml


@pytest.mark.slow
def test_fig1_mnist_demo_dag(tmp_path):
    cfg = tiny_mnist_config(tmp_path, corruption={"grid": {"fraction": [0.0, 1.0], "seed": [0]},
                                                  "model": {"hidden": [64, 64]},
                                                  "train": {"epochs": 40}})
    cfgfile = write_yaml(cfg, tmp_path / "tiny.yaml")
    run_snakemake(tmp_path, "results/fig1_mnist.pdf", configfile=cfgfile)
    res = tmp_path / "results"
    pdf = res / "fig1_mnist.pdf"
    assert pdf.read_bytes()[:4] == b"%PDF"
    curves = pd.read_csv(res / "fig1_mnist.csv")
    assert set(curves["corrupted_fraction"]) == {0.0, 1.0}
    assert len(curves) == 2 * 3 * 6  # models x orderings x points
    stats = pd.read_csv(res / "stats" / "mnist" / "fig1.csv")
    auc = stats.set_index("statistic")["value"]
    # Memorizing shuffled labels makes the net more reliant on single directions.
    assert auc["auc_fraction_0"] > auc["auc_fraction_1"]
    labels = res / "data" / "mnist" / "labels_f1.0_s0.npz"
    assert labels.exists()
    # Every job logged and benchmarked; nothing left to do afterwards.
    assert (res / "logs" / "train_model" / "mnist" / "corruption_f1.0_s0.log").exists()
    assert (res / "benchmarks" / "train_model" / "mnist" / "corruption_f1.0_s0.tsv").exists()
    proc = run_snakemake(tmp_path, "-n", "results/fig1_mnist.pdf", configfile=cfgfile)
    assert "Nothing to be done" in proc.stdout + proc.stderr
