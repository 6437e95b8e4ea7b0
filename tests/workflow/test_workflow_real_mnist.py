"""Real data: MNIST (the official 10k test split from ../shared/data) through the npz
source and the real Snakefile, on the CPU in CI (about 3 CPU-minutes).

Measured (1,500 training images, 6 corruption nets, 4 dropout nets): normalized AUC per
corrupted fraction 0.77 / 0.59 / 0.55 (0, 0.5, 1; Spearman over networks -0.96); shuffled
nets reach training accuracy >= 0.98; relative accuracy past p = 0.2 is 0.75-0.76 for
clean dropout nets and 0.57-0.58 for corrupted ones."""
import pytest

from conftest import shared_file
from singledir.analysis.auc import curve_aucs


def real_mnist_config(path) -> dict:
    """The MNIST family on 1,500 real MNIST training images (npz source), written the way
    a user writes a config: only what differs from the schema's defaults."""
    return {
        "scale": "CI real MNIST", "device": "cpu", "bootstrap": 200,
        "families": {"mnist": {
            "label": "MNIST (1,500 training images)",
            "dataset": {"source": "npz", "path": str(path), "test_fraction": 0.2, "train_limit": 1500},
            "model": {"arch": "mlp"},
            "train": {"optimizer": "adam", "lr": 0.001, "batch_size": 128, "epochs": 60,
                      "checkpoint_every": 20, "eval_batch_size": 4096},
            "analysis": {"orderings": 4, "curve_points": 11, "noise_scales": [0.0, 1.0, 10.0], "noise_repeats": 2,
                         "mi_bins": 6},
            "experiments": {
                "corruption": {"model": {"hidden": [256, 256]}, "fuse": 6,
                               "grid": {"fraction": [0.0, 0.5, 1.0], "seed": [0, 1]}},
                "dropout": {"model": {"hidden": [256, 256]}, "fuse": 4,
                            "grid": {"dropout": [0.2], "fraction": [0.0, 1.0], "seed": [0, 1]}},
                "selectivity": {"model": {"hidden": [32, 32]}, "train": {"epochs": 15}},
                "early_stopping": {"model": {"hidden": [64, 64]}, "train": {"epochs": 20, "snapshot_every": 5}},
            },
        }},
    }


@pytest.mark.slow
def test_mnist_family_end_to_end_on_real_mnist(tmp_path):
    """The whole MNIST family through the real Snakefile on real MNIST: the paper's MNIST
    directions hold over networks (Fig. 1a, Fig. 5a) and shuffled labels are memorized."""
    import pandas as pd
    from scipy.stats import spearmanr

    from conftest import run_snakemake, write_yaml

    path = shared_file("mnist_t10k.npz")
    cfgfile = write_yaml(real_mnist_config(path), tmp_path / "real_mnist.yaml")
    run_snakemake(tmp_path, "all_figures", configfile=cfgfile, timeout=1500)
    res = tmp_path / "results"
    for fig in ("fig1", "fig2", "fig4", "fig5", "fig7", "figA4"):
        assert (res / f"{fig}_mnist.pdf").read_bytes()[:4] == b"%PDF"

    # Memorization: every fully shuffled net fits its training labels.
    final = {}
    for hist in (res / "models" / "mnist").glob("*/history.csv"):
        final[hist.parent.name] = pd.read_csv(hist).sort_values("epoch").iloc[-1]
    shuffled = {m: h["train_accuracy"] for m, h in final.items() if "_f1.0_" in m}
    assert len(shuffled) == 4 and min(shuffled.values()) >= 0.95, shuffled

    # Fig. 1a: normalized AUC falls with the corrupted fraction, over networks.
    curves = pd.read_csv(res / "fig1_mnist.csv")
    # the curve columns only: the table also carries each net's final accuracies and failure columns
    tidy = curves[["model", "corrupted_fraction", "ordering", "n_ablated", "fraction", "accuracy"]]
    per_net = curve_aucs(tidy).groupby(
        ["model", "corrupted_fraction"], as_index=False)["auc"].mean()
    assert len(per_net) == 6
    rho = spearmanr(per_net["corrupted_fraction"], per_net["auc"]).statistic
    print("real MNIST AUC per fraction:", per_net.groupby("corrupted_fraction")["auc"].mean().round(3).to_dict(),
          f"Spearman {rho:.2f}; shuffled train accuracy {min(shuffled.values()):.3f}")
    assert rho < 0

    # Fig. 5a: past the dropout fraction p, corrupted-label dropout nets fall faster than
    # clean ones: lower accuracy relative to their unablated accuracy, net by net.
    c5 = pd.read_csv(res / "fig5_mnist.csv")
    base = c5[c5["fraction"] == 0].groupby(["model", "ordering"])["accuracy"].first().rename("base")
    c5 = c5.join(base, on=["model", "ordering"])
    past = c5[c5["fraction"] >= c5["dropout"] - 1e-9]
    kept = (past["accuracy"] / past["base"]).groupby([past["model"], past["corrupted_fraction"]]).mean().reset_index()
    clean = kept[kept["corrupted_fraction"] == 0][0].values
    corrupted = kept[kept["corrupted_fraction"] == 1][0].values
    print(f"Fig. 5a relative accuracy past p: clean {clean.round(3)}, corrupted {corrupted.round(3)}")
    assert len(clean) == len(corrupted) == 2
    assert corrupted.max() < clean.min()
