"""Bad data and damaged files, through the workflow as a user meets them: a bad npz stops
prepare_dataset with one message naming the file and array; an npz replaced at the same
path is noticed; a truncated model.pt names itself and the one command that retrains it,
and that command recovers (with byte-identical weights: training is deterministic and
torch files are written byte for byte the same)."""
import os
import re

import numpy as np
import pytest
import torch

from conftest import write_yaml
from singledir.data.sources import load_dataset
from workflow_runs import planned_jobs, snakemake, tiny_config

pytestmark = pytest.mark.slow

DATASET = "results/data/mnist/dataset.npz"
MODEL = "results/models/mnist/selectivity_s0/model.pt"
UNITS = "results/analysis/mnist/selectivity_s0/units.csv"


def _digits_npz(path, **replace):
    d = load_dataset({"source": "sklearn_digits", "test_fraction": 0.25})
    arrays = {"x_train": d.x_train, "y_train": d.y_train, "x_test": d.x_test, "y_test": d.y_test}
    arrays.update(replace)
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One selectivity model trained on an npz archive, and its unit analysis."""
    tmp = tmp_path_factory.mktemp("badinput")
    src = tmp / "digits.npz"
    _digits_npz(src)
    cfg = tiny_config()
    mn = cfg["families"]["mnist"]
    mn["dataset"] = {"source": "npz", "path": str(src)}
    mn["train"].update(epochs=2)
    for name, exp in mn["experiments"].items():
        exp["enabled"] = name == "selectivity"
    configfile = write_yaml(cfg, tmp / "npz.yaml")
    work = tmp / "run"
    snakemake(work, UNITS, configfile=configfile)
    return work, configfile, src


def test_truncated_model_names_itself_and_the_command_that_retrains_it(run):
    work, configfile, _ = run
    model = work / MODEL
    good = model.read_bytes()
    model.write_bytes(good[: len(good) // 2])
    failed = snakemake(work, UNITS, configfile=configfile, check=False)
    assert failed.returncode != 0
    log = (work / "results/logs/unit_analysis/mnist/selectivity_s0.log").read_text()
    out = failed.stdout + failed.stderr + log
    assert f"{MODEL} does not load (" in out
    assert f"adding `--forcerun {MODEL}` to the snakemake command you ran" in out
    # The command the message gives: retrains the model and remakes what was made from it.
    redo = snakemake(work, "--forcerun", MODEL, UNITS, configfile=configfile)
    assert re.search(r"train_model\s+1", redo.stdout + redo.stderr)
    assert model.read_bytes() == good  # the same weights, byte for byte
    assert (work / UNITS).exists()
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(work, "-n", UNITS, configfile=configfile))


def test_npz_replaced_at_the_same_path_reruns_what_depends_on_it(run):
    work, configfile, src = run
    assert planned_jobs(snakemake(work, "-n", UNITS, configfile=configfile)) == {}
    os.utime(src)  # touched, same content: nothing to redo
    assert planned_jobs(snakemake(work, "-n", UNITS, configfile=configfile)) == {}
    st = src.stat()
    d = load_dataset({"source": "sklearn_digits", "test_fraction": 0.25})
    _digits_npz(src, x_test=d.x_test[::-1].copy(), y_test=d.y_test[::-1].copy())
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # replaced with the old modification time (cp -p)
    plan = snakemake(work, "-n", UNITS, configfile=configfile)
    jobs = planned_jobs(plan)
    assert jobs.get("prepare_dataset") == 1 and jobs.get("train_model") == 1 and jobs.get("unit_analysis") == 1
    assert "params" in (plan.stdout + plan.stderr).lower()


def test_bad_npz_stops_prepare_dataset_with_one_message(run):
    work, configfile, src = run
    x = load_dataset({"source": "sklearn_digits", "test_fraction": 0.25}).x_train.astype(float)
    x[0, 0, 0, :2] = np.nan
    _digits_npz(src, x_train=x)
    failed = snakemake(work, DATASET, configfile=configfile, check=False)
    assert failed.returncode != 0
    log = (work / "results/logs/prepare_dataset/mnist.log").read_text()
    msg = f"DataError: dataset.path: {src}: array 'x_train' has 2 NaN and 0 infinite values"
    assert msg in log
    assert msg in failed.stdout + failed.stderr  # on the console too, not only in the log
    assert not (work / DATASET).exists()  # Snakemake removed the old one before the job; no new one written
