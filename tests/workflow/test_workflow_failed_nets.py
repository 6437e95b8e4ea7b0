"""Nets that fail to train, through the workflow as a user meets them: on a 2-class npz, a
net at lr 1e6 diverges and one at lr 1e-9 stays at chance (0.5, not the 0.1 of 10
classes). The run finishes (the other nets are real results), but not silently: each
failed net is named in a WARNING line on the console and in its training log, Figs. 1-2
leave the diverged nets out and say so under the figure and in their statistics, and the
claims name them in their reason. A one-class npz is refused when the data are prepared."""
import math

import numpy as np
import pandas as pd
import pytest

from conftest import write_yaml
from singledir.data.sources import load_dataset
from workflow_runs import snakemake, tiny_config

pytestmark = pytest.mark.slow

DIVERGED = ["corruption_f0.0_lr1000000.0_s0", "corruption_f1.0_lr1000000.0_s0"]
AT_CHANCE = ["corruption_f0.0_lr1e-09_s0", "corruption_f1.0_lr1e-09_s0"]
LEARNED = "corruption_f0.0_lr0.05_s0"


def _config(tmp, npz):
    cfg = tiny_config()
    mn = cfg["families"]["mnist"]
    mn["dataset"] = {"source": "npz", "path": str(npz)}
    mn["train"].update(optimizer="sgd")
    mn["experiments"]["corruption"]["grid"] = {"fraction": [0.0, 1.0], "lr": [0.05, 1.0e-9, 1.0e6], "seed": [0]}
    mn["experiments"]["selectivity"]["enabled"] = False
    return write_yaml(cfg, tmp / "failing.yaml")


def _digits(classes):
    d = load_dataset({"source": "sklearn_digits", "test_fraction": 0.25})
    tr, te = np.isin(d.y_train, classes), np.isin(d.y_test, classes)
    return {"x_train": d.x_train[tr], "y_train": d.y_train[tr], "x_test": d.x_test[te], "y_test": d.y_test[te]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failed_nets")
    np.savez(tmp / "two.npz", **_digits([0, 1]))
    work = tmp / "run"
    proc = snakemake(work, "all_figures", configfile=_config(tmp, tmp / "two.npz"))
    return work, proc.stdout + proc.stderr


def test_failed_nets_are_named_on_the_console_and_in_the_training_log(run):
    work, console = run
    for model in DIVERGED:
        line = f"WARNING: {model} failed to train: diverged at epoch 1 (training loss nan)"
        assert line in console
        log = (work / f"results/logs/train_model/mnist/{model}.log").read_text()
        assert line in log and "DIVERGED: the model (seed 0, lr 1e+06, batch 64)" in log
        history = pd.read_csv(work / f"results/models/mnist/{model}/history.csv")
        # its last row is the epoch it diverged in (rows come only at snapshot and final epochs)
        assert history["epoch"].iloc[-1] == 1 and math.isnan(history["train_loss"].iloc[-1])
    for model in AT_CHANCE:  # chance with 2 classes is 0.5
        assert f"WARNING: {model} failed to train: never learned (final training accuracy 0." in console
        assert "< chance 0.5 + 0.05, 2 classes)" in console
    assert f"WARNING: {LEARNED}" not in console


def test_figures_leave_diverged_nets_out_and_say_so(run):
    work, _ = run
    named = "; ".join(f"{m} diverged at epoch 1 (training loss nan)" for m in DIVERGED)
    note = f"excluded 2 of 6 nets: {named}"
    for fig in ("fig1", "fig2"):
        stats = pd.read_csv(work / f"results/stats/mnist/{fig}.csv").set_index("statistic")
        assert stats.loc["networks_failed_excluded", "value"] == 2
        assert stats.loc["networks_failed_excluded", "note"] == note
        assert stats.loc["networks_used", "value"] == 4
        assert note in (work / f"results/logs/figures/{fig}_mnist.log").read_text()  # the text under the figure
        table = pd.read_csv(work / f"results/{fig}_mnist.csv")
        assert set(table["model"]) == {f"corruption_f{f}_lr{lr}_s0" for f in ("0.0", "1.0") for lr in ("0.05", "1e-09")}
        assert np.isfinite(table["accuracy"]).all()


def test_claims_name_the_excluded_nets_in_their_reason(run):
    work, _ = run
    claims = pd.read_csv(work / "results/claims.csv").set_index("claim_id")
    for claim in ("fig1a_auc_vs_corruption", "fig2a_noise_vs_corruption"):
        assert "excluded 2 of 6 nets: corruption_f0.0_lr1000000.0_s0 diverged at epoch 1" in claims.loc[claim, "reason"]


def test_one_class_npz_is_refused_when_the_data_are_prepared(tmp_path):
    np.savez(tmp_path / "one.npz", **_digits([0]))
    failed = snakemake(tmp_path / "run", "results/data/mnist/dataset.npz",
                       configfile=_config(tmp_path, tmp_path / "one.npz"), check=False)
    assert failed.returncode != 0
    msg = (f"DataError: dataset.path: {tmp_path / 'one.npz'}: array 'y_train': the data have 1 class; this pipeline "
           "trains classifiers and needs at least 2 classes")
    assert msg in failed.stdout + failed.stderr
    assert not (tmp_path / "run/results/data/mnist/dataset.npz").exists()
