"""Decidability by design (singledir.stats.design): the smallest p a design can reach, the
projected CI widths of value claims, and which claims a design cannot decide."""
import math

import pytest

from singledir.stats import design as D
from singledir.stats.inference import difference_ci, paired_difference, permutation_spearman


def test_smallest_p_of_each_design_matches_the_tests_themselves():
    assert D.p_min_two_groups(4, 4) == pytest.approx(2 / 70)
    assert D.p_min_two_groups(1, 1) == 1.0
    assert D.p_min_paired(4) == 0.125 and D.p_min_paired(6) == pytest.approx(2 / 64)
    # the same numbers as the tests the figure scripts run, on distinct values
    assert difference_ci(range(4), range(10, 14), n_boot=10)["p_min"] == pytest.approx(D.p_min_two_groups(4, 4))
    assert paired_difference([0.1, 0.4, 0.2, 0.3], n_boot=10)["p_min"] == pytest.approx(D.p_min_paired(4))
    x = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert D.p_min_spearman(x) == pytest.approx(2 / 720) == permutation_spearman(x, range(6))[1]
    assert D.p_min_spearman([0.0, 1.0]) == 1.0
    assert D.ni_reachable_paired(6) and not D.ni_reachable_paired(5)
    assert D.ni_reachable_two_groups(4, 4) and not D.ni_reachable_two_groups(3, 3)


def test_projected_spearman_half_width():
    # Fisher z at r = 0: 1.96 sqrt(1.06 / (n - 3)) mapped back; 256 units: ~0.127 (issue 30: 0.11-0.13)
    assert D.spearman_half_width(0.095, 256) == pytest.approx(0.127, abs=0.005)
    assert D.spearman_half_width(0.0, 3) == math.inf
    assert D.network_mean_half_width(1) == math.inf
    assert D.network_mean_half_width(4) == pytest.approx(3.182 * 0.05 / 2, rel=1e-3)


def _net(**kw):
    base = {"fraction": 0.0, "seed": 0, "dropout": 0.0, "batch_norm": True, "regularizer": "none",
            "condition": "plain", "units": 256, "epochs": 10, "snapshots": 0, "snapshot_spacing": None}
    return {**base, **kw}


def _ids(design):
    return {b["claim"]: b["why"] for b in D.undecidable_claims(design)}


def test_between_network_claims_need_enough_networks_per_arm():
    one_seed = [_net(dropout=p, fraction=f, seed=0) for p in (0.1, 0.2, 0.3) for f in (0.0, 1.0)]
    four = [_net(dropout=p, fraction=f, seed=s) for p in (0.1, 0.2, 0.3) for f in (0.0, 1.0) for s in range(4)]
    bad = _ids({"mnist": {"fig5": one_seed}})
    assert set(bad) == {f"fig5a_dropout_past_fraction_p{p:g}" for p in (0.1, 0.2, 0.3)}
    assert "1 vs 1 networks" in bad["fig5a_dropout_past_fraction_p0.1"]
    assert _ids({"mnist": {"fig5": four}}) == {}
    a1 = lambda n: {"cifar10": {"figA1": [_net(seed=s) for s in range(n)]}}
    assert "needs >= 6" in _ids(a1(4))["figA1_mean_vs_zero_ablation"]
    assert "figA1_mean_vs_zero_ablation" not in _ids(a1(6))


def test_non_inferiority_claims_need_the_exact_test_to_reach_its_level():
    x2 = lambda n: {"mnist": {"figX2": [_net(seed=s) for s in range(n)]}}
    assert set(_ids(x2(4))) == {"X2_onepoint_stop_vs_val_stop_mnist", "X2_full_auc_stop_vs_val_stop_mnist"}
    assert _ids(x2(6)) == {}
    arms = lambda n: {"cifar10": {"figX4": [_net(seed=s, fraction=f, condition=c, regularizer=r, strength=a)
                                            for s in range(n) for f in (0.0, 1.0)
                                            for c, r, a in (("plain", "none", None), ("batch norm", "none", None),
                                                            ("reliance", "reliance", 0.5),
                                                            ("reliance", "reliance", 1.0))]}}
    bad = _ids(arms(3))
    assert "X4_reliance_auc_vs_batch_norm_cifar10" in bad and "1/20" in bad["X4_reliance_auc_vs_batch_norm_cifar10"]
    assert "0.1 >= 0.05" in bad["X4_reliance_raises_auc_cifar10"]  # 3 vs 3: two-sided p_min 2/20
    assert len(bad) == 5  # reliance (at its strongest strength: 3 nets, not 6) and batch norm vs plain
    assert _ids(arms(4)) == {}


def test_value_claims_use_the_claims_own_tolerance_and_print_the_assumption():
    few = {"mnist": {"fig7": [_net(units=64)], "fig4": [_net(snapshots=81, snapshot_spacing=20, epochs=640)]}}
    bad = _ids(few)
    assert "fig7a_selectivity_vs_impact" in bad and "64 units" in bad["fig7a_selectivity_vs_impact"]
    assert "fig4b_auc_vs_test_loss_mnist" not in bad  # 81 snapshots: +/- 0.19 within the claim's 0.25
    assert "fig4a_auc_peak_at_loss_divergence" not in bad  # 20 epochs apart <= 5 % of 640
    assert "fig7a_selectivity_vs_impact" not in _ids({"mnist": {"fig7": [_net(units=256)]}})
    assert any("Fisher" in a for a in D.ASSUMPTIONS)


def test_figures_the_design_does_not_draw_are_not_undecidable():
    assert D.undecidable_claims({}) == []
