"""The claims table: the bootstrap, where each claim reads its inputs, and the verdict rules."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from singledir import claims as C


def write_stats(res, family, rows):
    """results/stats/<family>.csv from (figure, statistic, value, ci_low, ci_high, n) tuples."""
    path = res / "stats" / f"{family}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["figure", "statistic", "value", "ci_low", "ci_high", "n"]).assign(p=np.nan) \
        .to_csv(path, index=False)
    return path


def claim(claim_id, family):
    return next(c for c in C.CLAIMS if c.claim_id == claim_id and c.family == family)


# ---------------------------------------------------------------- bootstrap

def test_bootstrap_ci_of_a_mean_matches_normal_theory():
    x = np.random.default_rng(1).normal(3.0, 2.0, 400)
    lo, hi = C.bootstrap_ci(lambda s: s[0].mean(), [x], n_boot=2000, seed=0)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))  # 0.196
    assert lo < x.mean() < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.12)
    assert (lo + hi) / 2 == pytest.approx(x.mean(), abs=0.05)


def test_stratified_bootstrap_of_a_difference_matches_normal_theory_and_keeps_strata():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 3.0, 100)
    sizes = set()

    def diff(s):
        sizes.add((len(s[0]), len(s[1])))
        return s[0].mean() - s[1].mean()

    lo, hi = C.bootstrap_ci(diff, [a, b], n_boot=2000, seed=0)
    half = 1.96 * np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.12)
    assert sizes == {(300, 100)}  # each stratum resampled at its own size


def test_bootstrap_is_seeded_and_degenerate_data_give_a_point():
    x = np.arange(20.0)
    assert C.bootstrap_ci(lambda s: s[0].mean(), [x], 200, seed=3) == C.bootstrap_ci(lambda s: s[0].mean(), [x], 200, seed=3)
    assert C.bootstrap_ci(lambda s: s[0].mean(), [np.full(10, 0.7)], 100) == (pytest.approx(0.7), pytest.approx(0.7))
    assert all(np.isnan(C.bootstrap_ci(lambda s: np.nan, [x], 50)))
    with pytest.raises(ValueError, match="stratum"):
        C.bootstrap_ci(lambda s: 0.0, [x, np.array([])], 10)


def test_spearman_r_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 50), rng.normal(size=50)
    assert C.spearman_r(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert np.isnan(C.spearman_r(np.ones(5), np.arange(5)))


# ---------------------------------------------------------------- inputs

def test_claim_reads_its_family_and_figure_statistic(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "mnist", [("fig1", "spearman_auc_vs_corrupted_fraction", -0.9, -0.95, -0.8, 60),
                               ("fig2", "spearman_noise_robustness_vs_corrupted_fraction", 0.5, 0.2, 0.7, 30)])
    write_stats(res, "cifar10", [("fig1", "spearman_auc_vs_corrupted_fraction", -0.3, -0.6, 0.1, 40)])
    src = C.Sources.from_results(res)
    a = claim("fig1a_auc_vs_corruption", "mnist").evaluate(src, 100)
    assert (a["our_value"], a["ci_low"], a["ci_high"], a["n"], a["reproduced"]) == (-0.9, -0.95, -0.8, 60, "yes")
    b = claim("fig1b_auc_vs_corruption", "cifar10").evaluate(src, 100)
    assert (b["our_value"], b["reproduced"]) == (-0.3, "no") and "CI includes 0" in b["note"]
    noise = claim("fig2a_noise_vs_corruption", "mnist").evaluate(src, 100)
    assert noise["reproduced"] == "no" and noise["note"] == "opposite direction"


def test_sources_from_paths_sorts_stats_and_tidy_tables(tmp_path):
    src = C.Sources.from_paths(["results/stats/mnist.csv", "results/fig7_cifar10.csv", "results/figA4_mnist.csv"])
    assert src.stats == {"mnist": C.Path("results/stats/mnist.csv")}
    assert set(src.tables) == {("fig7", "cifar10"), ("figA4", "mnist")}
    with pytest.raises(C.ClaimsInputError, match="expected"):
        C.Sources.from_paths(["results/claims.csv"])


def test_missing_family_or_figure_is_not_run_and_every_claim_has_a_row(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "mnist", [("fig7", "spearman_selectivity_vs_impact", 0.05, -0.1, 0.2, 64)])
    table = C.evaluate_claims(C.Sources.from_results(res), n_boot=50)
    assert list(table.columns) == C.COLUMNS
    assert len(table) == len(C.CLAIMS) and table["claim_id"].is_unique
    got = table.set_index("claim_id")
    assert got.loc["fig7a_selectivity_vs_impact", "reproduced"] == "yes"
    others = got.drop(index="fig7a_selectivity_vs_impact")
    assert (others["reproduced"] == "not run").all()
    assert "CIFAR-10 was not run" in got.loc["fig7b_selectivity_vs_impact", "note"]
    assert "fig1_mnist was not drawn" in got.loc["fig1a_auc_vs_corruption", "note"]
    assert "fig4_mnist was not drawn" in got.loc["fig4a_auc_peak_at_loss_divergence", "note"]
    # The paper's claims the issue lists are all there, by paper panel and family.
    panels = set(zip(table["figure"], table["family"]))
    for want in [("1a", "mnist"), ("1b", "cifar10"), ("1c", "imagenet"), ("2a", "mnist"), ("2b", "cifar10"),
                 ("3b", "cifar10"), ("4a", "mnist"), ("4b", "cifar10"), ("4c", "cifar10"), ("5a", "mnist"),
                 ("5b", "cifar10"), ("6a", "cifar10"), ("6b", "cifar10"), ("7a", "mnist"), ("7b", "cifar10"),
                 ("7c", "cifar10"), ("7d", "imagenet"), ("A1", "cifar10"), ("A2a", "cifar10"), ("A2b", "imagenet"),
                 ("A3a", "cifar10"), ("A3b", "imagenet"), ("A4a", "mnist"), ("A4b", "cifar10"), ("A4d", "imagenet")]:
        assert want in panels
    assert {f"fig4c_selection_top{k}" for k in (1, 5, 10)} | {"fig4c_selection_gap"} <= set(table["claim_id"])


def test_figure_that_ran_without_the_statistic_is_a_clear_error(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "cifar10", [("fig6", "median_selectivity_bn", 0.2, 0.1, 0.3, 100)])
    with pytest.raises(C.ClaimsInputError, match="selectivity_difference_bn_minus_nobn"):
        claim("fig6a_batchnorm_selectivity", "cifar10").evaluate(C.Sources.from_results(res), 10)


# ---------------------------------------------------------------- verdict rules

@pytest.mark.parametrize("expect, value, lo, hi, verdict", [
    (C.Direction("<"), -0.5, -0.7, -0.1, "yes"),
    (C.Direction("<"), -0.5, -0.9, 0.1, "no"),
    (C.Direction(">", 0.9), 0.95, 0.91, 0.99, "yes"),
    (C.Direction(">", 0.9), 0.95, 0.89, 0.99, "no"),
    (C.Value(-0.728), -0.99, -1.0, -0.955, "no"),     # sign agrees, number too far
    (C.Value(-0.728), -0.65, -0.8, -0.5, "yes"),
    (C.Value(-0.728), -0.6, -0.6, -0.6, "no"),        # no CI: a point, 0.128 away
    (C.Value(-0.728), -0.7, -0.9, 0.05, "no"),        # close, but the sign is not established
    (C.Value(0.095, signed=False), -0.03, -0.26, 0.23, "yes"),
    (C.Negligible(), 0.05, -0.1, 0.2, "yes"),
    (C.Negligible(), 0.05, -0.35, 0.25, "no"),
    (C.Negligible(), 0.6, 0.5, 0.7, "no"),
])
def test_verdict_rules(expect, value, lo, hi, verdict):
    assert expect.judge(C.Estimate(value, lo, hi, 10))[0] == verdict


def test_undefined_statistic_is_no_not_an_error(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "mnist", [("figA4", "spearman_mutual_information_vs_impact", np.nan, np.nan, np.nan, 2)])
    row = claim("figA4a_mutual_information_vs_impact", "mnist").evaluate(C.Sources.from_results(res), 10)
    assert row["reproduced"] == "no" and "undefined" in row["note"]


# ---------------------------------------------------------------- claims computed from tidy tables

def test_fig4a_peak_vs_min_test_loss_from_the_tidy_table(tmp_path):
    epochs = [0, 10, 20, 30, 40]
    auc = {0: 0.9, 10: 0.5, 20: 0.8, 30: 0.7, 40: 0.6}  # peak at 20 among trained snapshots
    loss = {0: 2.3, 10: 0.5, 20: 0.3, 30: 0.35, 40: 0.4}  # minimum at 20
    rows = [{"model": "early_stopping_s0", "epoch": e, "ordering": o, "auc": auc[e] + 0.01 * o,
             "train_loss": 0.1, "test_loss": loss[e]} for e in epochs for o in range(4)]
    pd.DataFrame(rows).to_csv(tmp_path / "fig4_mnist.csv", index=False)
    src = C.Sources.from_paths([tmp_path / "fig4_mnist.csv"])
    row = claim("fig4a_auc_peak_at_loss_divergence", "mnist").evaluate(src, 100)
    assert (row["our_value"], row["ci_low"], row["ci_high"], row["n"]) == (0, 0, 0, 4)
    assert row["reproduced"] == "yes" and "epoch 20" in row["note"]
    loss[30] = 0.1  # the test loss now bottoms out two snapshots (20 epochs) after the AUC peak
    rows = [dict(r, test_loss=loss[r["epoch"]]) for r in rows]
    pd.DataFrame(rows).to_csv(tmp_path / "fig4_mnist.csv", index=False)
    row = claim("fig4a_auc_peak_at_loss_divergence", "mnist").evaluate(C.Sources.from_paths([tmp_path / "fig4_mnist.csv"]), 100)
    assert row["our_value"] == -10 and row["reproduced"] == "yes"  # within one snapshot interval
    loss[30], loss[40] = 0.35, 0.05
    rows = [dict(r, test_loss=loss[r["epoch"]]) for r in rows]
    pd.DataFrame(rows).to_csv(tmp_path / "fig4_mnist.csv", index=False)
    row = claim("fig4a_auc_peak_at_loss_divergence", "mnist").evaluate(C.Sources.from_paths([tmp_path / "fig4_mnist.csv"]), 100)
    assert row["our_value"] == -20 and row["reproduced"] == "no"


def _dropout_table(path):
    """Two dropout nets (p = 0.2): clean keeps 1.0 until 0.2 then falls linearly to 0.5 at 1.0;
    corrupted keeps 0.95 at 0.2 then falls to 0.1 at 0.6 and stays."""
    frac = np.linspace(0, 1, 11)
    clean = np.where(frac <= 0.2, 1.0, 1.0 - 0.5 * (frac - 0.2) / 0.8)
    corrupt = np.interp(frac, [0, 0.2, 0.6, 1.0], [1.0, 0.95, 0.1, 0.1])
    rows = []
    for model, f, acc in (("dropout_f0.0_p0.2_s0", 0.0, clean), ("dropout_f1.0_p0.2_s0", 1.0, corrupt)):
        for o in range(3):
            rows += [{"model": model, "dropout": 0.2, "corrupted_fraction": f, "mode": "zero", "ordering": o,
                      "n_ablated": int(x * 100), "fraction": x, "accuracy": a} for x, a in zip(frac, acc)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return clean, corrupt, frac


def test_fig5a_claims_from_the_tidy_table(tmp_path):
    clean, corrupt, frac = _dropout_table(tmp_path / "fig5_mnist.csv")
    src = C.Sources.from_paths([tmp_path / "fig5_mnist.csv"])
    kept_clean = claim("fig5a_dropout_kept_clean", "mnist").evaluate(src, 100)
    kept_corrupt = claim("fig5a_dropout_kept_corrupted", "mnist").evaluate(src, 100)
    assert kept_clean["our_value"] == pytest.approx(1.0) and kept_clean["reproduced"] == "yes"
    assert kept_corrupt["our_value"] == pytest.approx(0.95) and kept_corrupt["reproduced"] == "yes"
    past = claim("fig5a_dropout_past_fraction", "mnist").evaluate(src, 100)
    m = frac >= 0.2 - 1e-9
    expect = (np.trapezoid(clean[m], frac[m]) / 0.8 / 1.0) - (np.trapezoid(corrupt[m], frac[m]) / 0.8 / 0.95)
    assert past["our_value"] == pytest.approx(expect) and past["reproduced"] == "yes"
    assert past["ci_low"] == pytest.approx(expect) == past["ci_high"]  # orderings are identical


def test_fig7c_early_minus_late_from_the_tidy_table(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for depth in range(1, 7):
        sel = rng.uniform(0, 1, 80)
        noise = rng.normal(0, 1, 80)
        impact = -sel + 0.2 * noise if depth <= 2 else noise  # early layers: strongly negative; late: none
        rows += [{"model": "m", "layer": f"relu{depth}", "depth": depth, "unit": u, "selectivity": s, "impact": i}
                 for u, (s, i) in enumerate(zip(sel, impact))]
    pd.DataFrame(rows).to_csv(tmp_path / "fig7_cifar10.csv", index=False)
    src = C.Sources.from_paths([tmp_path / "fig7_cifar10.csv"])
    row = claim("fig7c_early_layers_drive_negative_r", "cifar10").evaluate(src, 200)
    u = pd.DataFrame(rows)
    r = [stats.spearmanr(g["selectivity"], g["impact"]).statistic for _, g in u.groupby("depth")]
    assert row["our_value"] == pytest.approx(np.mean(r[:2]) - np.mean(r[-2:]))
    assert row["our_value"] < -0.7 and row["ci_high"] < 0 and row["reproduced"] == "yes"
    assert row["resampling"] == "units within each layer"


def test_markdown_has_a_row_per_claim_and_the_rules(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "mnist", [("fig7", "spearman_selectivity_vs_impact", 0.05, -0.1, 0.2, 64)])
    table = C.evaluate_claims(C.Sources.from_results(res), n_boot=20)
    md = C.to_markdown(table, "demo", {"mnist": "8x8 digits"})
    body = [l for l in md.splitlines() if l.startswith("| ") and not l.startswith("| #")]
    assert len(body) == len(C.CLAIMS)
    assert "Scale: **demo** (MNIST: 8x8 digits)" in md and "**1 of 1** claims tested are reproduced" in md
    assert all(f"**{k}**" in md for k in C.RULES)


def test_selection_rates_not_computed_or_trivial_at_this_scale_are_not_run(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "cifar10", [("fig4", "selection_top1_percent", 20.0, 10.0, 30.0, 6),
                                 ("fig4", "selection_top10_percent", 100.0, 100.0, 100.0, 6)])
    src = C.Sources.from_results(res)
    top1 = claim("fig4c_selection_top1", "cifar10").evaluate(src, 10)
    assert top1["reproduced"] == "yes" and top1["our_value"] == 20.0  # 13 within [10, 30] +/- 10
    top5 = claim("fig4c_selection_top5", "cifar10").evaluate(src, 10)
    assert top5["reproduced"] == "not run" and "has no 5" in top5["note"]
    top10 = claim("fig4c_selection_top10", "cifar10").evaluate(src, 10)
    assert top10["reproduced"] == "not run" and "only 6 settings" in top10["note"]
    # subselections of 3 settings: a top-5 pick is certain, a top-2 pick is not
    res3 = tmp_path / "results3"
    write_stats(res3, "cifar10", [("fig4", "selection_top2_percent", 100.0, 70.0, 100.0, 6),
                                  ("fig4", "selection_top5_percent", 100.0, 100.0, 100.0, 6),
                                  ("fig4", "selection_subset_size", 3, np.nan, np.nan, 6)])
    src3 = C.Sources.from_results(res3)
    top5 = claim("fig4c_selection_top5", "cifar10").evaluate(src3, 10)
    assert top5["reproduced"] == "not run" and "each random subselection has only 3 settings" in top5["note"]

