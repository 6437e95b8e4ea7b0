"""Integration: the imagenet family's rules, on the demo's stand-in and on a fake ImageNet tree."""
import pandas as pd
import pytest
import torch

from conftest import REPO, load_yaml, run_snakemake, write_yaml

FIGURES = [f"results/{f}_imagenet.pdf" for f in ("fig1", "fig7", "figA2", "figA3", "figA4")]


def tiny_imagenet_config() -> dict:
    """The demo config with only the imagenet family, cut down further."""
    cfg = load_yaml(REPO / "config" / "demo.yaml")
    for name, fam in cfg["families"].items():
        fam["enabled"] = name == "imagenet"
    cfg["bootstrap"] = 50
    im = cfg["families"]["imagenet"]
    im["train"].update(steps=60, log_every=20, checkpoint_every=30)
    im["analysis"].update(orderings=3, curve_points=6, train_per_class=10, test_per_class=0, impact_per_class=5)
    im["experiments"]["corruption"]["grid"] = {"fraction": [0.0, 1.0], "seed": [0]}
    return cfg


@pytest.mark.slow
def test_imagenet_demo_dag_draws_all_five_figures(tmp_path):
    cfgfile = write_yaml(tiny_imagenet_config(), tmp_path / "tiny.yaml")
    run_snakemake(tmp_path, *FIGURES, "results/stats/imagenet.csv", configfile=cfgfile)
    res = tmp_path / "results"
    for pdf in FIGURES:
        assert (tmp_path / pdf).read_bytes()[:4] == b"%PDF"
    stats = pd.read_csv(res / "stats" / "imagenet.csv").set_index("statistic")
    for name in ("spearman_auc_vs_corrupted_fraction", "spearman_selectivity_vs_impact",
                 "spearman_selectivity_vs_impact_layer17", "spearman_selectivity_vs_depth",
                 "spearman_selectivity_vs_l1_norm", "spearman_mutual_information_vs_impact",
                 "spearman_mutual_information_vs_impact_layer1"):
        assert name in stats.index, name
    assert stats.loc["spearman_selectivity_vs_impact", "n"] == 488  # feature maps of ResNet-18 at 1/8 width
    # The recorded class-balanced subset: 10 training images per class, every test image.
    subset = pd.read_csv(res / "data" / "imagenet" / "subset.csv")
    assert subset[subset["split"] == "train"].groupby("target").size().eq(10).all()
    assert (subset["split"] == "val").sum() == 450
    curves = pd.read_csv(res / "fig1_imagenet.csv")
    assert set(curves["corrupted_fraction"]) == {0.0, 1.0} and len(curves) == 2 * 3 * 6
    # Top-5 accuracy: with everything in the last three layers ablated the net outputs
    # the same logits for every image, which still lists 5 of the 10 classes.
    full = curves[curves["fraction"] == 1.0].groupby("corrupted_fraction")["accuracy"].mean()
    assert (full > 0.3).all()
    units = pd.read_csv(res / "fig7_imagenet.csv")
    assert units["depth"].nunique() == 17 and units["base_accuracy"].iloc[0] > 0.9
    # The selectivity experiment names the clean-label model as its checkpoint file.
    clean = torch.load(res / "models" / "imagenet" / "corruption_f0.0_s0" / "model.pt", weights_only=False)
    sel = torch.load(res / "models" / "imagenet" / "selectivity_s0" / "model.pt", weights_only=False)
    assert all(torch.equal(v, sel["state_dict"][k]) for k, v in clean["state_dict"].items())
    assert pd.read_csv(res / "models" / "imagenet" / "corruption_f1.0_s0" / "history.csv")["step"].tolist() == [20, 40, 60]
    assert not list((res / ".work").rglob("resume.pt"))  # resume states removed once the models exist
    proc = run_snakemake(tmp_path, "-n", *FIGURES, configfile=cfgfile)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def fake_imagenet(root):
    """What torchvision's ImageNet needs to be found: train/ and val/ class folders and meta.bin."""
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            (root / split / wnid).mkdir(parents=True)
            (root / split / wnid / f"{wnid}_1.JPEG").touch()
    (root / "meta.bin").touch()
    return root


@pytest.mark.slow
def test_paper_config_builds_its_dag(tmp_path):
    cfg = load_yaml(REPO / "config" / "config.yaml")
    cfg["families"]["imagenet"]["dataset"]["root"] = str(fake_imagenet(tmp_path / "imagenet"))
    cfgfile = write_yaml(cfg, tmp_path / "paper.yaml")
    out = run_snakemake(tmp_path, "-n", "results/fig7_imagenet.pdf", configfile=cfgfile)
    text = out.stdout + out.stderr
    for rule in ("image_index", "corrupt_labels", "image_subset", "train_model", "unit_shard",
                 "unit_analysis", "fig7"):
        assert f"rule {rule}:" in text, rule
    assert "gpu=8" in text and "nodes=1" in text  # the training job asks for its GPUs
    # Without the data a dry run still plans (and warns); the index job stops with one
    # error that shows the expected layout.
    cfg["families"]["imagenet"]["dataset"]["root"] = str(tmp_path / "missing")
    missing = write_yaml(cfg, tmp_path / "m.yaml")
    out = run_snakemake(tmp_path / "m", "-n", "results/fig7_imagenet.pdf", configfile=missing)
    assert "does not exist" in out.stdout + out.stderr
    out = run_snakemake(tmp_path / "m", "results/data/imagenet/index.csv.gz", configfile=missing, check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "does not exist" in text and "<root>/train/n01440764/" in text and "enabled: false" in text


@pytest.mark.slow
def test_unit_analysis_shards_in_the_dag(tmp_path):
    """analysis.unit_shards: N plans N unit_shard jobs per model and one cheap merge
    (unit_analysis) each; the shard files name N, so a changed N makes new shards. The
    default, 1, is one unit_analysis job per model and no shard file."""
    cfg = tiny_imagenet_config()
    cfg["families"]["imagenet"]["analysis"]["unit_shards"] = 3
    cfgfile = write_yaml(cfg, tmp_path / "sharded.yaml")
    out = run_snakemake(tmp_path, "-n", "results/fig7_imagenet.pdf", configfile=cfgfile)
    text = out.stdout + out.stderr
    models = 1  # Fig. 7 analyses the selectivity experiment's one model
    jobs = dict(line.split() for line in text.splitlines()
                if len(line.split()) == 2 and line.split()[1].isdigit())
    assert int(jobs["unit_shard"]) == 3 * models and int(jobs["unit_analysis"]) == models, jobs
    for i in range(3):
        assert f"results/analysis/imagenet/selectivity_s0/unit_shards/{i}_of_3.csv" in text
    del cfg["families"]["imagenet"]["analysis"]["unit_shards"]
    out = run_snakemake(tmp_path, "-n", "results/fig7_imagenet.pdf", configfile=write_yaml(cfg, tmp_path / "one.yaml"))
    text = out.stdout + out.stderr
    jobs = dict(line.split() for line in text.splitlines() if len(line.split()) == 2 and line.split()[1].isdigit())
    assert "unit_shard" not in jobs and int(jobs["unit_analysis"]) == models, jobs
    assert "unit_shards/" not in text
