"""Method points of issue 12, each on hand-built inputs with known answers: network-level
statistics and permutation tests, nets that never learned, Fig. 5a read at round(p N),
Fig. 6 on live maps, the snapshot schedule and the layer keys of the config."""
import copy
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, load_yaml
from singledir.pipeline import plan
from singledir.engine.ablation import cumulative_ablation_curve
from singledir.analysis.auc import curve_aucs
from singledir.models.nets import MLP
from singledir.stats import claims as C
from singledir.stats.net_tables import dropout_readings, final_accuracies, live_map_summary, training_failed
from singledir.stats.inference import (by_fraction_stats, difference_ci, paired_difference, permutation_spearman, spearman,
                             spearman_r)


# ---------------------------------------------------------------- statistics over networks

def test_group_difference_permutation_p_and_smallest_attainable_p():
    two = difference_ci([0.9, 0.8], [0.5, 0.6], n_boot=200, unit="networks")
    assert two["value"] == pytest.approx(0.3) and two["n"] == 4 and two["unit"] == "networks"
    assert two["p"] == pytest.approx(1 / 3) and two["p_min"] == pytest.approx(1 / 3)  # 2 / C(4, 2)
    four = difference_ci([0.9, 0.8, 0.85, 0.95], [0.5, 0.6, 0.55, 0.4], n_boot=200)
    assert four["p"] == pytest.approx(2 / 70) == four["p_min"]  # perfect separation, 2 / C(8, 4)
    assert four["ci_low"] > 0
    # Brute force: the exact two-sided p of a mixed example.
    a, b = np.array([0.3, 0.1, 0.5]), np.array([0.2, 0.4, 0.0, 0.05])
    obs, both = a.mean() - b.mean(), np.r_[a, b]
    null = [both[list(c)].mean() - np.delete(both, list(c)).mean() for c in itertools.combinations(range(7), 3)]
    assert difference_ci(a, b, n_boot=50)["p"] == pytest.approx(np.mean(np.abs(null) >= abs(obs) - 1e-12))


def test_spearman_permutation_exact_and_sign_flip():
    x = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    y = np.array([0.9, 0.8, 0.7, 0.72, 0.5, 0.4])
    p, p_min = permutation_spearman(x, y)
    r = spearman_r(x, y)
    null = [spearman_r(x, y[list(q)]) for q in itertools.permutations(range(6))]
    assert p == pytest.approx(np.mean(np.abs(null) >= abs(r) - 1e-12))
    assert p_min == pytest.approx(2 / 720)
    # Three networks (one per fraction) can never be significant: p_min = 2 / 3! = 1/3.
    assert permutation_spearman([0, 0.5, 1], [0.9, 0.5, 0.1])[1] == pytest.approx(1 / 3)
    d = paired_difference([0.1, 0.2, 0.05, 0.3])
    assert d["p"] == pytest.approx(2 / 16) == d["p_min"]


def test_by_fraction_stats_resample_networks_not_orderings():
    # 3 nets (fractions 0, 0.5, 1) x 10 orderings: n must be 3 networks, and the
    # orderings are averaged within each net before the correlation.
    rows = [{"model": f"m{f}", "corrupted_fraction": f, "ordering": o, "auc": 1 - 0.3 * f + 0.01 * o}
            for f in (0.0, 0.5, 1.0) for o in range(10)]
    st = {r["statistic"]: r for r in by_fraction_stats(pd.DataFrame(rows), "auc", "auc", n_boot=100)}
    s = st["spearman_auc_vs_corrupted_fraction"]
    assert s["n"] == 3 and s["unit"] == "networks" and s["value"] == pytest.approx(-1.0)
    assert s["p_min"] == pytest.approx(1 / 3)  # too few networks for any 95 % test
    assert st["auc_fraction_0.5"]["value"] == pytest.approx(1 - 0.15 + 0.045)


def test_spearman_ci_resamples_the_rows_given():
    x = np.arange(50.0)
    r = spearman(x, x ** 3, n_boot=200, unit="units")
    assert r["value"] == pytest.approx(1.0) and r["ci_low"] == pytest.approx(1.0) and r["unit"] == "units"


# ---------------------------------------------------------------- nets that never learned

def test_flat_chance_curve_and_diverged_net_are_flagged_and_raw_auc_tells_them_apart(tmp_path):
    frac = np.linspace(0, 1, 11)
    curves = pd.DataFrame(
        [{"model": "learned", "ordering": 0, "n_ablated": i, "fraction": f, "accuracy": 1.0 - 0.9 * f} for i, f in
         enumerate(frac)]
        + [{"model": "chance", "ordering": 0, "n_ablated": i, "fraction": f, "accuracy": 0.1} for i, f in
           enumerate(frac)])
    a = curve_aucs(curves).set_index("model")
    assert a.loc["chance", "auc"] == pytest.approx(1.0)  # the normalized AUC rewards a net that never learned
    assert a.loc["chance", "raw_auc"] == pytest.approx(0.1) and a.loc["learned", "raw_auc"] == pytest.approx(0.55)
    hist = {"learned": (0.01, 0.99), "chance": (2.30, 0.11), "diverged": (float("nan"), 0.1),
            "memorized": (0.02, 0.98)}
    paths = []
    for m, (loss, acc) in hist.items():
        (tmp_path / m).mkdir()
        pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, loss], "train_accuracy": [0.3, acc],
                      "test_loss": [2.0, 2.0], "test_accuracy": [0.3, 0.5]}).to_csv(tmp_path / m / "history.csv",
                                                                                    index=False)
        paths.append(tmp_path / m / "history.csv")
    nets = final_accuracies(paths, 10).set_index("model")
    assert nets["failed"].to_dict() == {"learned": False, "chance": True, "diverged": True, "memorized": False}
    assert nets.loc["learned", "test_accuracy"] == 0.5
    # Step-based (ImageNet) histories: train_top1 of the last window.
    (tmp_path / "resnet").mkdir()
    pd.DataFrame({"step": [50, 100], "train_loss": [2.0, 0.1], "train_top1": [0.2, 0.97]}).to_csv(
        tmp_path / "resnet" / "history.csv", index=False)
    r = final_accuracies([tmp_path / "resnet" / "history.csv"], 1000).iloc[0]
    assert r["train_accuracy"] == 0.97 and not r["failed"] and math.isnan(r["test_accuracy"])
    assert training_failed(pd.DataFrame({"train_accuracy": [0.14, 0.16], "train_loss": [1.0, 1.0]}), 10).tolist() == \
        [True, False]
    assert nets.loc["diverged", "failure"] == "diverged at epoch 2 (training loss nan)"
    assert nets["diverged"].to_dict() == {"learned": False, "chance": False, "diverged": True, "memorized": False}
    assert nets.loc["chance", "failure"].startswith("never learned (final training accuracy 0.110 < chance 0.1 + 0.05")


# ---------------------------------------------------------------- Fig. 5a at round(p N)

def test_dropout_curve_is_read_at_round_p_n_not_at_the_point_below():
    # 4096 units, 21 even points (every 204.8): p = 0.1 must be read at 410 units, where the
    # old reading took the point below (5 %, 205 units).
    n = 4096
    pts = sorted(set(np.rint(np.linspace(0, n, 21)).astype(int)) | {round(0.1 * n)})
    acc = {k: (1.0 if k <= 205 else 0.9 if k <= 410 else 0.5) for k in pts}
    c = pd.DataFrame([{"model": "d", "dropout": 0.1, "corrupted_fraction": 0.0, "ordering": 0, "n_ablated": k,
                       "fraction": k / n, "accuracy": acc[k]} for k in pts])
    r = dropout_readings(c).iloc[0]
    assert r["n_at_p"] == 410 and r["kept"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="no point at round"):
        dropout_readings(c[c["n_ablated"] != 410])


def test_ablation_curve_puts_the_dropout_point_on_the_curve():
    torch.manual_seed(0)
    model = MLP(64, [24, 16], 10).eval()
    x, y = torch.randn(50, 1, 8, 8), torch.randint(0, 10, (50,))
    curve = cumulative_ablation_curve(model, x, y, ["relu1", "relu2"], n_orderings=2, n_points=11,
                                      extra_fractions=(0.13,))
    assert 5 in set(curve["n_ablated"])  # round(0.13 x 40) = 5, not one of the 11 even points
    plain = cumulative_ablation_curve(model, x, y, ["relu1", "relu2"], n_orderings=2, n_points=11)
    same = curve[curve["n_ablated"].isin(plain["n_ablated"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(same, plain)  # the other points (and orderings) are unchanged


# ---------------------------------------------------------------- Fig. 6 on live maps

def test_fig6_summary_leaves_dead_maps_out():
    units = pd.DataFrame({
        "model": ["bn"] * 4 + ["nobn"] * 4, "batch_norm": [True] * 4 + [False] * 4,
        "mean_activity": [1, 1, 1, 1, 1, 1, 0, 0],
        "selectivity": [0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.0, 0.0],
        "mutual_information": [0.5, 0.6, 0.7, 0.8, 0.1, 0.2, 0.0, 0.0]})
    s = live_map_summary(units, 0.5).set_index("model")
    # Counting the two dead maps (selectivity 0) would give no-BN a median of 0.35 < BN's 0.35.
    assert s.loc["nobn", "median_selectivity"] == pytest.approx(0.75)
    assert s.loc["nobn", "dead_fraction"] == 0.5 and s.loc["bn", "dead_fraction"] == 0.0
    assert s.loc["nobn", "high_selectivity_fraction"] == 1.0 and s.loc["bn", "high_selectivity_fraction"] == 0.25
    # and the other way, all maps as the paper's footnote 4 counts them: dead maps at selectivity 0
    # in the median, and counted with the highly selective ones
    assert s.loc["nobn", "median_selectivity_all_maps"] == pytest.approx(0.35)
    assert s.loc["nobn", "high_selectivity_or_dead_fraction"] == 1.0
    assert s.loc["bn", "high_selectivity_or_dead_fraction"] == 0.25


def test_fig6_claims_both_ways(tmp_path):
    from test_claims import all_converged, claim, write_stats  # the claims test's helpers (tests/stats is on the path)

    res = tmp_path / "results"
    write_stats(res, "cifar10", [*all_converged("fig6"),
        ("fig6", "high_selectivity_fraction_difference_bn_minus_nobn", -0.1, -0.2, -0.05, 8, "networks", 0.03, 0.03),
        ("fig6", "high_selectivity_or_dead_fraction_difference_bn_minus_nobn", -0.3, -0.4, -0.2, 8, "networks",
         0.03, 0.03)])
    live = claim("fig6a_batchnorm_high_selectivity").evaluate(C.Sources.from_results(res))
    both = claim("fig6a_batchnorm_high_selectivity_or_dead").evaluate(C.Sources.from_results(res))
    assert live["our_value"] == -0.1 and both["our_value"] == -0.3 and both["verdict"] == "reproduced"


# ---------------------------------------------------------------- config: snapshots, layers

def _spec(cfg, family, experiment):
    return next(iter(plan.experiment_specs(cfg, family, experiment).values()))


def test_dense_early_snapshots_at_paper_scale():
    cfg = load_yaml(REPO / "config" / "config.yaml")
    spec = _spec(cfg, "mnist", "early_stopping")
    epochs = spec["train"]["epochs"]
    snaps = spec["train"]["snapshot_epochs"]
    assert snaps[:51] == list(range(0, 51)) and snaps[-1] == epochs
    assert max(np.diff(snaps)) <= 0.05 * epochs  # every gap within the claim's tolerance (5 % of training)
    # The demo runs on top of config.yaml (Snakemake merges --configfile into it), so it
    # inherits the dense early snapshots; its gaps are within 5 % of its training too.
    demo = plan._merge(cfg, load_yaml(REPO / "config" / "demo.yaml"))
    d = _spec(demo, "mnist", "early_stopping")["train"]
    assert d["snapshot_epochs"][:51] == list(range(0, 51)) and d["epochs"] == 100
    assert max(np.diff(d["snapshot_epochs"])) <= 0.05 * d["epochs"]


def test_noise_and_fig3_layer_keys():
    cfg = load_yaml(REPO / "config" / "config.yaml")
    a = cfg["families"]["cifar10"]["analysis"]
    assert a["noise_layers"] == "all" and a["fig3_ablation_layers"] == "all" and a["ablation_layers"] == -3
    bad = copy.deepcopy(load_yaml(REPO / "config" / "demo.yaml"))
    bad["families"]["mnist"]["analysis"]["noise_layers"] = ["relu9"]
    with pytest.raises(plan.ConfigError, match=r"analysis.noise_layers: unknown layer 'relu9'"):
        plan.check_config(bad)
    # The scripts use the keys: noise on noise_layers (default all), Fig. 3 on fig3_ablation_layers.
    noise = (REPO / "workflow" / "scripts" / "noise_curve.py").read_text()
    assert 'a.get("noise_layers", "all")' in noise and 'a["ablation_layers"]' not in noise
    assert "fig3_ablation_layers" in (REPO / "workflow" / "scripts" / "ablation_curve.py").read_text()


def test_stratified_bootstrap_keeps_strata_and_matches_normal_theory():
    from singledir.stats.inference import bootstrap_ci
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 3.0, 100)
    v, g = np.r_[a, b], np.r_[np.zeros(300), np.ones(100)]
    sizes = set()

    def diff(v, g):
        sizes.add((int((g == 0).sum()), int((g == 1).sum())))
        return v[g == 0].mean() - v[g == 1].mean()

    lo, hi = bootstrap_ci(diff, v, g, n_boot=2000, seed=0, strata=g)
    half = 1.96 * np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.12)
    assert sizes == {(300, 100)}  # each stratum resampled at its own size
    assert bootstrap_ci(np.mean, np.arange(20.0), n_boot=200, seed=3) == \
        bootstrap_ci(np.mean, np.arange(20.0), n_boot=200, seed=3)
    assert all(np.isnan(bootstrap_ci(lambda x: np.nan, np.arange(5.0), n_boot=20)))
