import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SINGLEDIR_SHARED", REPO.parent / "shared"))  # test data beside the checkout
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# The workflow prints its plan summary (counting FLOPs: a few seconds) at every start;
# the tests that run Snakemake skip it, except tests/pipeline/test_plan.py, which checks it.
os.environ.setdefault("SINGLEDIR_QUIET_PLAN", "1")


# `make test` runs the suite on two pytest-xdist workers (--dist loadgroup): most of its
# time is Snakemake and Python start-up, single-threaded, so one core would idle. Each
# test file runs whole on one worker (its module fixtures are built once); the files
# that share the session's complete tiny run (workflow_runs.complete_tiny_run) share a
# worker, and the longest files start first so that none is left alone at the end (the
# Makefile passes --no-loadscope-reorder: xdist would otherwise hand out the files with the
# most tests first). Every file with a test of a minute or more is listed (`make test`
# prints the 25 slowest tests: keep this list in step with them).
SAME_WORKER = {"test_workflow_rerun": "complete_tiny_run", "test_workflow_slurm": "complete_tiny_run"}
LONGEST_FIRST = ["test_workflow_slurm", "test_workflow_rerun", "test_workflow_real_mnist", "test_resume", "test_workflow_imagenet",
                 "test_unit_stream", "test_workflow_report", "test_workflow_bad_input", "test_config",
                 "test_workflow_submissions", "test_workflow_beyond", "test_workflow_failed_nets", "test_fused",
                 "test_training_cifar_real", "test_workflow_mnist", "test_workflow_profiles", "test_plan",
                 "test_checkpoint", "test_ddp", "test_figure_registry", "test_winograd", "test_walltime",
                 "test_workflow_gpu_grant", "test_workflow_cifar10"]


# `make test-fast` runs the tests that need no Snakemake run (`-m "not slow"`): a test that
# runs or parses the workflow must be marked slow. run_snakemake, workflow_runs.snakemake
# and workflow_runs.workflow_rules call require_slow_marker(), so an unmarked one fails
# at once, in both targets, with the fix named.
_CURRENT = {"slow": True, "name": ""}


@pytest.fixture(autouse=True)
def _note_slow_marker(request):
    _CURRENT.update(slow=request.node.get_closest_marker("slow") is not None, name=request.node.nodeid)
    yield
    _CURRENT.update(slow=True, name="")


def require_slow_marker() -> None:
    """Fail the running test unless it is marked slow (it is about to run Snakemake)."""
    if not _CURRENT["slow"]:
        pytest.fail(f"{_CURRENT['name']} runs Snakemake: mark it @pytest.mark.slow "
                    "(make test-fast runs only the tests that need no Snakemake run)", pytrace=False)


def pytest_collection_modifyitems(config, items):
    def module(item):
        return item.module.__name__.rpartition(".")[2]

    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(module(item), len(rank)))  # stable: file order kept within a file
    for item in items:
        item.add_marker(pytest.mark.xdist_group(SAME_WORKER.get(module(item), module(item))))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test (small convolutions run faster than with two
    threads on busy CI cores); the previous count is restored."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_image_folder(root, classes=("cat", "dog", "eel"), n_train=5, n_val=3, size=20, seed=0):
    """A tiny ImageFolder: <root>/train|val/<class>/*.png with class-dependent colours."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 80, (size, size, 3)) + np.array([60 * c, 0, 120 - 60 * c])
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{name}_{i}.png")
    return {"source": "imagefolder", "root": str(root), "image_size": 16, "resize_size": 18}


def shared_file(name: str) -> Path:
    """A file of ../shared (test data); skips the test when absent."""
    path = SHARED / "data" / name
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared test data lies beside the checkout in CI)")
    return path


def load_yaml(path) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def write_yaml(obj, path) -> Path:
    with open(path, "w") as fh:
        yaml.safe_dump(obj, fh, sort_keys=False)
    return Path(path)


def run_snakemake(workdir, *args, configfile=None, check=True, timeout=900):
    """Run the project's Snakefile with its working directory in ``workdir``."""
    require_slow_marker()
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2"]
    cmd += list(args)
    if configfile:  # last: --configfile takes several values and would swallow targets
        cmd += ["--configfile", str(configfile)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def tiny_mnist_config(tmp_path, **experiments) -> dict:
    """The demo config cut down to a few quick MNIST experiments (others disabled)."""
    cfg = load_yaml(REPO / "config" / "demo.yaml")
    fams = cfg["families"]
    for name in list(fams):
        if name != "mnist":
            fams[name]["enabled"] = False
    mn = fams["mnist"]
    mn["train"]["epochs"] = 15
    mn["analysis"].update(orderings=3, curve_points=6, noise_repeats=2)
    for name, exp in mn["experiments"].items():
        exp["enabled"] = name in experiments
        if name in ("corruption", "dropout"):
            # the demo fuses these; a tiny config trains one job per model unless a test sets fuse
            exp.pop("fuse", None)
        if name in experiments:
            exp.update(experiments[name])
    return cfg
