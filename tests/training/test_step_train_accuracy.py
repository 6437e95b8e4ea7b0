"""Step-based (ImageNet) training records its training accuracy in eval mode on a fixed,
seeded subset of the training images with the net's own labels
(singledir.training.distributed.evaluate_train_subset), and keeps the train-mode window
numbers in their own columns."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from conftest import write_image_folder
from singledir.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, analysis_subset, scan
from singledir.io import save_csv
from singledir.models.resnet import build_torchvision
from singledir.training.core import TrainConfig, history_frame
from singledir.training.distributed import run_job, write_job

QUIET = lambda *a: None  # noqa: E731
MODEL = {"arch": "torchvision", "name": "resnet18", "width": 0.0625}  # batch norm after every convolution
CLASSES = ("a", "b", "c", "d")
PER_CLASS = 3


def _data(tmp_path):
    """A 4-class image folder (8 training images per class), its index, and a labels file in
    which every training image has a wrong label ((true + 1) mod 4): the net's training labels."""
    root = tmp_path / "imgs"
    if not root.exists():
        write_image_folder(root, classes=CLASSES, n_train=8, n_val=2, size=18)
        index, _ = scan({"source": "imagefolder", "root": str(root)})
        save_csv(index, tmp_path / "index.csv.gz")
        true = index.loc[index["split"] == "train", "target"].to_numpy()
        np.savez(tmp_path / "labels.npz", labels=(true + 1) % len(CLASSES))
    return root, pd.read_csv(tmp_path / "index.csv.gz")


def _job(tmp_path, name, **train):
    root, _ = _data(tmp_path)
    base = dict(steps=6, batch_size=4, workers=2, optimizer="sgd", lr=0.05, momentum=0.9, augment=True, seed=3,
                checkpoint_every=3, log_every=2, eval_train_per_class=PER_CLASS)
    base.update(train)
    job = {"id": name, "model": MODEL, "train": base,
           "dataset": {"source": "imagefolder", "image_size": 16, "resize_size": 16}, "root": str(root),
           "index": str(tmp_path / "index.csv.gz"), "labels": str(tmp_path / "labels.npz"),
           "work_dir": str(tmp_path / "work" / name), "device": "cpu", "threads": 1}
    return write_job(job, tmp_path / f"{name}.json")


def _independent_batch(tmp_path):
    """The analysis's training subset at PER_CLASS per class (seed 0) as one batch, loaded
    here with PIL and torchvision (eval transform: resize, center crop), with the training
    labels of the labels file and the true targets."""
    root, index = _data(tmp_path)
    sub = analysis_subset(index, PER_CLASS, 0, 0)
    sub = sub[sub["split"] == "train"]
    tf = T.Compose([T.Resize(16), T.CenterCrop(16), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    x = torch.stack([tf(Image.open(root / p).convert("RGB")) for p in sub["path"]])
    with np.load(tmp_path / "labels.npz") as f:
        trained_on = torch.as_tensor(f["labels"][sub["index"].to_numpy()])
    return x, trained_on, torch.tensor(sub["target"].to_numpy())


def test_final_training_accuracy_is_eval_mode_on_the_fixed_subset_with_the_training_labels(tmp_path):
    history = run_job(_job(tmp_path, "run"), log=QUIET)
    assert history["step"].tolist() == [2, 4, 6]
    # Every row keeps the train-mode window; only the final row holds the eval-mode numbers.
    assert history[["train_window_loss", "train_window_accuracy", "train_window_top5"]].notna().all().all()
    assert history[["train_loss", "train_accuracy", "train_top5"]].iloc[:-1].isna().all().all()
    last = history.iloc[-1]

    state = torch.load(tmp_path / "work" / "run" / "resume.pt", map_location="cpu", weights_only=False)
    assert state["history"][-1]["train_accuracy"] == last["train_accuracy"]  # what model.pt's history.csv gets
    model = build_torchvision({k: v for k, v in MODEL.items() if k != "arch"}, len(CLASSES))
    model.load_state_dict(state["model"])
    x, trained_on, true = _independent_batch(tmp_path)
    assert len(x) == PER_CLASS * len(CLASSES) and bool((trained_on != true).all())
    with torch.no_grad():
        logits = model.eval()(x)
        top5 = logits.topk(4, dim=1).indices  # 4 classes: top-5 is every class
        eval_loss = F.cross_entropy(logits, trained_on).item()
        train_mode_loss = F.cross_entropy(model.train()(x), trained_on).item()
    assert last["train_accuracy"] == (logits.argmax(1) == trained_on).float().mean().item()
    assert last["train_loss"] == pytest.approx(eval_loss, rel=1e-5, abs=1e-6)
    assert last["train_top5"] == (top5 == trained_on[:, None]).any(1).float().mean().item() == 1.0
    # It could have been otherwise: batch norm on batch statistics gives another loss, and
    # so do the true labels (the net is judged on the labels it was trained on).
    assert abs(train_mode_loss - eval_loss) > 1e-3
    assert abs(F.cross_entropy(logits, true).item() - eval_loss) > 1e-3


def test_same_config_and_seed_give_the_same_history_and_weights_on_the_cpu(tmp_path):
    a = run_job(_job(tmp_path, "a"), log=QUIET)
    b = run_job(_job(tmp_path, "b"), log=QUIET)
    # images_per_s is wall-clock speed, the one column that is not a result
    pd.testing.assert_frame_equal(a.drop(columns="images_per_s"), b.drop(columns="images_per_s"))
    assert math.isfinite(a["train_accuracy"].iloc[-1])
    sa, sb = (torch.load(tmp_path / "work" / n / "resume.pt", weights_only=False)["model"] for n in "ab")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # A saved history reloads to the same frame (the schema's columns, in order).
    pd.testing.assert_frame_equal(history_frame(torch.load(tmp_path / "work" / "a" / "resume.pt",
                                                           weights_only=False)["history"]), a)


def test_the_subset_size_is_checked_with_the_key_named():
    assert TrainConfig(steps=1).eval_train_per_class == 10
    assert TrainConfig(steps=1, eval_train_per_class=0).eval_train_per_class == 0  # 0: every training image
    with pytest.raises(ValueError, match=r"train.eval_train_per_class must be at least 0 .*got -1"):
        TrainConfig(steps=1, eval_train_per_class=-1)
