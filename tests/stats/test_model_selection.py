"""Section 3.2's model-selection statistic on hand-built grids with known answers."""
import math

import numpy as np
import pandas as pd
import pytest

from singledir.stats.model_selection import selection_null, selection_statistic, setting_means


def test_hand_built_grid_every_subset():
    # Settings A..D by test accuracy 0.9 > 0.8 > 0.7 > 0.6; AUC ranks B > C > D > A.
    acc = [0.9, 0.8, 0.7, 0.6]
    auc = [0.1, 0.4, 0.3, 0.2]
    # The 6 subsets of 2: AB->B (rank 2, gap 10 %), AC->C (2, 20), AD->D (2, 30), BC->B, BD->B, CD->C (rank 1, 0).
    r = selection_statistic(auc, acc, subset_size=2, n_subsets=100, top=(1, 2))
    assert r["exhaustive"] and r["n_subsets"] == 6
    assert r["top1_percent"] == pytest.approx(50.0)
    assert r["top2_percent"] == pytest.approx(100.0)
    assert r["gap_mean_percent"] == pytest.approx(10.0)
    assert r["gap_std_percent"] == pytest.approx(math.sqrt((100 + 400 + 900) / 6 - 100))


def test_auc_ordered_like_accuracy_always_picks_the_best():
    acc = np.linspace(0.5, 0.9, 12)
    r = selection_statistic(acc * 0.5 + 0.2, acc, subset_size=6, n_subsets=500, top=(1, 5, 10), seed=3)
    assert not r["exhaustive"] and r["n_subsets"] == 500
    assert r["top1_percent"] == 100.0 and r["gap_mean_percent"] == 0.0 and r["gap_std_percent"] == 0.0
    # Reversed AUC picks the subset's worst setting: top 5 of 6 never, top 10 always.
    w = selection_statistic(-acc, acc, subset_size=6, n_subsets=500, top=(1, 5, 10), seed=3)
    assert w["top1_percent"] == 0.0 and w["top5_percent"] == 0.0 and w["top10_percent"] == 100.0
    assert w["gap_mean_percent"] > 10


def test_random_subsets_agree_with_the_exact_answer():
    rng = np.random.default_rng(0)
    acc = rng.uniform(0.3, 0.9, 20)
    auc = acc + rng.normal(0, 0.1, 20)
    exact = selection_statistic(auc, acc, 5, n_subsets=math.comb(20, 5), top=(1, 3))
    sampled = selection_statistic(auc, acc, 5, n_subsets=15000, top=(1, 3), seed=1)
    assert exact["exhaustive"] and not sampled["exhaustive"]
    for k in ("top1_percent", "top3_percent"):
        assert sampled[k] == pytest.approx(exact[k], abs=1.5)
    assert sampled["gap_mean_percent"] == pytest.approx(exact["gap_mean_percent"], abs=0.3)
    again = selection_statistic(auc, acc, 5, n_subsets=15000, top=(1, 3), seed=1)
    assert again == sampled  # seeded


def test_ties_in_accuracy_count_for_the_pick():
    r = selection_statistic([0.2, 0.1, 0.3], [0.7, 0.7, 0.7], subset_size=3, top=(1,))
    assert r["top1_percent"] == 100.0 and r["gap_mean_percent"] == 0.0


def test_subset_larger_than_grid_is_an_error():
    with pytest.raises(ValueError, match="subset_size"):
        selection_statistic([0.1, 0.2], [0.5, 0.6], subset_size=3)


def test_setting_means_average_repeats():
    nets = pd.DataFrame({"lr": [0.1, 0.1, 0.01, 0.01], "batch_size": [32, 32, 32, 32],
                         "auc": [0.5, 0.7, 0.2, 0.4], "test_accuracy": [0.8, 0.6, 0.3, 0.5]})
    s = setting_means(nets, ["lr", "batch_size"])
    assert s["lr"].tolist() == [0.1, 0.01]
    assert s["auc"].tolist() == pytest.approx([0.6, 0.3]) and s["test_accuracy"].tolist() == pytest.approx([0.7, 0.4])


def test_permutation_null_and_chance():
    acc = np.linspace(0.5, 0.9, 10)
    perfect = selection_null(acc, acc, subset_size=5, n_subsets=300, top=(1, 5), n_perm=200, seed=0)
    t1 = perfect["top1_percent"]
    assert t1["value"] == 100.0 and t1["chance"] == pytest.approx(20.0) and t1["n"] == 10
    # AUC ordered like accuracy beats every shuffle: the smallest p a 200-shuffle test gives
    assert t1["p"] == pytest.approx(1 / 201) == t1["p_min"]
    assert t1["null_mean"] == pytest.approx(20.0, abs=4.0)  # a shuffled AUC picks at chance
    assert perfect["top5_percent"]["chance"] == 100.0 and perfect["top5_percent"]["p"] == 1.0
    assert perfect["gap_mean_percent"]["p"] == pytest.approx(1 / 201)
    assert np.isnan(t1["ci_low"])  # no CI unless the settings are resampled (n_boot)
    # An AUC unrelated to accuracy is not significant.
    rng = np.random.default_rng(1)
    r = selection_null(rng.normal(size=10), acc, subset_size=5, n_subsets=300, top=(1,), n_perm=200, seed=0)
    assert r["top1_percent"]["p"] > 0.05


def test_rates_get_a_ci_by_resampling_the_settings():
    """Fig. 4c: the whole selection rerun on the grid's settings resampled with replacement."""
    rng = np.random.default_rng(2)
    acc = np.linspace(0.5, 0.9, 40)
    auc = acc + rng.normal(0, 0.05, 40)  # a noisy signal: rates well inside (0, 100)
    r = selection_null(auc, acc, subset_size=20, n_subsets=500, top=(1, 5), n_perm=20, seed=0, n_boot=200,
                       boot_subsets=200)
    for k in ("top1_percent", "top5_percent", "gap_mean_percent"):
        lo, v, hi = r[k]["ci_low"], r[k]["value"], r[k]["ci_high"]
        assert lo <= v <= hi and hi > lo, k
    # a perfect signal stays perfect on every resample: a CI of zero width at 100 %
    perfect = selection_null(acc, acc, subset_size=20, n_subsets=200, top=(1,), n_perm=5, seed=0, n_boot=50)
    assert perfect["top1_percent"]["ci_low"] == perfect["top1_percent"]["ci_high"] == 100.0
