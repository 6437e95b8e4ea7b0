"""Bad data and damaged files, through the workflow as a user meets them: a bad npz stops
prepare_dataset with one message naming the file and array; an npz replaced at the same
path is noticed; a truncated model.pt names itself and the one command that retrains it,
and that command recovers (with byte-identical weights: training is deterministic and
torch files are written byte for byte the same). Round two (issue 31): a broken npz, an
input inside results/, a YAML error or a pipe as --configfile, an image that does not decode:
each stops with one line naming the file."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, SNAKEMAKE, load_yaml, write_image_folder, write_yaml
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


# --- round two (issue 31): bad input met at the workflow's start, through Snakemake ------

def _npz_run_config(tmp_path, path) -> "os.PathLike":
    cfg = tiny_config()
    cfg["families"]["mnist"]["dataset"] = {"source": "npz", "path": str(path)}
    return write_yaml(cfg, tmp_path / "c.yaml")


@pytest.mark.parametrize("case", ["not_zip", "one_dimensional", "objects"])
def test_bad_npz_stops_the_workflow_before_the_plan_summary(tmp_path, case):
    """Before: BadZipFile, IndexError from the plan summary's FLOP count, or numpy's
    allow_pickle error, none naming the file. The summary runs here (it is what failed)."""
    src = tmp_path / "data.npz"
    if case == "not_zip":
        src.write_text("not an archive")
        message = f"families.mnist.dataset.path: {src} is not a readable npz archive (BadZipFile: File is not a zip file)"
    elif case == "one_dimensional":
        np.savez(src, x=np.zeros(64 * 10, np.uint8), y=np.arange(10))
        message = f"families.mnist.dataset.path: {src}: array 'x' has shape (640,); images must be (N, H, W)"
    else:
        np.savez(src, x=np.array([np.zeros((8, 8))] * 9 + [np.zeros(3)], dtype=object), y=np.arange(10))
        message = f"families.mnist.dataset.path: {src}: array 'x' holds Python objects (pickled)"
    proc = snakemake(tmp_path, "-n", "all_figures", configfile=_npz_run_config(tmp_path, src), check=False,
                     env={"SINGLEDIR_QUIET_PLAN": ""})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out
    assert "Plan of" not in out  # stopped before the cost model read the file
    for raw in ("BadZipFile: File", "IndexError", "allow_pickle=False"):
        assert raw not in out.replace("(BadZipFile: File is not a zip file)", "")


def test_an_input_inside_results_is_refused_and_kept(tmp_path):
    """Before: validation skipped, and `snakemake -f` on the path deleted the only copy."""
    src = tmp_path / "results" / "data" / "mnist" / "dataset.npz"
    src.parent.mkdir(parents=True)
    _digits_npz(src)
    before = src.read_bytes()
    cfg = _npz_run_config(tmp_path, "results/data/mnist/dataset.npz")
    for args in (["-n", "all_figures"], ["-f", "results/data/mnist/dataset.npz"]):
        proc = snakemake(tmp_path, *args, configfile=cfg, check=False)
        assert proc.returncode != 0
        assert ("families.mnist.dataset.path: results/data/mnist/dataset.npz is inside the results directory "
                "results/, which the pipeline owns") in proc.stdout + proc.stderr
    assert src.read_bytes() == before


def test_yaml_syntax_error_in_a_configfile_points_at_the_plan_command(tmp_path):
    """Snakemake parses --configfile itself, before the workflow's code runs, and names no
    file or line; the troubleshooting table quotes its message and gives the command that does."""
    path = tmp_path / "broken.yaml"
    path.write_text("scale: x\nfamilies:\n  mnist:\n    label: [MNIST\n    enabled: true\n")
    proc = snakemake(tmp_path, "-n", configfile=path, check=False)
    snakemake_says = "Config file is not valid JSON or YAML"
    assert proc.returncode != 0 and snakemake_says in proc.stdout + proc.stderr
    docs = (REPO / "docs" / "troubleshooting.md").read_text()
    assert snakemake_says in docs and "python -m singledir.pipeline.plan" in docs
    assert snakemake_says in (REPO / "README.md").read_text()
    plan = subprocess.run([sys.executable, "-m", "singledir.pipeline.plan", str(path), "--no-jobs"],
                          capture_output=True, text=True, timeout=300)
    assert plan.returncode == 1 and f"error: {path}, line 5, column 12: not valid YAML" in plan.stderr


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_process_substitution_configfile(tmp_path, form):
    """`--configfile <(...)`: Snakemake itself fails on a YAML pipe (it reads the file as JSON
    first, then cannot seek back: io.UnsupportedOperation, documented); a JSON pipe gets past
    Snakemake, and the workflow refuses it with one line (its second read would be empty)."""
    cfg = tiny_config()
    src = tmp_path / f"c.{form}"
    src.write_text(json.dumps(cfg) if form == "json" else yaml.safe_dump(cfg))
    cmd = (f"{SNAKEMAKE} -s {REPO / 'Snakefile'} -d {tmp_path} --cores 1 -n all_figures "
           f"--configfile <(cat {src})")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    if form == "yaml":
        assert "io.UnsupportedOperation" in out
        assert "io.UnsupportedOperation" in (REPO / "docs" / "troubleshooting.md").read_text()
    else:
        assert re.search(r"/dev/fd/\d+: not a regular file \(a pipe, as `--configfile <\(\.\.\.\)` gives\)", out)
        assert "Write the config to a file first" in out


def test_an_image_that_does_not_decode_stops_the_index_job_with_its_path(tmp_path):
    """Before: the index job passed, and training died later with `OSError: Truncated File
    Read` and no file name."""
    root = tmp_path / "images"
    spec = write_image_folder(root)
    png = root / "train" / "dog" / "dog_2.png"
    png.write_bytes(png.read_bytes()[:60])  # cut short, as an interrupted copy leaves it
    cfg = load_yaml(REPO / "config" / "demo.yaml")
    for name, fam in cfg["families"].items():
        fam["enabled"] = name == "imagenet"
    cfg["families"]["imagenet"]["dataset"] = spec
    configfile = write_yaml(cfg, tmp_path / "images.yaml")
    index = "results/data/imagenet/index.csv.gz"
    proc = snakemake(tmp_path, index, configfile=configfile, check=False)
    out = proc.stdout + proc.stderr
    listed = tmp_path / "results/logs/image_index/imagenet.unreadable.txt"
    assert proc.returncode != 0
    assert (f"DataError: dataset.root: 1 of 24 images under {root} do not decode (e.g. train/dog/dog_2.png: "
            in out)
    assert f"all are listed in results/logs/image_index/imagenet.unreadable.txt" in out
    assert listed.read_text().startswith("train/dog/dog_2.png\t")
    assert "decoded 24/24 images (100 %, 1 unreadable)" in (tmp_path / "results/logs/image_index/imagenet.log").read_text()
    assert not (tmp_path / index).exists()
    png.unlink()  # removed: the index is made, the list goes
    snakemake(tmp_path, index, configfile=configfile)
    assert (tmp_path / index).exists() and not listed.exists()
