"""The claims table: where each claim reads its inputs, the four verdicts and their gates."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from singledir.stats import claims as C
from singledir.stats.claims_markdown import to_markdown
from singledir.stats.beyond_claims import ALL_CLAIMS
COLS = ["figure", "statistic", "value", "ci_low", "ci_high", "n", "unit", "p", "p_min"]


def write_stats(res, family, rows):
    """results/stats/<family>.csv from (figure, statistic, value, ci_low, ci_high, n[, unit, p, p_min]) tuples."""
    path = res / "stats" / f"{family}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    full = [tuple(r) + ("", np.nan, np.nan)[len(r) - 6:] if len(r) < 9 else r for r in rows]
    pd.DataFrame(full, columns=COLS).to_csv(path, index=False)
    return path


def claim(claim_id):
    return next(c for c in ALL_CLAIMS if c.claim_id == claim_id)


def memo(fig, acc=1.0):
    return (fig, "final_train_accuracy_min_most_corrupted", acc, np.nan, np.nan, 1, "networks", np.nan, np.nan)


def none_failed(fig, n=6):
    return (fig, "networks_failed_excluded", 0, np.nan, np.nan, n, "networks", np.nan, np.nan)


def all_converged(fig, arms=("bn", "nobn"), n=4):
    """The convergence rows of a figure comparing arms (claims.converged): none unconverged."""
    return [(fig, "networks_unconverged" + (f"_{a}" if a else ""), 0, np.nan, np.nan, n, "networks", np.nan, np.nan)
            for a in arms]


# ---------------------------------------------------------------- inputs

def test_claim_reads_its_family_figure_and_statistic(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "mnist", [("fig1", "spearman_auc_vs_corrupted_fraction", -0.9, -1.0, -0.8, 6, "networks", 0.003,
                                0.0028), memo("fig1"), none_failed("fig1"),
                               # the same statistic name under another figure must not be read
                               ("fig2", "spearman_auc_vs_corrupted_fraction", 0.5, 0.2, 0.7, 6, "networks", 0.5, 0.1)])
    a = claim("fig1a_auc_vs_corruption").evaluate(C.Sources.from_results(res))
    assert (a["our_value"], a["ci_low"], a["ci_high"], a["n"], a["n_unit"]) == (-0.9, -1.0, -0.8, 6, "networks")
    assert a["verdict"] == "reproduced" and a["p_min"] == 0.0028


def test_missing_or_ambiguous_statistic_is_a_clear_error(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "cifar10", [("fig6", "median_selectivity_bn", 0.2, 0.1, 0.3, 4)])
    with pytest.raises(C.ClaimsInputError, match="selectivity_difference_bn_minus_nobn"):
        claim("fig6a_batchnorm_selectivity").evaluate(C.Sources.from_results(res))
    write_stats(res, "cifar10", [("fig6", "selectivity_difference_bn_minus_nobn", -0.1, -0.2, -0.05, 8),
                                 ("fig6", "selectivity_difference_bn_minus_nobn", -0.1, -0.2, -0.05, 8)])
    with pytest.raises(C.ClaimsInputError, match="2 rows"):
        claim("fig6a_batchnorm_selectivity").evaluate(C.Sources.from_results(res))
    # A corruption claim without the memorization statistic fails loudly too.
    write_stats(res, "mnist", [("fig1", "spearman_auc_vs_corrupted_fraction", -0.9, -1, -0.8, 6, "networks", 0.003,
                                0.0028)])
    with pytest.raises(C.ClaimsInputError, match="final_train_accuracy_min_most_corrupted"):
        claim("fig1a_auc_vs_corruption").evaluate(C.Sources.from_results(res))


def test_sources_from_paths_sorts_stats_and_tidy_tables():
    src = C.Sources.from_paths(["results/stats/mnist.csv", "results/fig7_cifar10.csv", "results/figA4_mnist.csv"])
    assert src.stats == {"mnist": C.Path("results/stats/mnist.csv")}
    assert set(src.tables) == {("fig7", "cifar10"), ("figA4", "mnist")}
    with pytest.raises(C.ClaimsInputError, match="expected"):
        C.Sources.from_paths(["results/claims.csv"])


def test_missing_family_or_figure_is_not_run_and_every_claim_has_a_row(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "mnist", [("figA4", "spearman_mutual_information_vs_impact", 0.05, -0.1, 0.2, 64, "units")])
    table = C.evaluate_claims(C.Sources.from_results(res), ALL_CLAIMS)
    assert list(table.columns) == C.COLUMNS
    assert len(table) == len(ALL_CLAIMS) and table["claim_id"].is_unique
    got = table.set_index("claim_id")
    assert got.loc["figA4a_mutual_information_vs_impact", "verdict"] == "reproduced"
    assert (got.drop(index="figA4a_mutual_information_vs_impact")["verdict"] == "not run").all()
    assert "CIFAR-10 was not run" in got.loc["fig7b_selectivity_vs_impact", "reason"]
    assert "fig1_mnist was not drawn" in got.loc["fig1a_auc_vs_corruption", "reason"]
    assert "fig4_mnist was not drawn" in got.loc["fig4a_auc_peak_at_loss_divergence", "reason"]
    panels = set(zip(table["figure"], table["family"]))
    for want in [("1a", "mnist"), ("1b", "cifar10"), ("1c", "imagenet"), ("2a", "mnist"), ("2b", "cifar10"),
                 ("3b", "cifar10"), ("4a", "mnist"), ("4b", "cifar10"), ("4c", "cifar10"), ("5a", "mnist"),
                 ("5b", "cifar10"), ("6a", "cifar10"), ("6b", "cifar10"), ("7a", "mnist"), ("7b", "cifar10"),
                 ("7c", "cifar10"), ("7d", "imagenet"), ("A1", "cifar10"), ("A2a", "cifar10"), ("A2b", "imagenet"),
                 ("A3a", "cifar10"), ("A3b", "imagenet"), ("A4a", "mnist"), ("A4b", "cifar10"), ("A4d", "imagenet")]:
        assert want in panels
    # Fig. 5a: one claim per dropout fraction, not an average over p.
    assert {f"fig5a_dropout_past_fraction_p{p}" for p in ("0.1", "0.2", "0.3")} <= set(table["claim_id"])


# ---------------------------------------------------------------- verdict rules

R, NR, INC = "reproduced", "not reproduced", "inconclusive"


@pytest.mark.parametrize("expect, value, lo, hi, verdict", [
    (C.Direction("<"), -0.5, -0.7, -0.1, R),
    (C.Direction("<"), -0.5, -0.9, 0.1, INC),        # CI crosses 0
    (C.Direction("<"), 0.5, 0.1, 0.9, NR),           # CI entirely on the wrong side
    (C.Direction(">", 0.9), 0.95, 0.91, 0.99, R),
    (C.Direction(">", 0.9), 0.95, 0.89, 0.99, INC),
    (C.Value(0.914), 0.45, 0.05, 0.85, INC),         # the case: the old rule said yes; CI reaches the band
    (C.Value(0.914), 0.45, 0.2, 0.7, NR),            # CI disjoint from [0.814, 1.014]
    (C.Value(0.914), 0.7, 0.4, 0.95, INC),           # wide CI reaching the band: never reproduced
    (C.Value(-0.728), -0.99, -1.0, -0.955, NR),      # sign agrees, number too far
    (C.Value(-0.728), -0.72, -0.8, -0.66, R),        # whole CI inside [-0.828, -0.628]
    (C.Value(-0.728), -0.65, -0.8, -0.5, INC),       # the old rule said yes (0.728 within CI +/- 0.1)
    (C.Value(-0.728), -0.6, np.nan, np.nan, INC),    # no CI: cannot be judged
    (C.Value(-0.728), 0.3, 0.1, 0.5, NR),            # opposite sign
    (C.Value(0.095, signed=False), 0.1, 0.02, 0.18, R),
    (C.Value(0.095, signed=False), -0.03, -0.26, 0.23, INC),
    (C.Negligible(), 0.05, -0.1, 0.2, R),
    (C.Negligible(), 0.05, -0.35, 0.25, INC),
    (C.Negligible(), 0.6, 0.5, 0.7, NR),
])
def test_verdict_rules(expect, value, lo, hi, verdict):
    assert expect.judge(C.Estimate(value, lo, hi, 10))[0] == verdict


def test_value_claim_on_stand_in_data_is_not_comparable(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "cifar10", [("fig7", "network_mean_spearman_selectivity_vs_impact", -0.43, -0.48, -0.38, 4,
                                  "networks (1408 units)")])
    row = claim("fig7b_selectivity_vs_impact").evaluate(C.Sources.from_results(res, stand_ins=["cifar10"]))
    assert row["verdict"] == "not comparable" and "stand-in" in row["reason"] and row["our_value"] == -0.43
    row = claim("fig7b_selectivity_vs_impact").evaluate(C.Sources.from_results(res))
    assert row["verdict"] == "reproduced" and row["tolerance"] == "+/- 0.1"


def test_undefined_statistic_is_inconclusive_with_a_reason(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "mnist", [("figA4", "spearman_mutual_information_vs_impact", np.nan, np.nan, np.nan, 2)])
    row = claim("figA4a_mutual_information_vs_impact").evaluate(C.Sources.from_results(res))
    assert row["verdict"] == "inconclusive" and "undefined" in row["reason"]


def test_every_verdict_but_reproduced_has_a_reason(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "mnist", [("figA4", "spearman_mutual_information_vs_impact", 0.6, 0.5, 0.7, 64, "units"),
                               ("fig7", "spearman_selectivity_vs_impact", 0.0, -0.4, 0.4, 64, "units")])
    table = C.evaluate_claims(C.Sources.from_results(res), ALL_CLAIMS)
    assert (table.loc[table["verdict"] != "reproduced", "reason"].str.len() > 0).all()


# ---------------------------------------------------------------- gates: networks, memorization

def test_too_few_networks_is_at_most_inconclusive(tmp_path):
    res = tmp_path / "results"
    # 2 + 2 nets: a perfect separation, but the exact permutation p cannot go below 1/3.
    write_stats(res, "cifar10", [
        ("fig5", "auc_difference_bn_minus_nobn", 0.06, 0.04, 0.09, 4, "networks", 1 / 3, 1 / 3),
        ("fig5", "networks_failed_excluded", 0, np.nan, np.nan, 4, "networks"), *all_converged("fig5", n=2)])
    row = claim("fig5b_batchnorm_auc").evaluate(C.Sources.from_results(res))
    assert row["verdict"] == "inconclusive" and row["n"] == 4 and row["n_unit"] == "networks"
    assert "too few networks" in row["reason"] and "0.333" in row["reason"]
    # 4 + 4 nets can reach p = 2/70, and do.
    write_stats(res, "cifar10", [
        ("fig5", "auc_difference_bn_minus_nobn", 0.06, 0.04, 0.09, 8, "networks", 2 / 70, 2 / 70),
        ("fig5", "networks_failed_excluded", 1, np.nan, np.nan, 9, "networks"), *all_converged("fig5")])
    row = claim("fig5b_batchnorm_auc").evaluate(C.Sources.from_results(res))
    assert row["verdict"] == "reproduced" and "1 of 9 nets failed to train" in row["note"]
    # ... a CI on the paper's side with a permutation p >= 0.05 is inconclusive.
    write_stats(res, "cifar10", [
        ("fig5", "auc_difference_bn_minus_nobn", 0.06, 0.01, 0.09, 8, "networks", 0.09, 2 / 70),
        ("fig5", "networks_failed_excluded", 0, np.nan, np.nan, 8, "networks"), *all_converged("fig5")])
    row = claim("fig5b_batchnorm_auc").evaluate(C.Sources.from_results(res))
    assert row["verdict"] == "inconclusive" and "p = 0.09" in row["reason"]


def test_corruption_claim_whose_nets_did_not_memorize_is_inconclusive(tmp_path):
    res = tmp_path / "results"
    rows = [("fig1", "spearman_auc_vs_corrupted_fraction", -0.94, -1.0, -0.8, 6, "networks", 0.003, 0.0028)]
    rows.append(none_failed("fig1"))
    write_stats(res, "mnist", rows + [memo("fig1", 0.62)])
    row = claim("fig1a_auc_vs_corruption").evaluate(C.Sources.from_results(res))
    assert row["verdict"] == "inconclusive" and "did not memorize" in row["reason"] and "0.620" in row["reason"]
    write_stats(res, "mnist", rows + [memo("fig1", 0.99)])
    assert claim("fig1a_auc_vs_corruption").evaluate(C.Sources.from_results(res))["verdict"] == "reproduced"


# ---------------------------------------------------------------- Fig. 4: timing and model selection

def _fig4a(res, diff, lo, hi, gap, epochs=100, min_test=20):
    write_stats(res, "mnist", [
        ("fig4", "epoch_auc_peak_minus_min_test_loss", diff, lo, hi, 10, "ablation orderings"),
        ("fig4", "epoch_auc_peak", min_test + diff, np.nan, np.nan, 25),
        ("fig4", "epoch_min_test_loss", min_test, np.nan, np.nan, 25),
        ("fig4", "snapshot_interval_at_events", gap, np.nan, np.nan, 26),
        ("fig4", "training_epochs", epochs, np.nan, np.nan, 1)])
    return claim("fig4a_auc_peak_at_loss_divergence").evaluate(C.Sources.from_results(res, stand_ins=["mnist"]))


def test_fig4a_tolerance_is_five_percent_of_training(tmp_path):
    res = tmp_path / "results"
    row = _fig4a(res, 0, -4, 4, 4)  # timing claims stay comparable on stand-in data
    assert row["verdict"] == "reproduced" and "5" in row["tolerance"]
    row = _fig4a(res, -4, -8, 20, 4)  # the old table's row 7 passed with this 28-epoch window
    assert row["verdict"] == "inconclusive"
    row = _fig4a(res, 0, 0, 0, 20)  # snapshots every 20 epochs cannot resolve +/- 5
    assert row["verdict"] == "inconclusive" and "cannot resolve" in row["reason"]
    assert _fig4a(res, 30, 25, 35, 4)["verdict"] == "not reproduced"


def test_fig4a_needs_the_test_loss_minimum_before_the_end_of_training(tmp_path):
    # peak and minimum both at the last snapshot: "coincide" vacuously, so inconclusive
    row = _fig4a(tmp_path / "results", 0, 0, 0, 1, epochs=100, min_test=100)
    assert row["verdict"] == "inconclusive" and "lowest at the end of training (epoch 100 of 100)" in row["reason"]
    assert _fig4a(tmp_path / "r2", 0, 0, 0, 1, epochs=100, min_test=99)["verdict"] == "reproduced"


def _fig4c(res, subset, settings, top1, p):
    write_stats(res, "cifar10", [
        ("fig4", "selection_top1_percent", top1, np.nan, np.nan, settings, "settings", p, 1 / 501),
        ("fig4", "selection_subset_size", subset, np.nan, np.nan, settings),
        ("fig4", "selection_settings", settings, np.nan, np.nan, settings)])
    df = pd.read_csv(res / "stats" / "cifar10.csv")
    df["chance"] = [100 / subset, np.nan, np.nan]
    df.to_csv(res / "stats" / "cifar10.csv", index=False)
    return C.Sources.from_results(res)


def test_fig4c_rates_are_compared_only_for_the_papers_design(tmp_path):
    res = tmp_path / "results"
    src = _fig4c(res, 3, 6, 55.0, 0.02)
    top1 = claim("fig4c_selection_top1").evaluate(src)
    assert top1["verdict"] == "not comparable" and "3 of 6" in top1["reason"] and "chance" in top1["reason"]
    beats = claim("fig4c_selection_beats_chance").evaluate(src)
    assert beats["verdict"] == "reproduced" and beats["our_value"] == pytest.approx(55 - 100 / 3)
    assert beats["chance"] == pytest.approx(100 / 3)
    top5 = claim("fig4c_selection_top5").evaluate(src)
    assert top5["verdict"] == "not run" and "has no 5" in top5["reason"]
    src = _fig4c(tmp_path / "r2", 48, 96, 15.0, 0.002)
    top1 = claim("fig4c_selection_top1").evaluate(src)
    # the paper's design, but a rate over subsets of one grid has no CI: inconclusive, never reproduced
    assert top1["verdict"] == "inconclusive" and top1["chance"] == pytest.approx(100 / 48)
    src = _fig4c(tmp_path / "r3", 48, 96, 15.0, 0.3)
    assert claim("fig4c_selection_beats_chance").evaluate(src)["verdict"] == "inconclusive"


# ---------------------------------------------------------------- Fig. 5a, Fig. 7c

def test_fig5a_claims_one_per_dropout_fraction(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "mnist", [
        ("fig5", "relative_accuracy_at_dropout_p0.2_clean", 0.99, 0.98, 1.0, 10, "orderings within networks"),
        ("fig5", "relative_accuracy_at_dropout_p0.2_corrupted", 0.85, 0.8, 0.88, 10, "orderings within networks"),
        ("fig5", "past_dropout_difference_clean_minus_corrupted_p0.2", 0.3, 0.3, 0.3, 2, "networks", 1.0, 1.0)])
    src = C.Sources.from_results(res)
    assert claim("fig5a_dropout_kept_clean_p0.2").evaluate(src)["verdict"] == "reproduced"
    assert claim("fig5a_dropout_kept_corrupted_p0.2").evaluate(src)["verdict"] == "not reproduced"
    past = claim("fig5a_dropout_past_fraction_p0.2").evaluate(src)
    assert past["verdict"] == "inconclusive" and "too few networks" in past["reason"]
    other = claim("fig5a_dropout_kept_clean_p0.1").evaluate(src)
    assert other["verdict"] == "not run" and "not in this config's dropout grid" in other["reason"]


def test_fig7c_early_minus_late_per_network_from_the_tidy_table(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for model in ("m0", "m1", "m2", "m3"):
        for depth in range(1, 7):
            sel = rng.uniform(0, 1, 80)
            noise = rng.normal(0, 1, 80)
            impact = -sel + 0.2 * noise if depth <= 2 else noise  # early layers: strongly negative; late: none
            rows += [{"model": model, "layer": f"relu{depth}", "depth": depth, "unit": u, "selectivity": s,
                      "impact": i} for u, (s, i) in enumerate(zip(sel, impact))]
    pd.DataFrame(rows).to_csv(tmp_path / "fig7_cifar10.csv", index=False)
    src = C.Sources.from_paths([tmp_path / "fig7_cifar10.csv"], n_boot=200)
    row = claim("fig7c_early_layers_drive_negative_r").evaluate(src)
    u = pd.DataFrame(rows)
    per_net = []
    for _, g in u.groupby("model"):  # r per (network, layer), early minus late within each network
        r = [stats.spearmanr(h["selectivity"], h["impact"]).statistic for _, h in g.groupby("depth")]
        per_net.append(np.mean(r[:2]) - np.mean(r[-2:]))
    assert row["our_value"] == pytest.approx(np.mean(per_net))
    assert row["n"] == 4 and row["n_unit"] == "networks (1920 units)"
    assert row["our_value"] < -0.7 and row["ci_high"] < 0 and row["verdict"] == "reproduced"
    # a tidy table without the network of each unit cannot be clustered: a clear error
    u.drop(columns="model").to_csv(tmp_path / "fig7_cifar10.csv", index=False)
    with pytest.raises(C.ClaimsInputError, match="no 'model' column"):
        claim("fig7c_early_layers_drive_negative_r").evaluate(C.Sources.from_paths([tmp_path / "fig7_cifar10.csv"]))


def test_figA3_is_judged_within_layers_of_each_network(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "cifar10", [
        ("figA3", "spearman_selectivity_vs_l1_norm", 0.84, 0.8, 0.86, 352, "units"),  # pooled: confounded
        ("figA3", "mean_within_layer_spearman_selectivity_vs_l1_norm", 0.2, 0.1, 0.3, 11, "layers"),  # by depth
        ("figA3", "network_mean_within_layer_spearman_selectivity_vs_l1_norm", -0.2, -0.3, -0.1, 4,
         "networks (1408 units)")])
    row = claim("figA3a_selectivity_vs_l1_norm").evaluate(C.Sources.from_results(res))
    assert row["our_value"] == -0.2 and row["n"] == 4 and row["n_unit"] == "networks (1408 units)"
    assert row["verdict"] == "reproduced" and "fan-in" in row["note"]


def test_cifar10_unit_claims_read_statistics_over_networks():
    cifar_unit = ["fig7b_selectivity_vs_impact", "fig7c_early_layers_drive_negative_r", "figA2a_selectivity_vs_depth",
                  "figA3a_selectivity_vs_l1_norm", "figA4b_mutual_information_vs_impact"]
    for cid in cifar_unit:
        assert claim(cid).resampling.startswith("networks"), cid


def test_per_network_is_a_cluster_bootstrap_over_networks():
    """r per (network, layer), averaged within each network; n counts networks, and the CI
    reflects the spread between networks, not the (many, dependent) units."""
    from singledir.stats.inference import per_network, within_layers
    rng = np.random.default_rng(2)
    rows = []
    for k, slope in enumerate([-1.0, 1.0, -1.0, 1.0, 0.0]):  # networks disagree: the mean r is ~0
        for depth in (1, 2):
            x = rng.uniform(0, 1, 300)
            rows.append(pd.DataFrame({"model": f"m{k}", "depth": depth, "x": x, "y": slope * x +
                                      0.05 * rng.normal(size=300)}))
    u = pd.concat(rows)
    res = per_network(u, within_layers("x", "y"), n_boot=500, seed=0)
    r = [np.mean([stats.spearmanr(h["x"], h["y"]).statistic for _, h in g.groupby("depth")])
         for _, g in u.groupby("model")]
    assert res["value"] == pytest.approx(np.mean(r))
    assert res["n"] == 5 and res["unit"] == "networks (3000 units)"
    assert res["ci_low"] < -0.3 and res["ci_high"] > 0.3  # a unit bootstrap would give a CI of width ~0.05
    with pytest.raises(ValueError, match="no 'model' column"):
        per_network(u.drop(columns="model"), within_layers("x", "y"))


# ---------------------------------------------------------------- markdown

def test_markdown_counts_each_verdict_and_prints_tolerances(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "mnist", [("figA4", "spearman_mutual_information_vs_impact", 0.05, -0.1, 0.2, 64, "units"),
                               ("fig7", "spearman_selectivity_vs_impact", 0.0, -0.4, 0.4, 64, "units")])
    table = C.evaluate_claims(C.Sources.from_results(res), ALL_CLAIMS)
    md = to_markdown(table, "demo", {"mnist": "8x8 digits (MNIST stand-in)"})
    body = [l for l in md.splitlines() if l.startswith("| ") and not l.startswith("| #")]
    assert len(body) == len(ALL_CLAIMS)
    n_run = len(ALL_CLAIMS) - 2
    assert "Scale: **demo** (MNIST: 8x8 digits (MNIST stand-in))" in md
    assert ("Of **2** claims tested: **1** reproduced, **0** not reproduced, **1** inconclusive, **0** not "
            f"comparable; {n_run} were not run.") in md
    assert "MNIST (8x8 digits (MNIST stand-in))" in md and "\\|r\\| < 0.3" in md
    assert all(f"**{k}**" in md for k in C.RULES)
    assert math.isnan(table.set_index("claim_id").loc["fig1a_auc_vs_corruption", "our_value"])
