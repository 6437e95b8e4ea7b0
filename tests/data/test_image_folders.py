"""The imagenet family's data (singledir.data.imagenet), on tiny image folders written here."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import REPO, load_yaml, write_image_folder
from singledir.pipeline import plan
from singledir.data.sources import DataError
from singledir.data.imagenet import (IndexedImages, analysis_subset, balanced_subset, check_layout, config_problems,
                                dataset_transform, scan)
from singledir.models.activations import collect_activations
from singledir.models.resnet import build_torchvision
from singledir.analysis.selectivity import spatial_average


def test_scan_lists_every_image_of_both_splits(tmp_path):
    spec = write_image_folder(tmp_path / "imgs")
    index, classes = scan(spec)
    assert index.groupby("split").size().to_dict() == {"train": 15, "val": 9}
    assert classes["folder"].tolist() == ["cat", "dog", "eel"]
    train = index[index["split"] == "train"]
    assert train["target"].tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert train["path"].iloc[5] == "train/dog/dog_0.png"  # relative to the root
    (tmp_path / "imgs" / "val" / "fox").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "imgs" / "val" / "fox" / "x.png")
    with pytest.raises(DataError, match="different class folders"):
        scan(spec)


def test_missing_data_is_one_clear_error_with_the_layout(tmp_path):
    spec = {"source": "imagefolder", "root": str(tmp_path / "nowhere")}
    with pytest.raises(DataError) as err:
        check_layout(spec)
    msg = str(err.value)
    assert "dataset.root" in msg and "does not exist" in msg
    assert "<root>/train/<class_a>/<image>.jpg" in msg
    (tmp_path / "nowhere" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="val is missing or has no class folders"):
        check_layout(spec)
    (tmp_path / "nowhere" / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="meta.bin") as err:
        check_layout(dict(spec, source="imagenet"))
    assert "ILSVRC2012_img_train.tar" in str(err.value) and "n01440764" in str(err.value)
    (tmp_path / "nowhere" / "meta.bin").touch()
    check_layout(dict(spec, source="imagenet"))


def test_balanced_subset_is_seeded_and_recorded():
    targets = np.repeat([0, 1, 2], [10, 4, 7])
    a = balanced_subset(targets, 5, seed=3)
    assert a.groupby("target").size().to_dict() == {0: 5, 1: 4, 2: 5}  # a small class gives all it has
    assert (targets[a["index"]] == a["target"]).all()
    assert a.groupby("target")["rank"].apply(list).to_dict()[0] == [0, 1, 2, 3, 4]
    assert a.equals(balanced_subset(targets, 5, seed=3))
    assert not a["index"].equals(balanced_subset(targets, 5, seed=4)["index"])
    # rank < k of a larger subset is a smaller balanced subset with the same images.
    big = balanced_subset(targets, 8, seed=3)
    assert big[big["rank"] < 5]["index"].tolist() == a["index"].tolist()
    assert len(balanced_subset(targets, 0, seed=0)) == len(targets)  # 0 = every image
    index = pd.DataFrame({"split": ["train"] * 21 + ["val"] * 6, "path": [f"p{i}" for i in range(27)],
                          "target": np.concatenate([targets, [0, 0, 1, 1, 2, 2]])})
    sub = analysis_subset(index, 2, 1, seed=0)
    assert list(sub.columns) == ["split", "index", "path", "target", "rank"]
    assert sub.groupby("split").size().to_dict() == {"train": 6, "val": 3}
    val = sub[sub["split"] == "val"]
    assert val["path"].tolist() == [f"p{21 + i}" for i in val["index"]]


def test_images_transforms_and_seeded_augmentation(tmp_path):
    spec = write_image_folder(tmp_path / "imgs")
    index, _ = scan(spec)
    train = index[index["split"] == "train"]
    plain = IndexedImages(spec["root"], train["path"], train["target"], dataset_transform(spec, False), cache=True)
    x, y = plain[7]
    assert x.shape == (3, 16, 16) and y == 1
    assert abs(float(x.mean())) < 5  # normalized with the ImageNet statistics
    assert plain[(7, 123)][0] is plain[7][0]  # cached; the seed is ignored without augmentation
    aug = IndexedImages(spec["root"], train["path"], train["target"], dataset_transform(spec, True),
                        random_transform=True)
    a, b, c = aug[(7, 1)][0], aug[(7, 1)][0], aug[(7, 2)][0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="needs a seed"):
        aug[7]
    with pytest.raises(ValueError, match="cannot be cached"):
        IndexedImages(spec["root"], [], [], None, random_transform=True, cache=True)


def test_spatial_means_equal_the_plain_definition():
    torch.manual_seed(0)
    model = build_torchvision({"name": "resnet18", "width": 0.125}, 3).eval()
    x = torch.randn(10, 3, 32, 32)
    y = torch.arange(10) % 3
    layers = ["relu", "layer2.1.relu2", "layer4.1.relu1"]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    means, labels = collect_activations(model, loader, layers, spatial=True)
    full, no_labels = collect_activations(model, x, layers, chunk_size=3)
    assert no_labels is None
    for n in layers:
        np.testing.assert_allclose(means[n], spatial_average(full[n].numpy()), rtol=1e-5, atol=1e-6)
    assert labels.tolist() == y.tolist()


def test_config_checks():
    for name in ("config.yaml", "demo.yaml"):
        cfg = load_yaml(REPO / "config" / name)
        plan.check_config(cfg)
        specs = {exp: plan.experiment_specs(cfg, "imagenet", exp) for exp in plan.enabled_experiments(cfg, "imagenet")}
        assert config_problems(cfg, specs) == []
    cfg = load_yaml(REPO / "config" / "config.yaml")
    imnet = cfg["families"]["imagenet"]
    assert imnet["analysis"]["topk"] == 5
    assert all(s["train"]["augment"] is False for s in plan.experiment_specs(cfg, "imagenet", "corruption").values())
    assert f"results/fig7_imagenet.pdf" in plan.figure_targets(cfg)
    bad = copy.deepcopy(cfg)
    bad["families"]["imagenet"]["experiments"]["corruption"]["train"]["augment"] = True
    with pytest.raises(plan.ConfigError, match="no augmentation"):
        plan.check_config(bad)
    bad = copy.deepcopy(cfg)
    bad["families"]["imagenet"]["train"]["workers"] = 12
    with pytest.raises(plan.ConfigError, match="cannot be split over 8"):
        plan.check_config(bad)
    bad = copy.deepcopy(cfg)
    bad["families"]["imagenet"]["analysis"]["unit_layers"] = ["layer4.2.relu"]
    with pytest.raises(plan.ConfigError, match="unknown layer 'layer4.2.relu'"):
        plan.check_config(bad)


def test_index_refuses_empty_class_folders_and_empty_images(tmp_path):
    spec = write_image_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "fox").mkdir()
    (tmp_path / "imgs" / "val" / "fox").mkdir()
    with pytest.raises(DataError, match=r"train has class folders without images \(.*fox.*\); add the images or "
                                        "remove the empty folders"):
        scan(spec)
    (tmp_path / "imgs" / "train" / "fox").rmdir()
    (tmp_path / "imgs" / "val" / "fox").rmdir()
    (tmp_path / "imgs" / "val" / "dog" / "dog_1.png").write_bytes(b"")  # an interrupted copy
    with pytest.raises(DataError, match=r"1 image files under .*imgs are empty \(0 bytes\), e\.g\. "
                                        r"\['val/dog/dog_1.png'\]; .*copy them again"):
        scan(spec)


def test_index_check_compares_targets_with_the_classes(tmp_path):
    from singledir.data.imagenet import check_index

    spec = write_image_folder(tmp_path / "imgs")
    index, classes = scan(spec)
    check_index(index, classes, spec)
    with pytest.raises(DataError, match=r"the val split has no images of 1 classes \(e\.g\. \['eel'\]\)"):
        check_index(index[~((index["split"] == "val") & (index["target"] == 2))], classes, spec)
    with pytest.raises(DataError, match=r"1 images have targets outside the 3 classes"):
        check_index(index.assign(target=index["target"].where(index.index != 0, 3)), classes, spec)


def test_analysis_data_of_an_image_index_is_the_recorded_subset(tmp_path):
    """singledir.data.access on the image form: the subset's training images with the
    trained (corrupted) labels, impact images = the first impact_per_class of each class,
    test activations = spatial means; the true training labels come from the index."""
    from singledir.data.access import IMAGES, data_form, open_analysis_data, training_targets
    from singledir.data.imagenet import analysis_subset, read_index
    from singledir.io import save_csv

    spec = write_image_folder(tmp_path / "imgs")
    index, _ = scan(spec)
    save_csv(index, tmp_path / "index.csv.gz")
    subset = analysis_subset(read_index(tmp_path / "index.csv.gz"), 2, 0, seed=0)
    save_csv(subset, tmp_path / "subset.csv")
    true = training_targets(tmp_path / "index.csv.gz")
    assert true.tolist() == [0] * 5 + [1] * 5 + [2] * 5 and data_form(spec) == IMAGES
    labels = (true + 1) % 3  # every label changed
    np.savez(tmp_path / "labels.npz", labels=labels)
    files = {"index": str(tmp_path / "index.csv.gz"), "labels": str(tmp_path / "labels.npz"),
             "subset": str(tmp_path / "subset.csv")}
    data = open_analysis_data(files, "cpu", dataset_cfg=spec, impact_per_class=1, chunk_size=4)
    x, y = data.training_examples(eval_examples=3, seed=0)  # the subset already is the sample
    train = subset[subset["split"] == "train"]
    assert x.shape == (6, 3, 16, 16) and y.tolist() == labels[train["index"].to_numpy()].tolist()
    x_imp, y_imp = data.impact_examples()
    assert y_imp.tolist() == [0, 1, 2] and data.n_classes == 3
    model = build_torchvision({"name": "resnet18", "width": 0.125}, 3).eval()
    means, y_test = data.test_activations(model, ["layer4.1.relu2"], 4, "cpu")
    assert means["layer4.1.relu2"].shape == (9, 64) and y_test.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    with pytest.raises(ValueError, match=r"missing \['subset'\]"):
        open_analysis_data({k: v for k, v in files.items() if k != "subset"}, "cpu", dataset_cfg=spec)
