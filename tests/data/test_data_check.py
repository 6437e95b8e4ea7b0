"""Bad input files, fed through ``python -m singledir.pipeline.plan`` (what the workflow runs at
its start, before the cost model reads the data's size): each stops with one line naming the
file, the array or the key, and the fix. And the image index job's decoding check."""
import copy
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_yaml, write_image_folder, write_yaml
from singledir.data.check import check_dataset, check_images, unreadable_images
from singledir.data.sources import DataError
from singledir.pipeline import cost
from singledir.pipeline.plan.__main__ import main as plan_main

DEMO = load_yaml(REPO / "config" / "demo.yaml")


def _npz_config(tmp_path, dataset: dict, name="c.yaml"):
    cfg = copy.deepcopy(DEMO)
    cfg["families"] = {"mnist": cfg["families"]["mnist"]}
    cfg["families"]["mnist"]["dataset"] = dataset
    return write_yaml(cfg, tmp_path / name)


def _plan(capsys, *argv) -> tuple[int, str]:
    """``python -m singledir.pipeline.plan ARGV --no-jobs``, in this process: (exit code, stderr)."""
    rc = plan_main([*map(str, argv), "--no-jobs"])
    return rc, capsys.readouterr().err


def _good(path, **replace):
    arrays = {"x": np.zeros((40, 8, 8), np.uint8), "y": np.arange(40) % 4}
    arrays.update(replace)
    np.savez(path, **arrays)
    return path


def _truncated(path):
    _good(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_zip(path):
    path.write_text("x,y\n1,2\n")


def _one_dimensional(path):
    _good(path, x=np.zeros(40 * 64, np.uint8))


def _objects(path):
    _good(path, x=np.array([np.zeros((8, 8))] * 39 + [np.zeros((4, 4))], dtype=object))


def _one_hot(path):
    _good(path, y=np.eye(4, dtype=np.int64)[np.arange(40) % 4])


def _short_labels(path):
    _good(path, y=np.arange(30) % 4)


def _missing_array(path):
    np.savez(path, images=np.zeros((40, 8, 8), np.uint8), labels=np.arange(40) % 4)


BAD_NPZ = [
    (_not_zip, "{p} is not a readable npz archive (BadZipFile: File is not a zip file): it is truncated, or not an npz "
               "file; write it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"),
    (_truncated, "{p} is not a readable npz archive (BadZipFile: File is not a zip file): it is truncated"),
    (_one_dimensional, "{p}: array 'x' has shape (2560,); images must be (N, H, W), (N, H, W, C) or (N, C, H, W)"),
    (_objects, "{p}: array 'x' holds Python objects (pickled); the npz source reads numbers only"),
    (_one_hot, "{p}: array 'y' has shape (40, 4); labels must be one class number per image (shape (N,)), not "
               "one-hot rows (use y.argmax(1))"),
    (_short_labels, "{p}: arrays 'x' and 'y' differ in length: 40 images but 30 labels"),
    (_missing_array, "dataset.arrays: {p} has arrays ['images', 'labels']; expected x_train/y_train/x_test/y_test "
                     "or x/y (set dataset.arrays)"),
]


@pytest.mark.parametrize("write, message", BAD_NPZ, ids=[w.__name__.strip("_") for w, _ in BAD_NPZ])
def test_bad_npz_stops_the_plan_with_one_line(tmp_path, capsys, write, message):
    path = tmp_path / "data.npz"
    write(path)
    cfg = _npz_config(tmp_path, {"source": "npz", "path": str(path)})
    rc, err = _plan(capsys, cfg)
    assert rc == 1
    assert err.startswith(f"error: {cfg}: families.mnist.")
    assert message.format(p=path) in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    # the cost model never saw the file: the same check guards its header reading
    with pytest.raises(DataError, match="^dataset"):
        check_dataset({"source": "npz", "path": str(path)})


def test_a_good_npz_passes_and_the_cost_model_reads_its_size(tmp_path, capsys):
    path = _good(tmp_path / "data.npz")
    cfg = _npz_config(tmp_path, {"source": "npz", "path": str(path), "test_fraction": 0.25})
    rc = plan_main([str(cfg), "--no-jobs"])
    assert rc == 0
    assert "data.npz 30/10, 1x8x8" in capsys.readouterr().out  # the plan summary's dataset column
    size = cost.dataset_size({"source": "npz", "path": str(path), "test_fraction": 0.25})
    assert (size.n_train, size.n_test, size.shape) == (30, 10, (1, 8, 8))


def test_a_damaged_member_is_found_when_the_data_are_prepared(tmp_path):
    path = _good(tmp_path / "data.npz", x=np.zeros((4000, 8, 8), np.uint8), y=np.arange(4000) % 4)
    data = bytearray(path.read_bytes())
    data[100_000:100_010] = b"\xff" * 10  # inside x's bytes, past its header: headers read, the checksum fails
    path.write_bytes(bytes(data))
    check_dataset({"source": "npz", "path": str(path)})  # the workflow-start check reads headers only
    with pytest.raises(DataError, match=rf"^dataset.path: {path}: array x.npy is damaged"):
        check_dataset({"source": "npz", "path": str(path)}, read_all=True)  # prepare_dataset's check


@pytest.mark.parametrize("key, source", [("path", "npz"), ("root", "imagefolder"), ("root", "torchvision")])
def test_an_input_inside_results_is_refused(tmp_path, capsys, monkeypatch, key, source):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "data").mkdir(parents=True)
    inside = _good(tmp_path / "results" / "data" / "mine.npz") if key == "path" else tmp_path / "results" / "data"
    dataset = {"source": source, key: str(inside)}
    if source == "torchvision":
        dataset["name"] = "MNIST"
    if source == "imagefolder":  # the imagenet family reads image folders
        cfg = copy.deepcopy(DEMO)
        cfg["families"] = {"imagenet": cfg["families"]["imagenet"]}
        cfg["families"]["imagenet"]["dataset"] = dataset
        cfgfile = write_yaml(cfg, tmp_path / "c.yaml")
        family = "imagenet"
    else:
        cfgfile = _npz_config(tmp_path, dataset)
        family = "mnist"
    rc, err = _plan(capsys, cfgfile)
    assert rc == 1
    assert (f"families.{family}.dataset.{key}: {inside} is inside the results directory results/, which the pipeline "
            f"owns (a forced rerun deletes and rewrites what is there). Move the data out of results/") in err
    # through a symbolic link too
    (tmp_path / "elsewhere").symlink_to(tmp_path / "results")
    with pytest.raises(DataError, match="is inside the results directory"):
        check_dataset(dict(dataset, **{key: str(tmp_path / "elsewhere" / inside.relative_to(tmp_path / "results"))}))
    # beside it is fine
    check_dataset({"source": "sklearn_digits", "path": str(tmp_path / "results_old" / "x.npz")})


def test_a_generated_stand_in_in_results_is_not_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_dataset({"source": "imagefolder", "generate": "sklearn_digits", "root": "results/data/imagenet/standin"})


# --- config values and files that YAML reads differently from what was meant ------------

def test_a_number_yaml_reads_as_text_gets_the_spelling_that_works(tmp_path, capsys):
    path = _npz_config(tmp_path, DEMO["families"]["mnist"]["dataset"])
    text = path.read_text()
    lines = text.splitlines()
    # the family's lr (a plain `lr: 0.05`-style line under train:, indented 6)
    i = next(i for i, line in enumerate(lines) if line.startswith("      lr: "))
    lines[i] = "      lr: 1e-3"
    path.write_text("\n".join(lines) + "\n")
    rc, err = _plan(capsys, path)
    assert rc == 1
    assert (f"error: {path}, line {i + 1}: families.mnist.train.lr: '1e-3' is not of type 'number'; YAML reads "
            "1e-3 as text (a number needs a dot and a signed exponent): write 1.0e-3 or 0.001") in err
    assert len(err.strip().splitlines()) == 1


def test_process_substitution_is_refused_with_one_line(tmp_path):
    """``--configfile <(...)`` is a pipe that gives its content once; the config is read
    more than once (Snakemake, the check, every job). Through bash, as a user types it."""
    cfg = _npz_config(tmp_path, DEMO["families"]["mnist"]["dataset"])
    proc = subprocess.run(["bash", "-c", f"{sys.executable} -m singledir.pipeline.plan <(cat {cfg}) --no-jobs"],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 1
    assert "not a regular file (a pipe, as `--configfile <(...)` gives)" in proc.stderr
    assert "Write the config to a file first (`... > my.yaml`) and pass --configfile my.yaml" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --- image folders: every image decoded by the index job ---------------------------------

def _damage(root):
    """Two unreadable images: a PNG cut short (as an interrupted copy leaves it) and a text file named .jpg."""
    png = root / "train" / "dog" / "dog_2.png"
    data = png.read_bytes()
    png.write_bytes(data[: len(data) // 2])
    (root / "val" / "cat" / "cat_9.jpg").write_text("not an image")
    return ["train/dog/dog_2.png", "val/cat/cat_9.jpg"]


def test_unreadable_images_are_listed_with_their_paths(tmp_path):
    spec = write_image_folder(tmp_path / "images")
    root = tmp_path / "images"
    bad = _damage(root)
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*.*"))
    lines = []
    found = unreadable_images(root, paths, threads=2, log=lines.append)
    assert [p for p, _ in found] == sorted(bad)
    assert all(why.split(":")[0] in ("OSError", "UnidentifiedImageError", "SyntaxError") for _, why in found), found
    assert lines[-1].startswith(f"decoded {len(paths)}/{len(paths)} images (100 %, 2 unreadable) in ")
    # one thread finds the same
    assert unreadable_images(root, paths, threads=1, log=lambda _: None) == found
    report = tmp_path / "logs" / "index.unreadable.txt"
    with pytest.raises(DataError) as err:
        check_images(root, paths, report, threads=2, log=lambda _: None)
    text = str(err.value)
    assert text.startswith(f"dataset.root: 2 of {len(paths)} images under {root} do not decode (e.g. {sorted(bad)[0]}: ")
    assert f"all are listed in {report}. Copy them again from the source, or delete them, then rerun" in text
    assert len(text.splitlines()) == 1
    assert [line.split("\t")[0] for line in report.read_text().splitlines()] == sorted(bad)
    # repaired: the check passes and the old list goes
    for p in bad:
        (root / p).unlink()
    check_images(root, [p for p in paths if p not in bad], report, threads=2, log=lambda _: None)
    assert not report.exists()
    assert spec["root"] == str(root)


def test_training_names_an_image_that_stopped_decoding(tmp_path):
    from singledir.data.imagenet import IndexedImages, dataset_transform

    spec = write_image_folder(tmp_path / "images")
    root = tmp_path / "images"
    ds = IndexedImages(root, ["train/cat/cat_0.png", "train/dog/dog_2.png"], [0, 1], dataset_transform(spec, False))
    assert ds[0][0].shape == (3, 16, 16)
    _damage(root)
    with pytest.raises(DataError, match=rf"^image {root / 'train/dog/dog_2.png'} does not decode \(OSError: "):
        ds[1]
    assert Image.open(root / "train/cat/cat_0.png").size == (20, 20)
